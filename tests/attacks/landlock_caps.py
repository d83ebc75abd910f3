"""Keep capabilities, read the kernel log and raw disks, write /dev, reach host unix sockets."""

import os
import socket

status = open("/proc/self/status").read()
caps = {
    line.split(":")[0]: int(line.split()[1], 16)
    for line in status.splitlines()
    if line.startswith("Cap")
}
found = []
if any(caps.values()):
    found.append(f"capabilities {[k for k, v in caps.items() if v]}")
for device in ("/dev/kmsg", "/dev/vda", "/dev/sda", "/dev/mem", "/dev/loop0"):
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_NONBLOCK))
        found.append(f"opened {device}")
    except OSError:
        pass
try:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.settimeout(3)
    unix.connect("@SOCKET@")
    unix.sendall(b"stolen")
    found.append("connected to a host unix socket")
except OSError as exc:
    print(f"unix socket: {exc}")
for folder in "@HOST_FOLDERS@".split():  # the host's own /dev (and /dev/shm without namespaces)
    try:
        with open(f"{folder}/planted-{os.getpid()}", "w") as planted:
            planted.write("x")
        found.append(f"wrote into {folder}")
        os.unlink(f"{folder}/planted-{os.getpid()}")
    except OSError:
        pass
if os.getuid() == 0 or os.geteuid() == 0:
    found.append("runs as uid 0")
print(f"ESCAPED: {found}" if found else "BLOCKED: no capability, device or host socket")
