"""Open thousands of files."""

import os

fds = []
try:
    for _ in range(100000):
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print(f"ESCAPED: {len(fds)} files open")
except OSError as exc:
    print(f"BLOCKED: at {len(fds)} files: {exc}")
