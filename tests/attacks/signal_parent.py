"""Kill the parent by its host pid."""

import os
import signal

try:
    os.kill(int("@PARENT_PID@"), signal.SIGTERM)
    print("ESCAPED: signalled the parent")
except OSError as exc:
    print(f"BLOCKED: {exc}")
