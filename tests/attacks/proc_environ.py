"""Scan every /proc/*/environ (the parent's included) for the secret value."""

import os

for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if b"@SECRET_VALUE@" in open(f"/proc/{pid}/environ", "rb").read():
                print(f"ESCAPED: found in /proc/{pid}/environ")
                raise SystemExit(0)
        except OSError:
            pass
try:
    open("/proc/@PARENT_PID@/environ", "rb").read()
    print("ESCAPED: read the parent's environ")
except OSError as exc:
    print(f"BLOCKED: {exc}")
