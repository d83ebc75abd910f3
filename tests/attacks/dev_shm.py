"""/dev: make a device node or file, fill /dev/shm past its cap, load a library from it."""

import ctypes
import glob
import os
import shutil

found = []
try:
    open("/dev/planted", "w").write("x")
    found.append("wrote /dev/planted")
except OSError:
    pass
written = 0
try:
    with open("/dev/shm/fill", "wb") as fill:
        for _ in range(int("@MB@")):
            fill.write(b"\0" * (1 << 20))
            written += 1
except OSError:
    pass
os.unlink("/dev/shm/fill") if os.path.exists("/dev/shm/fill") else None
if written >= int("@MB@"):
    found.append(f"wrote {written} MB to /dev/shm")
try:
    shutil.copy(sorted(glob.glob("/usr/lib/*/libz.so.1*"))[0], "/dev/shm/evil.so")
    ctypes.CDLL("/dev/shm/evil.so")
    found.append("loaded a library from /dev/shm")
except OSError:
    pass
extra = sorted(set(os.listdir("/dev")) - set("@ALLOWED@".split()))
if extra:
    found.append(f"more devices: {extra}")
blocked = f"BLOCKED: /dev read-only, /dev/shm capped at {written} MB, noexec"
print(f"ESCAPED: {found}" if found else blocked)
