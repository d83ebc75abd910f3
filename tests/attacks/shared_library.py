"""Write a shared library into scratch and load it."""

import ctypes
import glob
import shutil

source = sorted(glob.glob("/usr/lib/*/libz.so.1*"))[0]
shutil.copy(source, "evil.so")
try:
    ctypes.CDLL("./evil.so")
    print("ESCAPED: loaded a library from scratch")
except OSError as exc:
    print(f"BLOCKED: {exc}")
