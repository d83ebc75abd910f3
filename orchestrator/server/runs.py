"""Runs behind ``orchestrator serve``: asyncio tasks over the orchestrator's ``astream``.

One :class:`~orchestrator.pipeline.orchestrator.Orchestrator` (one warm worker pool, one run store)
serves every request. Each run is an asyncio task iterating
:meth:`~orchestrator.pipeline.aio.AsyncRunning.astream`; at most ``max_concurrent_runs`` of them
run at once (a semaphore), more wait for a slot, and beyond ``max_queued_runs`` waiting ones a
request gets a 429. Cancelling a run's task (the client hung up, or pressed stop) cancels the run
the asyncio way: the step in flight finishes and is kept, the run is stored as ``cancelled`` and
stays resumable, and the task ends once the run has stopped. The orchestrator is safe to share:
the worker pool and the ledger lock their state, each run has its own ledger, graph context and
run folder, and LangGraph's SQLite (or Postgres) checkpointer serializes its writes on one
connection.

A request naming a card as its ``model`` runs on that card alone: a one-card zoo and a planner
that makes one subtask of the whole request (its text, and the attached file of the type the
card takes), sharing the main worker pool. Plans may read files only inside the runs folder
(the request's own attachments and earlier runs' files): a path elsewhere on the server is
refused before anything runs.

A job carries a claim (:mod:`orchestrator.server.retention`) that keeps its folder and the files
it reads from retention sweeps; the service releases it when the run ends, then asks for a sweep
(at most one a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget, usd_text
from orchestrator.cards import ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import PlanError, RequestRejected
from orchestrator.events import Answered, BudgetReport, Event, Selected, StepFinished
from orchestrator.plan import FileArg, Plan, Subtask
from orchestrator.server.retention import Claim, Retention

__all__ = ["ConfinedPlanner", "LiveRun", "RunJob", "RunService", "SingleCardPlanner"]

_DONE = object()


class ConfinedPlanner:
    """Wraps a planner: every file a plan reads must lie inside ``root`` (the runs folder)."""

    def __init__(self, inner: Any, root: Path) -> None:
        self.inner = inner
        self.root = root.resolve()
        self.name = getattr(inner, "name", "planner")

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """The inner planner's plan, refused if it reads a file outside ``root``."""
        plan = self.inner.plan(request, zoo, files=files)
        for subtask in plan.subtasks:
            for arg in subtask.args.values():
                if isinstance(arg, FileArg) and not self._inside(arg.path):
                    raise PlanError(
                        f"step {subtask.id} would read '{arg.path}', which is not a file of this "
                        "conversation; attach the file to the message instead"
                    )
        return plan

    def _inside(self, path: str) -> bool:
        # A relative path is read from the run's folder, which is always ROOT/RUN_ID.
        base = self.root / "run"
        resolved = (Path(path) if Path(path).is_absolute() else base / path).resolve()
        return resolved.is_relative_to(self.root)


class SingleCardPlanner:
    """Plans the whole request as one subtask for one card (a request naming a card as model)."""

    name = "single-card"

    def __init__(self, card: ToolCard) -> None:
        self.card = card

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """One subtask for the card, its inputs from the request and the attached files.

        Its text input reads an attached text file if there is one, else the request's text.
        """
        from orchestrator.planning.embedded import file_type

        args: dict[str, Any] = {}
        texts = [f for f in files if file_type(str(f)) == "text"]
        for spec in self.card.inputs:
            if spec.type == "text" and "text" not in args and texts:
                args["text"] = {"kind": "file", "path": str(texts[0])}  # the attached text
            elif spec.type == "text" and "text" not in args and request.strip():
                args["text"] = {"kind": "text", "value": request.strip()}
            elif spec.type in ("audio", "image") and spec.type not in args:
                found = [f for f in files if file_type(str(f)) == spec.type]
                if found:
                    args[spec.type] = {"kind": "file", "path": str(found[0])}
                elif not spec.optional:
                    raise PlanError(f"{self.card.name} needs an {spec.type} file: attach one")
        if not args:
            raise PlanError("the request is empty: say what you want done")
        subtask = Subtask(
            id="s1", task=self.card.task, instruction=request.strip() or self.card.task, args=args
        )
        return Plan(request=request, subtasks=[subtask], planner=self.name)


