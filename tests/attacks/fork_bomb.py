"""Fork until the system breaks."""

import os
import time

children = 0
try:
    for _ in range(100000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    print(f"ESCAPED: forked {children} processes")
except OSError as exc:
    print(f"BLOCKED: after {children} processes: {exc}", flush=True)
    os._exit(0)
