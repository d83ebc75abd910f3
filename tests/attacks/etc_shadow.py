"""Read host credentials: /etc/shadow, SSH keys, the host's root."""

import glob

found = []
for pattern in ("/etc/shadow", "/root/.ssh/*", "/home/*/.ssh/*", "/root/.bash_history"):
    for path in glob.glob(pattern) or [pattern]:
        try:
            open(path).read()
            found.append(path)
        except OSError:
            pass
print(f"ESCAPED: {found}" if found else "BLOCKED: no credentials visible")
