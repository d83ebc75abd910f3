"""Open host-global kernel settings for writing, and find out which host uid the tool runs as."""

import os

opened = []
for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"):
    try:
        os.close(os.open(path, os.O_WRONLY))  # opened only: nothing is written
        opened.append(path)
    except OSError:
        pass


def host_uid(uid):
    """The host's view of ``uid``: /proc/self/uid_map maps 'inside outside count' ranges."""
    for line in open("/proc/self/uid_map"):
        inside, outside, count = map(int, line.split())
        if inside <= uid < inside + count:
            return outside + uid - inside
    return None


real, effective, saved, fs = (
    int(x) for x in open("/proc/self/status").read().split("Uid:")[1].split("\n")[0].split()
)
hosted = [host_uid(u) for u in (real, effective, saved)]
print(f"uids {real} {effective} {saved} fs {fs}; on the host {hosted}")
if opened:
    print(f"ESCAPED: opened for writing {opened}")
elif 0 in hosted:
    print(f"ESCAPED: the tool runs as the host's root {hosted}")
else:
    print(f"BLOCKED: nothing host-global opens for writing; host uids {hosted}")
