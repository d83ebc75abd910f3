"""``orchestrator sandbox exec FILE.py``: run a Python file inside exactly the sandbox tools get.

The parent (:func:`run_file`) starts ``orchestrator.execution.sandbox.run_file NAME`` under a policy
(no network unless allowed, a memory cap, a wall-clock timeout), the same way the worker pool starts
a worker (:func:`orchestrator.execution.sandbox.launch.python_command`,
:meth:`orchestrator.execution.sandbox.Sandbox.prepare`). The source goes in on standard input, so
nothing of the host needs binding for it. The child is confined by the bootstrap before it reads the
source, then runs it as ``__main__``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.execution.sandbox.launch import Sandbox
    from orchestrator.execution.sandbox.policy import Policy

__all__ = ["ExecResult", "run_file", "run_source"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class ExecResult:
    """How a sandboxed run ended. ``reason`` is set when the sandbox stopped it."""

    code: int
    reason: str
    seconds: float
    stdout: bytes = b""
    stderr: bytes = b""
    mode: str = ""

    @property
    def stopped(self) -> bool:
        return bool(self.reason)


def run_file(
    path: Path,
    *,
    allow_network: bool = False,
    timeout_s: float = 30.0,
    memory_mb: int = 1024,
    capture: bool = False,
) -> ExecResult:
    """Run the Python file ``path`` in the sandbox (see :func:`run_source`)."""
    return run_source(
        path.read_bytes(),
        path.name,
        allow_network=allow_network,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        capture=capture,
    )


def run_source(
    source: bytes,
    name: str = "main.py",
    *,
    allow_network: bool = False,
    timeout_s: float = 30.0,
    memory_mb: int = 1024,
    capture: bool = False,
    extra_env: dict[str, str] | None = None,
    sandbox: Sandbox | None = None,
    policy: Policy | None = None,
) -> ExecResult:
    """Run ``source`` in the sandbox; its output goes to ours unless ``capture``.

    ``sandbox`` defaults to the strongest this host permits (a weaker one can be given, e.g.
    to exercise the Landlock layer on a host that has namespaces). ``policy`` replaces the one
    made from ``allow_network`` and ``memory_mb``.
    """
    from orchestrator.execution.sandbox.bwrap import package_dirs
    from orchestrator.execution.sandbox.launch import Sandbox, python_command
    from orchestrator.execution.sandbox.policy import Policy
    from orchestrator.permissions import DEFAULT_ENV

    sandbox = sandbox or Sandbox()
    policy = policy or Policy(network=allow_network, memory_mb=memory_mb, label="exec")
    env = {k: v for k, v in os.environ.items() if k in DEFAULT_ENV}
    env.update(extra_env or {})
    inner = python_command("orchestrator.execution.sandbox.run_file", [name])
    launch = sandbox.prepare(policy, inner, env, package_dirs(_PACKAGE_ROOT))
    pipe = subprocess.PIPE if capture else None
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.PIPE,
            stdout=pipe,
            stderr=pipe,
            env=launch.env,
            cwd=launch.cwd,
            preexec_fn=launch.preexec(),
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = proc.communicate(source, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            launch.kill_all()  # without a pid namespace a setsid child is not in the group
            stdout, stderr = proc.communicate()
        code = proc.returncode
        reason = _reason(code, timed_out, timeout_s, launch.death_reason(), launch.mode)
    finally:
        launch.cleanup()
    seconds = time.monotonic() - started
    return ExecResult(code, reason, seconds, stdout or b"", stderr or b"", launch.mode)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reason(code: int, timed_out: bool, timeout_s: float, memory: str, mode: str) -> str:
    if timed_out:
        return f"timed out after {timeout_s:g} s; killed with everything it started"
    if memory:
        return f"{memory}; killed"
    number = -code if code < 0 else code - 128 if mode == "namespaces" and code > 128 else 0
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    return ""


def _main() -> int:
    """Inside the sandbox (already confined): read the source from stdin, run it as __main__."""
    name = sys.argv[1] if len(sys.argv) > 1 else "main.py"
    source = sys.stdin.buffer.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [name]
    code = compile(source, name, "exec")
    exec(code, {"__name__": "__main__", "__file__": name, "__builtins__": __builtins__})  # noqa: S102
    return 0


if __name__ == "__main__":
    sys.exit(_main())