@dataclass
class RunJob:
    """One request to run."""

    run_id: str
    prompt: str
    files: list[Path]
    budget: Budget
    run_dir: Path
    card: str | None = None  # run on this card alone
    claim: Claim | None = None  # what the run uses, kept from sweeps until it ends


@dataclass(eq=False)  # compared and hashed by identity: the service keeps a set of them
class LiveRun:
    """A run in its asyncio task, with its events on a queue until it ends."""

    job: RunJob
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[Any] | None = None
    started: float = field(default_factory=time.monotonic)
    usd: Decimal = Decimal(0)
    calls: int = 0
    stopped: bool = False  # cancelled by the client (hang-up or stop button)

    @property
    def done(self) -> bool:
        return self.task is None or self.task.done()

    def stop(self) -> None:
        """Cancel the run's task: the run stops after the step in flight, stored as cancelled."""
        if not self.done:
            self.stopped = True
            assert self.task is not None
            self.task.cancel()

    async def events(self) -> AsyncIterator[Event]:
        """The run's events as they come (shaped for the wire), until it ends."""
        while True:
            event = await self.queue.get()
            if event is _DONE:
                return
            for shaped in self.shape(event):
                yield shaped

    async def result(self) -> Any:
        """The RunResult (raises what the run raised; CancelledError for a stopped run)."""
        assert self.task is not None
        return await asyncio.shield(self.task)

    def shape(self, event: Event) -> list[Event]:
        """The streamed form of one pipeline event (plus a budget report after each step)."""
        match event:
            case Selected(selections=selections):
                return [Selected(selections=_top_candidates(selections))]
            case StepFinished():
                self.usd += Decimal(event.usd)
                self.calls += event.calls
                previews = _previews(event.outputs or {})
                return [event.model_copy(update={"outputs": previews}), self.budget_event()]
            case Answered():
                return [event.model_copy(update={"artifacts": None})]
        return [event]

    def budget_event(self) -> BudgetReport:
        """What the steps finished so far spent, and what is left of each limit."""
        limits = self.job.budget
        seconds = time.monotonic() - self.started
        return BudgetReport(
            spent={
                "usd": usd_text(self.usd),
                "calls": self.calls,
                "wall_seconds": round(seconds, 3),
            },
            left={
                "usd": None if limits.usd is None else usd_text(limits.usd - self.usd),
                "calls": None if limits.calls is None else limits.calls - self.calls,
                "seconds": None if limits.seconds is None else round(limits.seconds - seconds, 3),
            },
            limits=limits.as_dict(),
        )


def _top_candidates(selections: dict[str, Any], keep: int = 3) -> dict[str, Any]:
    return {
        step: [
            {"card": c.get("card"), "score": c.get("score"), "why": c.get("why")}
            for c in record.get("candidates", [])[:keep]
        ]
        for step, record in selections.items()
    }


def _previews(outputs: dict[str, Any], limit: int = 300) -> dict[str, str]:
    import json

    previews = {}
    for name, value in outputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if isinstance(value, str) and Path(value).is_absolute():
            text = Path(value).name
        previews[name] = text if len(text) <= limit else text[: limit - 3] + "..."
    return previews


