"""Double fork + setsid: leave a child that outlives the timeout."""

import os
import sys
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "@MARKER@"])
    os._exit(0)
print("BLOCKED?: forked the escapee; now hanging", flush=True)
time.sleep(120)
