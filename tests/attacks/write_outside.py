"""Write files outside the scratch folder: a host folder, the venv, /usr."""

import sys

wrote = []
for path in ("@OUTSIDE_DIR@/pwned", sys.prefix + "/pwned", "/usr/pwned", "/pwned"):
    try:
        with open(path, "w") as f:
            f.write("x")
        wrote.append(path)
    except OSError:
        pass
print(f"WROTE {wrote}" if wrote else "BLOCKED: nothing outside scratch is writable")
