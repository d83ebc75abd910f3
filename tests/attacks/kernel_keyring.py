"""Use syscalls the filter denies: bpf, keyctl, perf_event_open (x86_64 numbers)."""

import ctypes
import errno

libc = ctypes.CDLL(None, use_errno=True)
calls = {"bpf": 321, "keyctl": 250, "perf_event_open": 298}
errors = {}
for name, nr in calls.items():
    rc = libc.syscall(nr, 0, 0, 0, 0, 0)
    errors[name] = 0 if rc >= 0 else ctypes.get_errno()
if all(e == errno.EPERM for e in errors.values()):
    print(f"BLOCKED: denied {errors}")
else:
    print(f"ESCAPED: reached the kernel {errors}")
