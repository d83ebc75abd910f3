"""Check that python cards' entries import, in the sandbox tools run in (``cards validate``).

The parent (:func:`entry_defects`) starts ``python -m orchestrator._entry_check`` under a
sandbox policy, with the card folders importable as in a worker, and sends the entries
(``module:factory``) as one JSON list on standard input. The child imports each module, looks
up the factory, and prints one JSON object: per entry, None when it imports and names a
callable, else the error and the file and line where it happened. Importing runs the module's
top-level code, which is why it happens in the sandbox and under a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cards import PythonBackend, ToolCard
from orchestrator.errors import CardDefect

if TYPE_CHECKING:
    from orchestrator.sandbox import Sandbox

__all__ = ["entry_defects"]

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def entry_defects(
    cards: list[tuple[ToolCard, Path]],
    code_dirs: list[str],
    *,
    sandbox: Sandbox | None = None,
    timeout_s: float = 60.0,
) -> list[CardDefect]:
    """A defect for each python card whose entry does not import or names no callable."""
    python = [(c, p) for c, p in cards if isinstance(c.backend, PythonBackend)]
    if not python:
        return []
    entries = sorted({c.backend.entry for c, _ in python if isinstance(c.backend, PythonBackend)})
    results = _check_in_sandbox(entries, code_dirs, sandbox, timeout_s)
    defects = []
    for card, path in python:
        assert isinstance(card.backend, PythonBackend)
        problem = results.get(card.backend.entry, "the check did not report on this entry")
        if problem:
            defects.append(CardDefect(path, "backend.entry", f"'{card.backend.entry}' {problem}"))
    return defects


def _check_in_sandbox(
    entries: list[str], code_dirs: list[str], sandbox: Sandbox | None, timeout_s: float
) -> dict[str, str | None]:
    from orchestrator.sandbox import Policy, Sandbox
    from orchestrator.sandbox.bwrap import package_dirs
    from orchestrator.sandbox.policy import DEFAULT_ENV

    sandbox = sandbox or Sandbox()
    env = {k: v for k, v in os.environ.items() if k in DEFAULT_ENV}
    env["PYTHONPATH"] = os.pathsep.join([*code_dirs, str(_PACKAGE_ROOT)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    inner = [sys.executable, "-m", "orchestrator._entry_check"]
    policy = Policy(label="validate")
    launch = sandbox.prepare(policy, inner, env, package_dirs(_PACKAGE_ROOT) + code_dirs)
    try:
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=launch.env,
            cwd=launch.cwd,
            preexec_fn=launch.preexec(),
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(json.dumps(entries).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            launch.kill_all()
            proc.communicate()
            why = f"could not be checked: importing took longer than {timeout_s:g} s"
            return dict.fromkeys(entries, why)
    finally:
        launch.cleanup()
    try:
        reported: dict[str, str | None] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " ".join(err.decode(errors="replace").split())[-300:]
        why = f"could not be checked: the import check exited with code {proc.returncode}"
        return dict.fromkeys(entries, f"{why} ({tail})" if tail else why)
    return reported


def _where(exc: BaseException) -> str:
    """``file:line`` of the error: the syntax error's position, else the innermost frame."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")
    ]
    frames = [f for f in frames if not f.filename.endswith("_entry_check.py")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _check(entry: str) -> str | None:
    import importlib

    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        where = _where(exc)
        line = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            return (
                f"cannot be imported: no module '{module_name}' in the card folders; put "
                f"{module_name}.py beside the card"
            )
        return f"cannot be imported: {line}" + (f" (at {where})" if where else "")
    factory: Any = getattr(module, attribute, None)
    if factory is None:
        return f"names nothing: module {module_name} has no '{attribute}'"
    if not callable(factory):
        return f"names a {type(factory).__name__}, not a callable factory"
    return None


def _main() -> int:
    from orchestrator.sandbox.confine import confine_from_env

    confine_from_env()
    entries = json.loads(sys.stdin.read())
    results = {entry: _check(entry) for entry in entries}
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
