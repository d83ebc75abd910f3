"""The worker process: loads one tool and serves its calls.

It is started through :func:`orchestrator.execution.sandbox.launch.python_command`, which confines
it first.

Protocol, one JSON object per line:

* parent -> worker, first line: the card (``ToolCard.model_dump(mode="json")``);
  worker -> parent: ``{"ok": true, "load_seconds": s, "pid": p}`` or
  ``{"ok": false, "error": "Type: message", "traceback": "..."}`` (then the worker exits).
* then per call, parent -> worker: ``{"inputs", "scratch", "max_tokens", "timeout_s", "stream"}``;
  with ``stream`` true, a tool that generates text streams it first: ``{"text": piece}`` lines,
  one per piece as it is made (joined, they are its text output); then
  worker -> parent: ``{"ok": true, "outputs", "seconds", "usage"}`` or
  ``{"ok": false, "kind": "raised" | "bad_output", "error", "traceback"}``.
* end of file on stdin: the worker exits with code 0.

The sandbox's bootstrap (:mod:`orchestrator.execution.sandbox.boot`) confined the process before
this module was imported: no code of a card was importable until then, and its folder comes last on
the import path.

Protocol messages go through a private duplicate of the original stdout; file descriptor 1 is
pointed at stderr (the worker's log) before anything else is imported, so libraries that print
cannot corrupt the protocol. Standard input is replaced by /dev/null for the same reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, BinaryIO

_TRACEBACK_CHARS = 4000


def _private_channels() -> tuple[BinaryIO, BinaryIO]:
    """Keep the protocol pipes on private descriptors; fd 0 is /dev/null, fd 1 is stderr."""
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return protocol_in, protocol_out


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n")
    out.flush()


def _error(exc: BaseException, kind: str = "raised") -> dict[str, Any]:
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    trace = "".join(traceback.format_exception(exc))[-_TRACEBACK_CHARS:]
    return {"ok": False, "kind": kind, "error": message, "traceback": trace}


class _BadOutput(Exception):
    """The tool returned something that cannot be sent back as its outputs."""


def _encoded_outputs(outputs: Any) -> dict[str, Any]:
    """Outputs made JSON-ready (paths become strings); name the output that is not."""
    if not isinstance(outputs, dict):
        raise _BadOutput(f"the tool returned {type(outputs).__name__}, not a dict of outputs")
    ready: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise _BadOutput(f"output '{name}' is not JSON-serializable: {exc}") from None
        ready[str(name)] = value
    return ready


def _serve(tool: Any, protocol_in: BinaryIO, protocol_out: BinaryIO) -> None:
    from pathlib import Path

    from orchestrator.cards.backend import CallContext

    for line in protocol_in:
        request = json.loads(line)
        ctx = CallContext(
            scratch=Path(request["scratch"]),
            max_tokens=request.get("max_tokens"),
            timeout_s=request.get("timeout_s"),
        )
        if request.get("stream"):
            ctx.on_text = lambda piece: _send(protocol_out, {"text": piece})
        started = time.monotonic()
        try:
            outputs = _encoded_outputs(tool(request["inputs"], ctx))
        except _BadOutput as exc:
            _send(protocol_out, {"ok": False, "kind": "bad_output", "error": str(exc)})
            continue
        except Exception as exc:  # the tool's failure is reported, the worker goes on
            _send(protocol_out, _error(exc))
            continue
        seconds = time.monotonic() - started
        usage = {
            "input_tokens": ctx.usage.input_tokens,
            "output_tokens": ctx.usage.output_tokens,
        }
        _send(protocol_out, {"ok": True, "outputs": outputs, "seconds": seconds, "usage": usage})


def main() -> int:
    """Load the card's tool, then serve calls until standard input ends."""
    protocol_in, protocol_out = _private_channels()
    line = protocol_in.readline()
    if not line:
        return 0
    started = time.monotonic()
    try:
        from orchestrator.cards import ToolCard
        from orchestrator.cards.backend import load_tool

        tool = load_tool(ToolCard.model_validate(json.loads(line)))
    except Exception as exc:
        _send(protocol_out, _error(exc))
        return 1
    _send(
        protocol_out, {"ok": True, "load_seconds": time.monotonic() - started, "pid": os.getpid()}
    )
    _serve(tool, protocol_in, protocol_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
