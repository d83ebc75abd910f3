"""Remount a read-only bind writable (libc mount), then write through it."""

import ctypes
import sys

libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
rc = libc.mount(None, sys.prefix.encode(), None, MS_REMOUNT | MS_BIND, None)
try:
    open(sys.prefix + "/pwned", "w").write("x")
    print("ESCAPED: wrote into the venv")
except OSError as exc:
    print(f"BLOCKED: mount rc={rc} errno={ctypes.get_errno()}; write: {exc}")
