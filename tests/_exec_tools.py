"""Tools for tests/execution/test_execute.py, loaded inside worker processes by python-entry cards.

``load(options)`` returns a tool whose behaviour is chosen per call by its text input,
``"<command> <argument>"`` (see ``_COMMANDS``; anything else echoes); options shape loading.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cards.backend import CallContext

# Names this worker process (its pid is not unique across sandboxes: each has its own pid space).
WORKER_ID = uuid.uuid4().hex


def load(options: dict[str, Any]) -> Any:
    """Build the test tool; ``load_error`` fails loading, ``load_sleep`` slows it."""
    if options.get("load_print"):
        print("noise from the loader")
        os.write(1, b"raw noise from the loader\n")
    time.sleep(float(options.get("load_sleep", 0)))
    if options.get("load_error"):
        raise RuntimeError(options["load_error"])
    return _tool


def _info(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "worker": WORKER_ID,
        "inputs": inputs,
        "scratch": str(ctx.scratch),
        "max_tokens": ctx.max_tokens,
        "timeout_s": ctx.timeout_s,
        "offline": os.environ.get("HF_HUB_OFFLINE"),
        "marker": os.environ.get("EXEC_TEST_MARKER"),
    }


def _hang(argument: str, ctx: CallContext) -> None:
    """Start a child whose command line carries ``marker`` (found from outside), then sleep."""
    seconds, _, marker = argument.partition(" ")
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker or "hang"])
    time.sleep(float(seconds))


def _junk() -> None:
    print("junk printed to stdout")
    print('{"ok": true, "outputs": {}}')
    sys.stdout.write("no newline at the end")
    sys.stdout.flush()
    os.write(1, b"\n{not json at all\n")


def _file(directory: Path) -> str:
    path = directory / f"{uuid.uuid4().hex}.png"
    path.write_bytes(b"\x89PNG fake")
    return str(path)


def _set(outputs: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        del outputs[name]
    else:
        outputs[name] = value


def _tokens(ctx: CallContext) -> None:
    ctx.usage.input_tokens = 7
    ctx.usage.output_tokens = 3


# command -> what it does with (argument, ctx, outputs)
_COMMANDS: dict[str, Callable[[str, CallContext, dict[str, Any]], None]] = {
    "raise": lambda arg, ctx, out: _raise(ValueError(arg)),
    "exit": lambda arg, ctx, out: os._exit(int(arg)),
    "signal": lambda arg, ctx, out: os.kill(os.getpid(), signal.Signals[arg]),
    "hang": lambda arg, ctx, out: _hang(arg, ctx),
    "sleep": lambda arg, ctx, out: time.sleep(float(arg)),
    "junk": lambda arg, ctx, out: _junk(),
    "tokens": lambda arg, ctx, out: _tokens(ctx),
    "wrong-type": lambda arg, ctx, out: _set(out, "reply", 42),
    "missing": lambda arg, ctx, out: _set(out, "reply", None),
    "not-json": lambda arg, ctx, out: _set(out, "info", {1, 2, 3}),
    "big": lambda arg, ctx, out: _set(out, "reply", "x" * int(arg)),
    "read-image": lambda arg, ctx, out: _set(
        out, "reply", Path(out["info"]["inputs"]["image"]).read_text()
    ),
    "scratch-file": lambda arg, ctx, out: _set(out, "picture", _file(ctx.scratch)),
    "outside-file": lambda arg, ctx, out: _set(out, "picture", _file(Path(tempfile.gettempdir()))),
}


def _raise(exc: Exception) -> None:
    raise exc


def _tool(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    command, _, argument = str(inputs["text"]).partition(" ")
    outputs: dict[str, Any] = {"reply": inputs["text"], "info": _info(inputs, ctx)}
    action = _COMMANDS.get(command)
    if action is not None:
        action(argument, ctx, outputs)
    return outputs
