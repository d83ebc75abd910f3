"""Reach what seccomp should stop: clone/clone3 into new namespaces, io_uring, the new mount API."""

import ctypes
import errno
import os
import struct

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SIGCHLD, CLONE_NEWUSER, CLONE_NEWNS = 17, 0x10000000, 0x20000
SYS = {"clone": 56, "clone3": 435, "io_uring_setup": 425, "mount_setattr": 442, "open_tree": 428}
found = []


def forked(rc, what):
    """A clone that worked returns 0 in the child (which leaves at once) and a pid here."""
    if rc == 0:
        os._exit(0)
    if rc > 0:
        os.waitpid(rc, 0)
        found.append(what)


forked(
    libc.syscall(SYS["clone"], CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0), "clone NEWUSER"
)
args = ctypes.create_string_buffer(
    struct.pack("<11Q", CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0)
)
forked(libc.syscall(SYS["clone3"], args, ctypes.c_size_t(88)), "clone3 NEWUSER")
params = ctypes.create_string_buffer(120)
ring = libc.syscall(SYS["io_uring_setup"], 4, params)
if ring >= 0:
    os.close(ring)
    found.append("io_uring_setup")
# With the filter in place these calls never reach the kernel (ENOSYS); without it they get as
# far as its permission checks (EPERM, or success in a namespace of one's own).
attr = ctypes.create_string_buffer(struct.pack("<4Q", 1, 0, 0, 0))
rc = libc.syscall(SYS["mount_setattr"], -100, b"/tmp", 0, attr, ctypes.c_size_t(32))
if rc == 0 or ctypes.get_errno() != errno.ENOSYS:
    found.append(f"mount_setattr reached the kernel ({os.strerror(ctypes.get_errno())})")
rc = libc.syscall(SYS["open_tree"], -100, b"/tmp", 1)
if rc >= 0 or ctypes.get_errno() != errno.ENOSYS:
    found.append(f"open_tree reached the kernel ({os.strerror(ctypes.get_errno())})")
print(f"ESCAPED: {found}" if found else "BLOCKED: clone, clone3, io_uring and mount API refused")
