"""Plant symlinks in scratch that point at host secrets; read through them."""

import os

os.symlink("@SECRET_PATH@", "secret-link")
os.symlink("/etc/shadow", "shadow-link")
got = []
for link in ("secret-link", "shadow-link"):
    try:
        got.append(open(link).read())
    except OSError:
        pass
print(f"ESCAPED: {got}" if got else "BLOCKED: the links lead nowhere")
