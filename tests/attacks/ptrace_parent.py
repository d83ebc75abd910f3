"""ptrace the parent (by its host pid), and pid 1."""

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
results = []
for pid in (int("@PARENT_PID@"), 1):
    rc = libc.ptrace(PTRACE_ATTACH, pid, None, None)
    results.append((pid, rc, ctypes.get_errno()))
if any(rc == 0 for _, rc, _ in results):
    print(f"ESCAPED: {results}")
else:
    print(f"BLOCKED: {results}")
