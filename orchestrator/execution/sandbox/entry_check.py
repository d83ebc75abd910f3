"""Check that python cards' entries import, in the sandbox tools run in (``cards validate``).

The parent (:func:`entry_defects`) starts this module in the sandbox tools run in, once per card
folder, with that folder importable as in its cards' workers (last, after the installed
modules), and sends the entries (``module:factory``) as one JSON list on standard
input. The child imports each module, looks up the factory, and prints one JSON object: per
entry, None when it imports and names a callable, else the error and the file and line where it
happened. Importing runs the module's top-level code, which is why it happens in the sandbox,
under a timeout, and with its output capped (:data:`MAX_OUTPUT_BYTES`; only the end of its
standard error is kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cards import PythonBackend, ToolCard
from orchestrator.errors import CardDefect

if TYPE_CHECKING:
    from orchestrator.execution.sandbox import Sandbox

__all__ = ["entry_defects"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
MAX_OUTPUT_BYTES = 1 << 20
"""The most a check may print on standard output; more ends it (a module should not print)."""
_ERR_TAIL_BYTES = 4096


def entry_defects(
    cards: list[tuple[ToolCard, Path]],
    code_dirs: list[str] = (),  # type: ignore[assignment]
    *,
    sandbox: Sandbox | None = None,
    timeout_s: float = 60.0,
) -> list[CardDefect]:
    """A defect for each python card whose entry does not import or names no callable.

    Each card's entry is imported from its own folder (``code_dirs`` for cards not loaded from
    a file), one sandboxed check per folder.
    """
    python = [(c, p) for c, p in cards if isinstance(c.backend, PythonBackend)]
    by_folder: dict[tuple[str, ...], list[tuple[ToolCard, Path]]] = {}
    for card, path in python:
        folders = (str(card.code_folder),) if card.code_folder else tuple(code_dirs)
        by_folder.setdefault(folders, []).append((card, path))
    defects = []
    for folders, group in by_folder.items():
        entries = sorted(
            {c.backend.entry for c, _ in group if isinstance(c.backend, PythonBackend)}
        )
        results = _check_in_sandbox(entries, list(folders), sandbox, timeout_s)
        for card, path in group:
            assert isinstance(card.backend, PythonBackend)
            problem = results.get(card.backend.entry, "the check did not report on this entry")
            if problem:
                message = f"'{card.backend.entry}' {problem}"
                defects.append(CardDefect(path, "backend.entry", message))
    return defects


def _check_in_sandbox(
    entries: list[str], code_dirs: list[str], sandbox: Sandbox | None, timeout_s: float
) -> dict[str, str | None]:
    from orchestrator.execution.sandbox import Policy, Sandbox
    from orchestrator.execution.sandbox.bwrap import package_dirs
    from orchestrator.execution.sandbox.launch import python_command
    from orchestrator.permissions import DEFAULT_ENV

    sandbox = sandbox or Sandbox()
    env = {k: v for k, v in os.environ.items() if k in DEFAULT_ENV}
    inner = python_command("orchestrator.execution.sandbox.entry_check", code=code_dirs)
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
            out, err, why = _bounded_output(proc, json.dumps(entries).encode(), timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            launch.kill_all()
            proc.wait()
    finally:
        launch.cleanup()
    if why:
        return dict.fromkeys(entries, f"could not be checked: {why}")
    try:
        reported: dict[str, str | None] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " ".join(err.decode(errors="replace").split())[-300:]
        why = f"could not be checked: the import check exited with code {proc.returncode}"
        return dict.fromkeys(entries, f"{why} ({tail})" if tail else why)
    return reported


def _bounded_output(
    proc: subprocess.Popen[bytes], data: bytes, timeout_s: float
) -> tuple[bytes, bytes, str]:
    """Send ``data``; read standard output and the end of standard error until both close.

    Standard output is capped at :data:`MAX_OUTPUT_BYTES`; the third value says why the check
    was cut short (empty when it was not).
    """
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(out), bytes(err), f"importing took longer than {timeout_s:g} s"
            for key, _ in selector.select(min(left, 1.0)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is err and len(err) > _ERR_TAIL_BYTES:
                    del err[: len(err) - _ERR_TAIL_BYTES]
            if len(out) > MAX_OUTPUT_BYTES:
                mb = MAX_OUTPUT_BYTES // (1 << 20)
                why = f"importing printed more than {mb} MB on standard output"
                return bytes(out), bytes(err), f"{why} (a module should not print when imported)"
    return bytes(out), bytes(err), ""


def _where(exc: BaseException) -> str:
    """``file:line`` of the error: the syntax error's position, else the innermost frame."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")
    ]
    frames = [f for f in frames if f.filename != __file__]
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
    """Inside the sandbox (already confined): check the entries read from standard input."""
    entries = json.loads(sys.stdin.read())
    results = {entry: _check(entry) for entry in entries}
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
