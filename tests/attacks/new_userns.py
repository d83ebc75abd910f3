"""Make a new user namespace to regain capabilities."""

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x20000
rc = libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)
print("ESCAPED: new user namespace" if rc == 0 else f"BLOCKED: errno {ctypes.get_errno()}")
