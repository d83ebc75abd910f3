"""Test tools for tests/test_budget_property.py: simulated latency, tokens and failures.

They run in-process on a :class:`VirtualClock` shared with the ledger and the executor: a call
"takes" its latency by advancing the clock, and like a real executor cut at its timeout, it
takes at most ``ctx.timeout_s`` and then fails. It writes at most ``ctx.max_tokens`` tokens.
"""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.backends import CallContext


class VirtualClock:
    """A clock that only moves when a simulated call takes time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


CLOCK = VirtualClock()


class CallTimedOut(RuntimeError):
    """The simulated call hit its timeout (the executor would have killed it)."""


def load(options: dict[str, Any]) -> Any:
    latency = float(options["latency"])
    fails = bool(options.get("fails", False))
    out_tokens = int(options.get("out_tokens", 0))

    def tool(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        text = str(inputs["text"])
        if ctx.timeout_s is not None and latency > ctx.timeout_s:
            CLOCK.advance(ctx.timeout_s)
            raise CallTimedOut(f"timed out after {ctx.timeout_s:.3f} s")
        CLOCK.advance(latency)
        if fails:
            raise RuntimeError("simulated model failure")
        ctx.usage.input_tokens = len(text.split())
        ctx.usage.output_tokens = min(out_tokens, ctx.max_tokens or out_tokens)
        return {"text": f"{text} ok"}

    return tool