class RunService:
    """Runs requests on one shared orchestrator, at most ``max_concurrent_runs`` at once."""

    def __init__(
        self,
        config: Config,
        zoo: Zoo,
        *,
        orchestrator: Any = None,
        retention: Retention | None = None,
    ) -> None:
        from orchestrator.pipeline.orchestrator import Orchestrator
        from orchestrator.pipeline.store import checkpoints_path
        from orchestrator.planning import planner_from_config

        self.config = config
        self.zoo = zoo
        self.runs_dir = Path(config.runs_dir).resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.retention = retention or Retention.from_config(
            self.runs_dir, config.server, checkpoints_path(config)
        )
        self._own = orchestrator is None
        if orchestrator is None:
            planner = ConfinedPlanner(planner_from_config(config), self.runs_dir)
            orchestrator = Orchestrator(config, zoo=zoo, planner=planner)
        self.orchestrator = orchestrator
        server = config.server
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop
        self._concurrent = server.max_concurrent_runs
        self._capacity = server.max_concurrent_runs + server.max_queued_runs
        self._lock = threading.Lock()
        self._live: set[LiveRun] = set()
        self._single: dict[str, Any] = {}
        self._closed = False

    @property
    def active(self) -> int:
        """Runs running or waiting."""
        with self._lock:
            return len(self._live)

    def start(self, job: RunJob, _loop: asyncio.AbstractEventLoop | None = None) -> LiveRun:
        """Queue ``job`` as a task on the running loop; a full queue is a 429.

        Its claim is released when the run ends.
        """
        live = LiveRun(job)
        with self._lock:
            if self._closed:
                raise RequestRejected(503, "the server is shutting down", type_="server_error")
            if len(self._live) >= self._capacity:
                raise RequestRejected(
                    429,
                    f"the server is busy ({len(self._live)} runs running or waiting); "
                    "try again in a moment",
                    type_="rate_limit_error",
                    code="server_busy",
                )
            self._live.add(live)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrent)
        loop = asyncio.get_running_loop()
        live.task = loop.create_task(self._run(live, self._slots))
        live.task.add_done_callback(lambda _task: self._ended(live, loop))
        return live

    def _ended(self, live: LiveRun, loop: asyncio.AbstractEventLoop) -> None:
        live.queue.put_nowait(_DONE)
        # Releasing takes the retention lock, which a sweep holds while it deletes: not on the
        # loop's thread.
        loop.run_in_executor(None, self._release, live)

    def _release(self, live: LiveRun) -> None:
        if live.job.claim is not None:
            live.job.claim.release()
        with self._lock:
            self._live.discard(live)
        self.retention.maybe_sweep()  # at most once a minute, in the background

    async def _run(self, live: LiveRun, slots: asyncio.Semaphore) -> Any:
        job = live.job
        async with slots:  # a run waiting here and cancelled never starts
            orchestrator = self._for_card(job.card) if job.card else self.orchestrator
            stream = orchestrator.astream(
                job.prompt,
                budget=job.budget,
                files=job.files,
                base_dir=job.run_dir,
                out_dir=job.run_dir,
                run_id=job.run_id,
            )
            async with stream:  # leaving early (cancelled) stops the run and waits for it
                async for event in stream:
                    live.queue.put_nowait(event)
            return stream.result

    def _for_card(self, name: str) -> Any:
        from orchestrator.pipeline.orchestrator import Orchestrator

        with self._lock:
            single = self._single.get(name)
            if single is None:
                card = self.zoo.get(name).card
                single = Orchestrator(
                    self.config,
                    zoo=Zoo.from_cards([card]),
                    planner=ConfinedPlanner(SingleCardPlanner(card), self.runs_dir),
                    scorer=self.orchestrator.scorer,
                    executor=self.orchestrator.executor,
                    policy=self.orchestrator.policy,
                    durable=False,
                )
                self._single[name] = single
        return single

    async def aclose(self) -> None:
        """Cancel the runs and wait until they have stopped, then :meth:`close`.

        A running run stops after its step in flight and stays resumable (``orchestrator runs
        resume``); a run still waiting for a slot is dropped.
        """
        with self._lock:
            self._closed = True
            tasks = [live.task for live in self._live if live.task is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close the run store and the worker processes (runs have ended: see :meth:`aclose`)."""
        with self._lock:
            self._closed = True
        self.retention.close()
        for single in self._single.values():
            single.close()
        if self._own:
            self.orchestrator.close()
