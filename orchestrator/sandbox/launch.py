"""Start a process inside the strongest sandbox this host permits.

:class:`Sandbox` turns a :class:`~orchestrator.sandbox.policy.Policy` and a command into a
:class:`Launch`: the full command line, its environment, what to do between fork and exec
(rlimits, joining the cgroup), and where the process's private I/O folder is seen from outside.

Modes, chosen by probing: ``namespaces`` (bubblewrap; the I/O folder is a size-capped tmpfs at
/io inside, reached from the parent through ``/proc/<pid>/root/io``), ``landlock`` (no namespaces:
a host temporary folder that Landlock makes the only writable place), ``rlimits`` (neither: a
warning says the tool is barely confined). seccomp, the cgroup and rlimits add to any mode.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.sandbox.bwrap import (
    _ETC_FILES,
    _NETWORK_ETC,
    INSIDE_IO,
    bwrap_command,
    python_paths,
)
from orchestrator.sandbox.cgroup import ProcessCgroup
from orchestrator.sandbox.confine import CONFINE_ENV, apply_rlimits
from orchestrator.sandbox.policy import Policy, model_read_paths
from orchestrator.sandbox.probe import HostProbe, probe_host
from orchestrator.sandbox.transfer import remove_tree

__all__ = ["Launch", "Sandbox", "SandboxRefused"]

log = logging.getLogger("orchestrator.sandbox")
_warned: set[str] = set()


class SandboxRefused(ConfigError):
    """Full isolation is required by the configuration but this host cannot give it."""


@dataclass
class Launch:
    """One prepared start: run ``argv`` with ``env``, calling :meth:`preexec` in the child."""

    argv: list[str]
    env: dict[str, str]
    policy: Policy
    mode: str
    inside_io: str
    host_dir: Path | None = None
    cwd: str | None = None
    cgroup: ProcessCgroup | None = None
    rlimits: dict[str, int] = field(default_factory=dict)

    def preexec(self) -> Callable[[], None]:
        """The function run in the child before exec (os-level calls only)."""
        cgroup, rlimits = self.cgroup, self.rlimits

        def setup() -> None:
            if cgroup is not None:
                cgroup.join_in_child()
            apply_rlimits(rlimits)

        return setup

    def host_io(self, pid: int, wait_s: float = 5.0) -> Path:
        """The I/O folder as the parent sees it (``pid``: the process this launch started)."""
        if self.host_dir is not None:
            return self.host_dir
        # bubblewrap's first child is pid 1 of the new namespaces: its root is the sandbox's.
        deadline = time.monotonic() + wait_s
        while True:
            children = _children(pid)
            if children:
                path = Path(f"/proc/{children[0]}/root{INSIDE_IO}")
                if path.is_dir():
                    return path
            if time.monotonic() >= deadline:
                raise OSError(f"the sandbox of process {pid} did not come up")
            time.sleep(0.002)

    def memory_mb(self) -> int | None:
        """What the process tree uses now, when a cgroup measures it."""
        return self.cgroup.usage_mb() if self.cgroup is not None else None

    def death_reason(self) -> str:
        """Extra words for a process that died: whether it broke its memory cap."""
        if self.cgroup is not None and self.cgroup.oom_killed():
            return f"exceeded its memory cap of {self.policy.memory_mb} MB"
        return ""

    def kill_all(self) -> None:
        """SIGKILL everything the process started, wherever it went (needs the cgroup)."""
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def cleanup(self) -> None:
        """Remove the cgroup and the host I/O folder (after the process is gone)."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.host_dir is not None:
            try:
                remove_tree(self.host_dir)  # what a tool left there may be nested at any depth
            except OSError as exc:
                log.warning("could not delete the sandbox folder %s: %s", self.host_dir, exc)
            self.host_dir = None


