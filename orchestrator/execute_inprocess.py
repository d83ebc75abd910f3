"""An executor that runs tools inside this process: no isolation, for trusted, fast tools.

:class:`InProcessExecutor` implements the same :class:`~orchestrator.execute.Executor` protocol
as the worker pool: it loads each card's tool once (``load_tool``), calls it, measures the call,
and validates the outputs against the card (a tool that raises or returns bad outputs fails the
call with :class:`~orchestrator.errors.ToolFailed`). It cannot kill a call, so a timeout is
enforced after the fact: a call that took longer than its timeout fails. Calls are serialized.

It exists for replaying recorded answers (the RouterBench evaluation runs thousands of queries
on two cores) and for fast test tools; anything untrusted or heavy belongs in the worker pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.backends import CallContext, Tool, Usage, load_tool
from orchestrator.cards import ToolCard
from orchestrator.errors import ToolFailed
from orchestrator.execute import CallOutcome, _validated_outputs, card_digest

__all__ = ["InProcessExecutor"]


class InProcessExecutor:
    """Runs tools in the calling process (see the module docstring for what that gives up)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()

    def call(self, card: ToolCard, inputs: dict[str, Any], ctx: CallContext) -> CallOutcome:
        """Run the tool of ``card`` here; raise ToolFailed when it fails or overruns."""
        for spec in card.inputs:
            if not spec.optional and inputs.get(spec.name) is None:
                raise ToolFailed(card.name, f"required input '{spec.name}' is missing")
        with self._lock:
            key = f"{card.name}@{card_digest(card)}"
            load_seconds = 0.0
            if key not in self._tools:
                started = self.clock()
                try:
                    self._tools[key] = load_tool(card)
                except Exception as exc:  # noqa: BLE001 - a model that fails to load fails the call
                    raise ToolFailed(card.name, f"failed to load: {exc}") from exc
                load_seconds = self.clock() - started
            call = CallContext(
                scratch=Path(ctx.scratch),
                max_tokens=ctx.max_tokens,
                timeout_s=ctx.timeout_s,
                usage=Usage(),
            )
            started = self.clock()
            try:
                raw = self._tools[key](dict(inputs), call)
            except ToolFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - a tool that raises fails the call
                raise ToolFailed(card.name, f"raised {type(exc).__name__}: {exc}") from exc
            seconds = self.clock() - started
        if ctx.timeout_s is not None and seconds > ctx.timeout_s:
            raise ToolFailed(
                card.name, f"took {seconds:.3f} s, over its {ctx.timeout_s:g} s timeout"
            )
        outputs = _validated_outputs(card, raw, Path(ctx.scratch))
        return CallOutcome(outputs, seconds, load_seconds, call.usage)

    def is_warm(self, card: ToolCard) -> bool:
        return f"{card.name}@{card_digest(card)}" in self._tools

    def close(self) -> None:
        self._tools.clear()
