"""An executor that runs tools inside this process: no isolation, for trusted, fast tools.

:class:`InProcessExecutor` implements the same :class:`~orchestrator.execution.pool.Executor`
protocol as the worker pool: it loads each card's tool once (``load_tool``), calls it, measures the
call, and validates the outputs against the card (a tool that raises or returns bad outputs fails
the call with :class:`~orchestrator.errors.ToolFailed`). It cannot kill a call, so a timeout is
enforced after the fact: a call that took longer than its timeout fails. A
:class:`~orchestrator.execution.pool.CallLimit` is enforced the same way: loading that took longer
than the limit fails the call, and the call's timeout is cut to what loading left of it. Calls are
serialized.

It exists for replaying recorded answers (the RouterBench evaluation runs thousands of queries
on two cores) and for fast test tools; anything untrusted or heavy belongs in the worker pool.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard, card_digest
from orchestrator.cards.backend import CallContext, Tool, Usage, load_tool
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import CallLimit, CallOutcome, _validated_outputs

__all__ = ["InProcessExecutor"]


class InProcessExecutor:
    """Runs tools in the calling process (see the module docstring for what that gives up)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()

    def call(
        self,
        card: ToolCard,
        inputs: dict[str, Any],
        ctx: CallContext,
        limit: CallLimit | None = None,
    ) -> CallOutcome:
        """Run the tool of ``card`` here; raise ToolFailed when it fails or overruns."""
        for spec in card.inputs:
            if not spec.optional and inputs.get(spec.name) is None:
                raise ToolFailed(card.name, f"required input '{spec.name}' is missing")
        deadline = None if limit is None else self.clock() + limit.seconds
        with self._lock:
            key = f"{card.name}@{card_digest(card)}"
            load_seconds = 0.0
            if key not in self._tools:
                started = self.clock()
                allowance = None if deadline is None else deadline - started
                try:
                    self._tools[key] = self._load(card, allowance)
                except ToolFailed:
                    raise
                except Exception as exc:  # noqa: BLE001 - a model that fails to load fails the call
                    raise ToolFailed(card.name, f"failed to load: {exc}", _trace(exc)) from exc
                load_seconds = self.clock() - started
            timeout = ctx.timeout_s
            if deadline is not None and limit is not None:
                left = deadline - self.clock()
                if left <= 0:
                    what = "loading took longer than" if load_seconds else "no time for the call in"
                    raise ToolFailed(card.name, limit.reason(what, limit.seconds, killed=False))
                timeout = left if timeout is None else min(timeout, left)
            call = CallContext(
                scratch=Path(ctx.scratch),
                max_tokens=ctx.max_tokens,
                timeout_s=timeout,
                usage=Usage(),
                on_text=ctx.on_text,
            )
            started = self.clock()
            try:
                raw = self._tools[key](dict(inputs), call)
            except ToolFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - a tool that raises fails the call
                raise ToolFailed(
                    card.name, f"raised {type(exc).__name__}: {exc}", _trace(exc)
                ) from exc
            seconds = self.clock() - started
        if timeout is not None and seconds > timeout:
            raise ToolFailed(card.name, f"took {seconds:.3f} s, over its {timeout:g} s timeout")
        outputs = _validated_outputs(card, raw, Path(ctx.scratch))
        return CallOutcome(outputs, seconds, load_seconds, call.usage)

    def _load(self, card: ToolCard, allowance: float | None) -> Tool:
        """Load the tool of ``card``; ``allowance`` is what a limit leaves for it (None: no limit).

        Loading here cannot be stopped: a load over the allowance fails the call after it ends.
        """
        return load_tool(card)

    def is_warm(self, card: ToolCard) -> bool:
        return f"{card.name}@{card_digest(card)}" in self._tools

    def close(self) -> None:
        self._tools.clear()


def _trace(exc: BaseException) -> str:
    """The exception's traceback as the worker sends it (the run record keeps the card's part)."""
    return "".join(traceback.format_exception(exc))