class Sandbox:
    """Prepares sandboxed starts on this host; ``enabled=False`` gives plain processes."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        require_full_isolation: bool = False,
        probe: HostProbe | None = None,
    ) -> None:
        self.enabled = enabled
        self.probe = probe or probe_host()
        if require_full_isolation:
            missing = self.probe.missing_for_full() if enabled else ["the sandbox is disabled"]
            if missing:
                reasons = self.probe.layers()
                detail = "; ".join(f"{m}: {reasons.get(m, m)}" for m in missing)
                raise SandboxRefused(
                    "full isolation is required (sandbox.require_full_isolation) but this host "
                    f"lacks: {detail}"
                )
        if enabled:
            self._warn_if_weak()

    @property
    def mode(self) -> str:
        if not self.enabled:
            return "off"
        if self.probe.namespaces:
            return "namespaces"
        return "landlock" if self.probe.landlock_abi else "rlimits"

    def _warn_if_weak(self) -> None:
        missing = self.probe.missing_for_full()
        key = ",".join(missing)
        if missing and key not in _warned:
            _warned.add(key)
            layers = self.probe.layers()
            log.warning(
                "sandbox is weaker than full isolation here (mode %s); missing: %s",
                self.mode,
                "; ".join(f"{m} ({layers[m]})" for m in missing),
            )

    def prepare(
        self, policy: Policy, inner: list[str], env: dict[str, str], code_paths: list[str]
    ) -> Launch:
        """A launch of ``inner`` under ``policy``; ``code_paths`` are read-only import roots."""
        env = dict(env)
        if not self.enabled:
            host_dir = Path(tempfile.mkdtemp(prefix="orchestrator-io-"))
            for sub in ("in", "out"):
                (host_dir / sub).mkdir()
            return Launch(list(inner), env, policy, "off", str(host_dir), host_dir, str(host_dir))
        spec: dict[str, object] = {
            "network": policy.network if isinstance(policy.network, bool) else "ports",
            "seccomp": self.probe.seccomp,
        }
        rlimits = {
            "RLIMIT_NOFILE": policy.open_files,
            "RLIMIT_FSIZE": max(policy.scratch_mb, policy.file_mb or 0) * 1024 * 1024,
            "RLIMIT_CORE": 0,
        }
        cgroup = None
        if self.probe.cgroup:
            cgroup = ProcessCgroup(self.probe, policy.label, policy.memory_mb, policy.max_procs)
        else:
            rlimits["RLIMIT_AS"] = max(policy.memory_mb, 256) * 1024 * 1024
        if policy.wants_network is False:
            spec["network"] = False
        if self.mode == "namespaces":
            env.update({"HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox"})
            spec["seal"] = [INSIDE_IO, "/tmp"]
            spec["drop_caps"] = True
            env[CONFINE_ENV] = json.dumps(spec)
            argv = bwrap_command(self.probe.bwrap or "bwrap", policy, inner, code_paths)
            return Launch(argv, env, policy, "namespaces", INSIDE_IO, None, None, cgroup, rlimits)
        host_dir = Path(tempfile.mkdtemp(prefix="orchestrator-io-"))
        for sub in ("in", "out", "tmp"):
            (host_dir / sub).mkdir()
        env.update({"HOME": str(host_dir / "tmp"), "TMPDIR": str(host_dir / "tmp")})
        if self.probe.landlock_abi:
            spec["landlock"] = {
                "abi": self.probe.landlock_abi,
                "read": _landlock_reads(policy, code_paths),
                "write": [str(host_dir), *policy.write, "/dev/null"],
                "ports": list(policy.network_ports()),
            }
        env[CONFINE_ENV] = json.dumps(spec)
        return Launch(
            list(inner), env, policy, self.mode, str(host_dir), host_dir,
            str(host_dir / "out"), cgroup, rlimits,
        )  # fmt: skip


def _children(pid: int) -> list[str]:
    """Child process ids of ``pid`` (from /proc; scanning parents where ``children`` is absent)."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        pass
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(entry.name)
    return found


def _landlock_reads(policy: Policy, code_paths: list[str]) -> list[str]:
    system = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", *_ETC_FILES]
    if policy.wants_network:
        system += list(_NETWORK_ETC)
    kernel = ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system"]
    models = [str(p) for p in model_read_paths()]
    return [
        *system, *kernel, "/dev", *python_paths(), *code_paths, *models, *policy.read,
        os.path.dirname(sys.executable),
    ]  # fmt: skip
