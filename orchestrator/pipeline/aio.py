"""The orchestrator from asyncio: ``await orch.arun(...)``, ``async for e in orch.astream(...)``.

A run is a blocking graph of worker-process calls, so it runs on a thread of the event loop's
executor; what asyncio adds is the way in and the way out. Progress events cross from that
thread to the loop in the order they were emitted. Cancelling the awaiting task (or leaving an
``async with`` stream early) sets the run's cancel flag: the step already running finishes and
is kept, the run is stored as ``cancelled`` (``resume`` continues it), and the task's
``CancelledError`` is raised once the run has stopped, so no run goes on behind the caller's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from orchestrator.events import Event

if TYPE_CHECKING:
    from orchestrator.pipeline.orchestrator import RunResult

__all__ = ["AsyncRunning", "EventStream"]

_DONE = object()


class AsyncRunning:
    """What :class:`~orchestrator.pipeline.orchestrator.Orchestrator` offers asyncio code."""

    run: Callable[..., RunResult]

    async def arun(self, prompt: str, **options: Any) -> RunResult:
        """:meth:`run` awaited: the same options (budget, files, on_event, run_id ...).

        Cancelling the awaiting task cancels the run (see the module's doc).
        """
        cancel = options.pop("cancel", None) or threading.Event()
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(None, partial(self.run, prompt, cancel=cancel, **options))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await running  # the step in flight finishes; the run is stored as cancelled
            raise

    def astream(self, prompt: str, **options: Any) -> EventStream:
        """The run's typed progress events as they happen; ``stream.result`` at the end.

        ``async for event in orch.astream("...")`` yields each :data:`~orchestrator.events.Event`
        the run emits (``PlanMade``, ``StepStarted`` ... ``Answered``); once the loop ends,
        ``stream.result`` is the :class:`RunResult`. To leave the loop early, use it as
        ``async with orch.astream(...) as stream:`` (or ``await stream.aclose()``): the run is
        cancelled and waited for.
        """
        return EventStream(self, prompt, options)


class EventStream:
    """An async iterator over one run's events; ``result`` holds its outcome when it ends."""

    def __init__(self, owner: AsyncRunning, prompt: str, options: dict[str, Any]) -> None:
        self._owner, self._prompt, self._options = owner, prompt, dict(options)
        self._cancel: threading.Event = self._options.pop("cancel", None) or threading.Event()
        self._queue: asyncio.Queue[Any] | None = None
        self._running: asyncio.Future[RunResult] | None = None
        self.result: RunResult | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        also = self._options.pop("on_event", None)

        def on_event(event: Event) -> None:  # on the run's thread
            loop.call_soon_threadsafe(queue.put_nowait, event)
            if also is not None:
                also(event)

        run = partial(
            self._owner.run, self._prompt, cancel=self._cancel, on_event=on_event, **self._options
        )
        self._queue, self._running = queue, loop.run_in_executor(None, run)
        self._running.add_done_callback(lambda _: queue.put_nowait(_DONE))

    async def __anext__(self) -> Event:
        if self._running is None:
            self._start()
        assert self._queue is not None and self._running is not None
        if self._running.done() and self._queue.empty():  # its end is not queued yet
            self.result = self._running.result()
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except asyncio.CancelledError:
            await self._stop()
            raise
        if item is _DONE:
            self.result = self._running.result()  # the run's own error, if it raised one
            raise StopAsyncIteration
        return item

    async def _stop(self) -> None:
        self._cancel.set()
        if self._running is not None:
            with contextlib.suppress(Exception):
                self.result = await asyncio.shield(self._running)

    async def aclose(self) -> None:
        """Stop early: the run is cancelled (its finished steps kept) and waited for."""
        if self._running is not None and not self._running.done():
            await self._stop()
