"""Fill the disk through the scratch folder and /tmp."""

import os

written = 0
block = b"\0" * (1 << 20)
try:
    for folder in (".", "/tmp"):
        for i in range(100000):
            with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
                for _ in range(64):
                    f.write(block)
                    written += 1
    print(f"ESCAPED: wrote {written} MB")
except OSError as exc:
    print(f"BLOCKED: after {written} MB: {exc}")
