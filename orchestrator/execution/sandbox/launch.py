"""Start a process inside the strongest sandbox this host permits.

:class:`Sandbox` turns a :class:`~orchestrator.execution.sandbox.policy.Policy` and a command into a
:class:`Launch`: the full command line, its environment, what to do between fork and exec
(rlimits, joining the cgroup), and where the process's private I/O folder is seen from outside.

Modes, chosen by probing: ``namespaces`` (bubblewrap; the I/O folder is a size-capped tmpfs at
/io inside, reached from the parent through ``/proc/<pid>/root/io``), ``landlock`` (no namespaces:
a host temporary folder that Landlock makes the only writable place), ``rlimits`` (neither: a
warning says the tool is barely confined). seccomp, the cgroup and rlimits add to any mode.

Every sandboxed Python process starts as :func:`python_command` says: an isolated interpreter
(``-I -S``) running :mod:`orchestrator.execution.sandbox.boot`, which confines it before any code of
a card is importable. Started by root, the process ends up as :data:`SANDBOX_UID` (an
unprivileged user of the host); with no capability left in any mode.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SandboxRefused
from orchestrator.execution.sandbox.bwrap import (
    _ETC_FILES,
    _NETWORK_ETC,
    INSIDE_IO,
    bound_paths,
    bwrap_command,
    python_paths,
    site_dirs,
)
from orchestrator.execution.sandbox.cgroup import ProcessCgroup
from orchestrator.execution.sandbox.confine import CONFINE_ENV, apply_rlimits
from orchestrator.execution.sandbox.policy import Policy, model_read_paths
from orchestrator.execution.sandbox.probe import HostProbe, probe_host
from orchestrator.execution.sandbox.relay import Relay
from orchestrator.execution.sandbox.transfer import remove_tree

__all__ = ["PACKAGE_ROOT", "SANDBOX_UID", "Launch", "Sandbox", "python_command"]

SANDBOX_UID = 65534
"""The host uid (and gid) tools run as when the orchestrator runs as root: ``nobody``."""

PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
"""The folder holding the ``orchestrator`` package (bound read-only into every sandbox)."""

_BOOT = str(Path(__file__).resolve().parent / "boot.py")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_PR_SET_PDEATHSIG = 1


def python_command(module: str, args: list[str] = (), code: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """The command that runs ``module`` in a sandboxed interpreter (see :mod:`~.boot`).

    ``code``: folders appended to the end of its import path once it is confined (a card's own
    folder); the project and the interpreter's site-packages are importable before them.
    """
    boot = {"module": module, "root": PACKAGE_ROOT, "site": site_dirs(), "code": list(code)}
    return [sys.executable, "-I", "-S", "-B", "-u", _BOOT, json.dumps(boot), *args]


log = logging.getLogger("orchestrator.execution.sandbox")
_warned: set[str] = set()


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
    relay: Relay | None = None

    def preexec(self) -> Callable[[], None]:
        """The function run in the child before exec (os-level calls only)."""
        cgroup, rlimits = self.cgroup, self.rlimits
        orphan_dies = self.mode in ("landlock", "rlimits")

        def setup() -> None:
            if cgroup is not None:
                cgroup.join_in_child()
            apply_rlimits(rlimits)
            if orphan_dies:  # bubblewrap's --die-with-parent, for the other modes
                ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

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

    def processes(self, pid: int) -> list[int]:
        """Every process of this launch (``pid``: the one it started).

        The cgroup's members, and ``pid`` with its descendants.
        """
        found = self.cgroup.pids() if self.cgroup is not None else []
        return sorted(set(found) | {pid, *_descendants(pid)})

    def freeze(self, pid: int) -> None:
        """Stop every process of this launch (SIGSTOP) until :meth:`thaw`."""
        stopped: set[int] = set()
        for _ in range(10):  # a process may fork while the others are being stopped
            new = [p for p in self.processes(pid) if p not in stopped]
            if not new:
                return
            for process in new:
                _signal(process, signal.SIGSTOP)
                stopped.add(process)

    def thaw(self, pid: int) -> None:
        """Let every process of this launch run again (SIGCONT)."""
        for process in self.processes(pid):
            _signal(process, signal.SIGCONT)

    def kill_all(self) -> None:
        """SIGKILL everything the process started, wherever it went (needs the cgroup)."""
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def cleanup(self) -> None:
        """Remove the cgroup, the relay and the host I/O folder (after the process is gone)."""
        if self.relay is not None:
            self.relay.close()
            self.relay = None
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
            "drop_caps": True,
        }
        if os.geteuid() == 0:
            spec["user"] = {
                "uid": SANDBOX_UID,
                "gid": SANDBOX_UID,
                "fs_root": self.mode == "landlock",
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
            return self._namespaced(policy, inner, env, code_paths, spec, cgroup, rlimits)
        host_dir = Path(tempfile.mkdtemp(prefix="orchestrator-io-"))
        for sub in ("in", "out", "tmp"):
            (host_dir / sub).mkdir()
        env.update({"HOME": str(host_dir / "tmp"), "TMPDIR": str(host_dir / "tmp")})
        # Without a mount namespace host unix sockets are reachable by path: none may be made
        # (socketpair still works).
        spec["unix_sockets"] = False
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

    def _namespaced(
        self,
        policy: Policy,
        inner: list[str],
        env: dict[str, str],
        code_paths: list[str],
        spec: dict[str, object],
        cgroup: ProcessCgroup | None,
        rlimits: dict[str, int],
    ) -> Launch:
        """The bubblewrap launch: sealed tmpfs, id-mapped binds, the network relay."""
        env.update({"HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox"})
        spec["seal"] = [INSIDE_IO, "/tmp", "/dev/shm"]
        privileged = "user" in spec
        if privileged:
            spec["idmap"] = bound_paths(policy, code_paths)
        relay = None
        if policy.wants_network:
            relay = Relay(policy.endpoints(), any_public=policy.network is True)
            spec["forward"] = relay.forward_spec()
            spec["loopback"] = relay.loopback_addresses()
            env.update(relay.env())
        env[CONFINE_ENV] = json.dumps(spec)
        try:
            argv = bwrap_command(
                self.probe.bwrap or "bwrap",
                policy,
                inner,
                code_paths,
                privileged=privileged,
                extra_binds=relay.binds() if relay is not None else [],
            )
        except BaseException:
            if relay is not None:
                relay.close()
            raise
        launch = Launch(argv, env, policy, "namespaces", INSIDE_IO, None, None, cgroup, rlimits)
        launch.relay = relay
        return launch


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of any of its threads, recursively)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        kids: set[int] = set()
        try:
            for task in Path(f"/proc/{parent}/task").iterdir():
                kids.update(int(k) for k in (task / "children").read_text().split())
        except (OSError, ValueError):
            kids.update(int(k) for k in _children(parent))
        for kid in sorted(kids - set(found)):
            found.append(kid)
            queue.append(kid)
    return found


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
        *system, *kernel, *_DEVICES, *python_paths(), *code_paths, *models, *policy.read,
        os.path.dirname(sys.executable),
    ]  # fmt: skip
