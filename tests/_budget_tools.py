"""Test tools for tests/base/test_budget_property.py: simulated latency, tokens and failures.

They run in-process on a :class:`VirtualClock` shared with the ledger and the executor: a call
"takes" its latency by advancing the clock, and like a real executor cut at its timeout, it
takes at most ``ctx.timeout_s`` and then fails. It writes at most ``ctx.max_tokens`` tokens, and
counts tokens only when its card is an LLM's (``llm`` option). Loading a tool takes its ``load``
seconds in :class:`SimExecutor`, which like the worker pool stops a load at what the budget's
limit leaves.
"""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.errors import ToolFailed
from orchestrator.execution.inprocess import InProcessExecutor


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
    llm = bool(options.get("llm", False))

    def tool(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        text = str(inputs["text"])
        if ctx.timeout_s is not None and latency > ctx.timeout_s:
            CLOCK.advance(ctx.timeout_s)
            raise CallTimedOut(f"timed out after {ctx.timeout_s:.3f} s")
        CLOCK.advance(latency)
        if fails:
            raise RuntimeError("simulated model failure")
        if llm:
            ctx.usage.input_tokens = len(text.split())
            cap = out_tokens if ctx.max_tokens is None else ctx.max_tokens
            ctx.usage.output_tokens = min(out_tokens, cap)
        return {"text": f"{text} ok"}

    return tool


class SimExecutor(InProcessExecutor):
    """The in-process executor on the virtual clock, where loading a tool takes time.

    A load takes its card's ``load`` option in virtual seconds; one longer than what the
    call's limit leaves is stopped there and fails, as the worker pool kills it.
    """

    def __init__(self) -> None:
        super().__init__(clock=CLOCK)

    def _load(self, card: ToolCard, allowance: float | None) -> Tool:
        seconds = float(card.backend.options.get("load", 0.0))  # type: ignore[union-attr]
        if allowance is not None and seconds > allowance:
            CLOCK.advance(allowance)
            raise ToolFailed(card.name, f"loading took longer than the {allowance:.3f} s left")
        CLOCK.advance(seconds)
        return super()._load(card, allowance)
