"""Probe the host once for the isolation layers it can give a sandboxed process.

Layers, strongest first: namespaces (bubblewrap), Landlock, seccomp, a cgroup (v1 or v2) for
memory and process count, rlimits, and a wall-clock timeout (always). Each probe actually tries
the mechanism (starts bubblewrap, asks the kernel for the Landlock ABI, creates a cgroup), since
being installed is not the same as being permitted (containers often forbid user namespaces).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostProbe", "probe_host"]

_SYS_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_CREATE_RULESET_VERSION = 1
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class HostProbe:
    """What isolation this host permits; ``*_reason`` says why a layer is missing."""

    bwrap: str | None
    bwrap_reason: str
    landlock_abi: int
    landlock_reason: str
    seccomp: bool
    seccomp_reason: str
    cgroup_version: int
    cgroup_memory: Path | None
    cgroup_pids: Path | None
    cgroup_reason: str
    is_root: bool

    @property
    def namespaces(self) -> bool:
        return self.bwrap is not None

    @property
    def cgroup(self) -> bool:
        return self.cgroup_memory is not None

    def layers(self) -> dict[str, str]:
        """Each layer and what it does here ('off: why' when it is not in force)."""
        rows = {
            "namespaces": (
                f"on: bubblewrap {self.bwrap} (own pid, network, ipc and mount namespaces; "
                "minimal read-only binds; the tool confines itself before any card code exists)"
                if self.namespaces
                else f"off: {self.bwrap_reason}"
            ),
            "landlock": (
                f"on: ABI {self.landlock_abi} (used when namespaces are off)"
                if self.landlock_abi
                else f"off: {self.landlock_reason}"
            ),
            "seccomp": (
                "on: pyseccomp filter (ptrace, mount API, namespaces incl. clone flags, io_uring, "
                "bpf, keyctl, set-id modes, ... denied)"
                if self.seccomp
                else f"off: {self.seccomp_reason}"
            ),
            "cgroup": (
                f"on: v{self.cgroup_version} memory at {self.cgroup_memory}, pids at "
                f"{self.cgroup_pids or 'n/a'}"
                if self.cgroup
                else f"off: {self.cgroup_reason}"
            ),
            "rlimits": "on: open files, file size, core"
            + (", address space (no cgroup)" if not self.cgroup else ""),
            "timeout": "on: wall clock, the whole process tree is killed",
        }
        return rows

    def full_isolation(self) -> bool:
        """Namespaces, seccomp and a memory cgroup are all in force."""
        return self.namespaces and self.seccomp and self.cgroup

    def missing_for_full(self) -> list[str]:
        return [
            name
            for name, on in (
                ("namespaces", self.namespaces),
                ("seccomp", self.seccomp),
                ("cgroup", self.cgroup),
            )
            if not on
        ]


def _probe_bwrap() -> tuple[str | None, str]:
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap is not installed (apt-get install bubblewrap)"
    from orchestrator.execution.sandbox.bwrap import system_binds

    command = [
        path,
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        *system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "true",
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bubblewrap cannot run: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, "bubblewrap is not permitted here: " + (message[-1] if message else "?")
    return path, ""


def _probe_landlock() -> tuple[int, str]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(
            _SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
        )
    except (OSError, AttributeError) as exc:
        return 0, f"cannot call the kernel: {exc}"
    if abi < 0:
        return 0, f"the kernel refuses Landlock ({os.strerror(ctypes.get_errno())})"
    return int(abi), ""


def _probe_seccomp() -> tuple[bool, str]:
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError) as exc:
        return False, f"pyseccomp or libseccomp is missing ({exc}); pip install pyseccomp"
    if "Seccomp:" not in Path("/proc/self/status").read_text():
        return False, "the kernel has no seccomp"
    return True, ""


def _own_cgroups() -> dict[str, str]:
    """Controller (or '' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _writable_dir(base: Path, limit_file: str) -> bool:
    probe = base / f"orchestrator-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        return (probe / limit_file).exists() and os.access(probe / limit_file, os.W_OK)
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _probe_cgroup() -> tuple[int, Path | None, Path | None, str]:
    try:
        own = _own_cgroups()
    except OSError as exc:
        return 0, None, None, f"cannot read /proc/self/cgroup: {exc}"
    if "memory" in own:  # v1: one hierarchy per controller
        memory = _CGROUP_ROOT / "memory" / own["memory"].lstrip("/")
        pids = _CGROUP_ROOT / "pids" / own.get("pids", "/").lstrip("/")
        if not _writable_dir(memory, "memory.limit_in_bytes"):
            return 1, None, None, f"cgroup v1 memory at {memory} is not writable"
        return 1, memory, pids if _writable_dir(pids, "pids.max") else None, ""
    if "" in own and (_CGROUP_ROOT / "cgroup.controllers").exists():
        base = _CGROUP_ROOT / own[""].lstrip("/")
        if not _writable_dir(base, "memory.max"):
            return 2, None, None, f"cgroup v2 at {base} is not writable (or memory not delegated)"
        return 2, base, base, ""
    return 0, None, None, "no cgroup hierarchy found"


@functools.cache
def probe_host() -> HostProbe:
    """Probe once per process (starting bubblewrap takes ~10 ms)."""
    bwrap, bwrap_reason = _probe_bwrap()
    landlock_abi, landlock_reason = _probe_landlock()
    seccomp, seccomp_reason = _probe_seccomp()
    version, memory, pids, cgroup_reason = _probe_cgroup()
    return HostProbe(
        bwrap=bwrap,
        bwrap_reason=bwrap_reason,
        landlock_abi=landlock_abi,
        landlock_reason=landlock_reason,
        seccomp=seccomp,
        seccomp_reason=seccomp_reason,
        cgroup_version=version,
        cgroup_memory=memory,
        cgroup_pids=pids,
        cgroup_reason=cgroup_reason,
        is_root=os.geteuid() == 0,
    )
