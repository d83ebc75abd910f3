"""``orchestrator sandbox info`` and ``orchestrator sandbox exec FILE.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["sandbox_app"]

sandbox_app = typer.Typer(help="Inspect and try the sandbox tools run in.", no_args_is_help=True)


# Run inside the sandbox by ``sandbox info``: what a tool sees of itself and of the host.
_LOOK_INSIDE = r"""
import json, os, socket
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
def host(ids, map_file):
    found = []
    for value in ids:
        for line in open(map_file):
            inside, outside, count = map(int, line.split())
            if inside <= value < inside + count:
                found.append(outside + value - inside)
    return found
def opens(path, flags):
    try:
        os.close(os.open(path, flags | os.O_NONBLOCK))  # opened only, never written
        return True
    except OSError:
        return False
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None
def creates(folder):
    path = f"{folder}/.orchestrator-probe-{os.getpid()}"
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return False
    os.unlink(path)
    return True
core = "/proc/sys/kernel/core_pattern"
uids = [int(x) for x in status["Uid"].split()]
gids = [int(x) for x in status["Gid"].split()]
shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
print(json.dumps({
    "uids": host(uids[:3], "/proc/self/uid_map"), "fsuid": host(uids[3:], "/proc/self/uid_map"),
    "gids": host(gids[:3], "/proc/self/gid_map"),
    "caps": sorted(k for k in status if k.startswith("Cap") and int(status[k], 16)),
    "proc_sys": "WRITABLE" if opens(core, os.O_WRONLY) else
        "read-only" if opens(core, os.O_RDONLY) else "not readable",
    "sys": "absent" if not os.path.exists("/sys") else
        "readable" if listing("/sys/kernel") is not None else "not readable",
    "devices": listing("/dev"),
    "exposed": [d for d in ("/dev/kmsg", "/dev/mem", "/dev/vda", "/dev/sda", "/dev/nvme0n1",
                            "/dev/loop0") if opens(d, os.O_RDONLY)],
    "shm_mb": shm.f_blocks * shm.f_frsize // 2**20 if shm else None,
    "shm_noexec": bool(shm and shm.f_flag & os.ST_NOEXEC), "shm_writable": creates("/dev/shm"),
    "interfaces": [name for _, name in socket.if_nameindex()],
}))
"""


@sandbox_app.command("info")
def info() -> None:
    """Print each isolation layer, and what a tool sees: its uid and the host's interfaces."""
    from orchestrator.execution.sandbox.launch import Sandbox

    sandbox = Sandbox()
    probe = sandbox.probe
    print(f"mode: {sandbox.mode}")
    for layer, state in probe.layers().items():
        print(f"{layer:<11} {state}")
    missing = probe.missing_for_full()
    print("full isolation: " + ("yes" if not missing else f"no (missing {', '.join(missing)})"))
    if sandbox.mode != "off":
        for line in _inside(sandbox):
            print(line)


def _inside(sandbox: object) -> list[str]:
    """Lines saying what a sandboxed tool sees, measured by running one (see _LOOK_INSIDE)."""
    import json

    from orchestrator.execution.sandbox.run_file import run_source

    result = run_source(_LOOK_INSIDE.encode(), capture=True, timeout_s=60, sandbox=sandbox)  # type: ignore[arg-type]
    try:
        seen = json.loads(result.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (result.reason or result.stderr.decode(errors="replace").strip())[-300:]
        return [f"inside:     could not look inside the sandbox: {detail}"]
    uid = "/".join(str(u) for u in sorted(set(seen["uids"])))
    fs = f", file-system uid {seen['fsuid'][0]}" if seen["fsuid"] != seen["uids"][:1] else ""
    caps = ", ".join(seen["caps"]) or "no capabilities"
    lines = [
        f"tools run as: host uid {uid}, gid {'/'.join(map(str, sorted(set(seen['gids']))))}"
        f"{fs}; {caps}"
    ]
    devices = " ".join(seen["devices"]) if seen["devices"] is not None else "not listable"
    if seen["exposed"]:
        devices += "; OPEN: " + " ".join(seen["exposed"])
    if seen["shm_writable"]:
        shm = f"{seen['shm_mb']} MB" + (", noexec" if seen["shm_noexec"] else ", EXECUTABLE")
    else:
        shm = "not writable"
    if getattr(sandbox, "mode", "") == "namespaces":
        network = "its own (approved endpoints only, through the relay)"
    else:
        network = "the host's (Landlock: TCP to approved ports only, any address)"
    lines.append(
        f"host-global interfaces a tool sees: /proc/sys {seen['proc_sys']}; /sys {seen['sys']};"
        f" /dev: {devices}; /dev/shm {shm}; network interfaces "
        f"{', '.join(seen['interfaces'])}: {network}"
    )
    return lines


@sandbox_app.command("exec")
def exec_file(
    file: Annotated[Path, typer.Argument(help="the Python file to run", exists=True)],
    allow_network: Annotated[bool, typer.Option("--allow-network", help="share the network")] = (
        False
    ),
    timeout: Annotated[float, typer.Option("--timeout", help="wall-clock seconds")] = 30.0,
    memory: Annotated[int, typer.Option("--memory", help="memory cap in MB")] = 1024,
) -> None:
    """Run FILE inside exactly the sandbox tools get; exit with its status."""
    from orchestrator.execution.sandbox.run_file import run_file

    result = run_file(file, allow_network=allow_network, timeout_s=timeout, memory_mb=memory)
    if result.reason:
        print(f"sandbox: stopped: {result.reason}", file=sys.stderr)
        raise typer.Exit(result.code if result.code > 0 else 128 + max(-result.code, 1))
    raise typer.Exit(result.code)
