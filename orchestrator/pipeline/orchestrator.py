"""``Orchestrator.run(prompt)``: one request in, one :class:`RunResult` out."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget, Ledger
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import RunCancelled, UserError
from orchestrator.events import Answered, Event, StepFinished, TokenDelta
from orchestrator.execution.pool import Executor
from orchestrator.execution.pull import AutoPull, mark_pullable
from orchestrator.pipeline.aio import AsyncRunning
from orchestrator.pipeline.answer import StepResult, compose_answer
from orchestrator.pipeline.checks import (
    checked_files,
    checked_prompt,
    configured_executor,
    configured_planner,
    configured_policy,
    configured_scorer,
    prepare_run_dir,
    short,
)
from orchestrator.pipeline.graph import RunContext, build_graph
from orchestrator.pipeline.prune import enforce_cap
from orchestrator.pipeline.store import (
    RunStore,
    as_store,
    cards_named,
    carried_spend,
    checkpoints_path,
    finished,
    open_checkpointer,
    record_unrecorded,
    run_lock,
    stored_run_ids,
    unrecorded_spend,
    with_pending,
)
from orchestrator.plan import Plan
from orchestrator.planning import Planner
from orchestrator.routing.policy import RouterPolicy
from orchestrator.selection.rank import Scorer
from orchestrator.tracing import Traces

__all__ = [
    "Orchestrator",
    "RunResult",
    "StepRecord",
    "carried_spend",
    "checkpoints_path",
    "open_checkpointer",
    "stored_run_ids",
]


@dataclass
class StepRecord:
    """What happened to one subtask: the chosen card and why, each attempt, the result."""

    step: str
    task: str
    instruction: str
    status: str
    card: str | None
    candidates: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    outputs: dict[str, Any] | None
    seconds: float
    usd: str


@dataclass
class RunResult:
    """The outcome of one run.

    ``status`` is one of: ``ok`` (every step finished), ``partial`` (some did), ``failed``
    (none did), ``budget_exhausted`` (the budget stopped some steps), ``rejected`` (the request
    or plan was malformed: ``message`` says what to fix), ``unservable`` (no available card can do
    a needed step: ``message`` names it), ``cancelled`` (stopped by the caller; resumable),
    ``unfinished`` (a stored run that did not end: its process died or was cancelled).
    """

    run_id: str
    request: str
    status: str
    answer: str
    message: str
    plan: Plan | None
    steps: list[StepRecord]
    artifacts: list[Path]
    spent: dict[str, Any]
    budget_left: dict[str, Any]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for ``--json`` and the HTTP API)."""
        return {
            "run_id": self.run_id,
            "request": self.request,
            "status": self.status,
            "answer": self.answer,
            "message": self.message,
            "plan": self.plan.model_dump(mode="json") if self.plan else None,
            "steps": [vars(s) for s in self.steps],
            "decisions": self.decisions,
            "artifacts": [str(p) for p in self.artifacts],
            "spent": self.spent,
            "budget_left": self.budget_left,
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


class Orchestrator(AsyncRunning):
    """Plans a request, selects a model per subtask, runs them, and answers, within a budget."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        zoo: Zoo | None = None,
        planner: Planner | None = None,
        scorer: Scorer | None = None,
        executor: Executor | None = None,
        policy: RouterPolicy | None = None,
        durable: bool = True,
        checkpoint_path: str | RunStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or Config.load()
        # What the user approved of the cards' requests is the configuration's, for a zoo
        # passed in too (its python cards run their own folders' code, see WorkerPoolExecutor).
        approvals = Approvals.from_config(self.config)
        self.zoo = zoo if zoo is not None else Zoo.load(self.config.card_dirs, approvals=approvals)
        self.zoo.approve(approvals)
        # [models] auto_pull: cards lacking only hub weights are chosen and pulled on first use.
        self._to_pull = mark_pullable(self.zoo) if self.config.models.auto_pull else set()
        # A misnamed planner, scorer, router or executor, or a bad router option: refused now.
        self.planner = planner or configured_planner(self.config)
        self.scorer = scorer or configured_scorer(self.config)
        self.policy = policy or configured_policy(self.config)
        self.clock = clock  # what the budget's wall seconds are measured by
        self._own_executor = executor is None
        self.executor = executor or configured_executor(self.config)
        self.checkpoint_path: RunStore | None = None
        self._saver: Any = None
        if durable:
            self.checkpoint_path = as_store(checkpoint_path or checkpoints_path(self.config))
            self._saver = open_checkpointer(self.checkpoint_path)
            enforce_cap(self._saver, self.checkpoint_path, self.config)  # max_store_mb
        self._graph = build_graph(self._saver)
        self.traces = Traces.from_config(self.config.tracing)  # OpenTelemetry, if configured

    def run(
        self,
        prompt: str,
        *,
        budget: Budget | None = None,
        files: Sequence[str | Path] = (),
        base_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        on_event: Callable[[Event], None] | None = None,
        run_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run one request to its answer (stored under ``run_id``, new by default).

        ``files`` are attached inputs; file names in ``prompt`` are read relative to
        ``base_dir`` (default: the current folder). Outputs go to ``out_dir`` (default: a new
        folder under the configured runs folder). ``on_event`` receives progress events.
        Setting ``cancel`` stops the run before its next step starts (a step already running
        finishes and is kept; one that fails after the cancel, e.g. because its worker was
        stopped, is not recorded and runs again on resume): the result's status is
        ``cancelled`` and, if the orchestrator is durable, ``resume(run_id)`` continues it.

        A prompt that is not a string raises ``TypeError``; one longer than the config's
        ``max_prompt_chars`` is ``rejected``, as is an attached file that is missing or a folder.
        None of them is stored. A ``run_id`` already in the
        store is refused (:class:`UserError`): use :meth:`resume` or another id.
        """
        refused = checked_prompt(prompt, self.config.max_prompt_chars) or checked_files(files)
        run_id = run_id or uuid.uuid4().hex[:12]
        if refused is not None:
            return _rejected(run_id, prompt, refused, budget or self.config.budget.to_budget())
        if self.checkpoint_path is None:
            return self._run(prompt, run_id, budget, files, base_dir, out_dir, on_event, cancel)
        with run_lock(self.checkpoint_path, run_id):
            if self._saver.get_tuple(self._config(run_id)) is not None:
                raise UserError(
                    f"run {run_id} already exists in {self.checkpoint_path}; continue it with "
                    f"resume({run_id!r}) (orchestrator runs resume {run_id}), or use another run_id"
                )
            return self._run(prompt, run_id, budget, files, base_dir, out_dir, on_event, cancel)

    def _run(
        self,
        prompt: str,
        run_id: str,
        budget: Budget | None,
        files: Sequence[str | Path],
        base_dir: str | Path | None,
        out_dir: str | Path | None,
        on_event: Callable[[Event], None] | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        run_dir = (Path(out_dir) if out_dir else self.config.runs_dir / run_id).resolve()
        prepare_run_dir(run_dir, chosen=out_dir is not None)
        budget = budget or self.config.budget.to_budget()
        ledger = Ledger(budget, clock=self.clock)
        with self.traces.run(run_id, prompt, on_event) as traced:
            events = _cancellable(traced, cancel) if cancel is not None else traced
            context = self._context(ledger, run_dir, Path(base_dir or Path.cwd()).resolve(), events)
            try:
                state = self._graph.invoke(
                    {
                        "request": prompt,
                        "files": [str(Path(f).resolve()) for f in files],
                        "budget": budget.as_dict(),
                        "run_dir": str(run_dir),
                        "base_dir": str(context.base_dir),
                    },
                    context=context,
                    config=self._config(run_id),
                    **self._durability(),
                )
            except RunCancelled:
                return self._cancelled(run_id, prompt, ledger, run_dir)
            except Exception:
                # Stopping a run's workers to cancel it can fail a call in flight in other ways.
                if cancel is not None and cancel.is_set():
                    return self._cancelled(run_id, prompt, ledger, run_dir)
                raise
            return _result(run_id, prompt, state, ledger, run_dir)

    def _cancelled(self, run_id: str, prompt: str, ledger: Ledger, run_dir: Path) -> RunResult:
        values: dict[str, Any] = {}
        if self._saver is not None:
            assert self.checkpoint_path is not None
            snapshot = self._graph.get_state(self._config(run_id))
            record_unrecorded(self.checkpoint_path, run_id, snapshot, ledger.snapshot())
            values = with_pending(snapshot)
        values = {k: v for k, v in values.items() if k not in ("outcome", "answer")}
        result = _unfinished(_result(run_id, prompt, values, ledger, run_dir), "cancelled")
        finished_steps = [s.step for s in result.steps if s.status == "done"]
        if result.steps and len(finished_steps) == len(result.steps):
            result.message = "Cancelled after every step had finished: the answer is complete."
            if self._saver is not None:
                result.message += f" Store it as finished with: orchestrator runs resume {run_id}"
        else:
            result.message = "Cancelled before every step ran" + (
                f"; finished: {', '.join(finished_steps)}." if finished_steps else "."
            )
            if self._saver is not None:
                result.message += f" Resume with: orchestrator runs resume {run_id}"
        done = self._finished_steps(result)
        result.artifacts = [
            Path(str(step.outputs[io.name]))
            for step in done
            for io in step.card.outputs
            if io.type in ("audio", "image") and io.name in step.outputs
        ]
        result.answer = (compose_answer(done) + "\n" + result.message).strip()
        return result

    def _finished_steps(self, result: RunResult) -> list[StepResult]:
        """The steps that finished (those whose card is not loaded are left out)."""
        return [
            StepResult(s.step, s.instruction, self.zoo.get(s.card).card, s.outputs)
            for s in result.steps
            if s.status == "done" and s.outputs is not None and s.card in self.zoo
        ]

    def resume(
        self,
        run_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None,
        budget: Budget | None = None,
    ) -> RunResult:
        """Continue a stored run that did not finish (e.g. its process was killed).

        Subtasks that finished are not run again; the budget already spent is carried over
        (money, tokens and calls from every settled attempt; wall seconds from the last
        routing round). A run that had finished is returned as it was. A run being run or
        resumed by another process is refused (:class:`UserError`), as is one that needs a
        card this orchestrator has not loaded. ``cancel`` works as in :meth:`run`.

        ``budget`` replaces the run's limits (what was spent still counts against them). A run
        that ended ``budget_exhausted`` is then continued: the steps the budget stopped, and
        those waiting on them, run under the new limits; the finished ones are kept.
        """
        self._snapshot(run_id)
        assert self.checkpoint_path is not None
        with run_lock(self.checkpoint_path, run_id):
            snapshot = self._snapshot(run_id)
            values = with_pending(snapshot)
            if budget is not None and self._reopened(run_id, values, budget):
                values = with_pending(self._graph.get_state(self._config(run_id)))
            budget = budget or _budget_from(values.get("budget") or {})
            ledger = Ledger.resumed(budget, self._carried(run_id, snapshot), clock=self.clock)
            run_dir = Path(values.get("run_dir") or self.config.runs_dir / run_id)
            base_dir = Path(values.get("base_dir") or Path.cwd())
            if finished(values):
                return _result(run_id, values.get("request", ""), values, ledger, run_dir)
            self._check_resumable(run_id, values)
            with self.traces.run(run_id, str(values.get("request", "")), on_event) as traced:
                events = _cancellable(traced, cancel) if cancel is not None else traced
                context = self._context(ledger, run_dir, base_dir, events)
                try:
                    values = self._graph.invoke(
                        None, context=context, config=self._config(run_id), **self._durability()
                    )
                except Exception as exc:
                    if isinstance(exc, RunCancelled) or (cancel is not None and cancel.is_set()):
                        return self._cancelled(run_id, values["request"], ledger, run_dir)
                    raise
        return _result(run_id, values.get("request", ""), values, ledger, run_dir)

    def _reopened(self, run_id: str, values: dict[str, Any], budget: Budget) -> bool:
        """Reopen a run that ended ``budget_exhausted``, under ``budget``; False if it did not."""
        if not finished(values) or values.get("outcome") != "budget_exhausted":
            return False
        status = values.get("status", {})
        again = {s: "waiting" for s, v in status.items() if v in ("over_budget", "skipped")}
        update = {
            "budget": budget.as_dict(),
            "status": {**status, **again},
            **{"answer": None, "outcome": "", "message": "", "finished": ""},
        }
        # Written as the select node's output, so the run goes on at the router.
        self._graph.update_state(self._config(run_id), update, as_node="select")
        return True

    def _check_resumable(self, run_id: str, values: dict[str, Any]) -> None:
        if not isinstance(values.get("request"), str):
            raise UserError(f"run {run_id} has no request stored; it cannot be resumed")
        try:
            _result(run_id, values["request"], values, Ledger(Budget()), Path("."))
        except Exception as exc:  # noqa: BLE001 - an odd stored entry is reported, not run
            raise UserError(f"run {run_id} {_unreadable(exc)}") from exc
        missing = sorted(cards_named(values) - {e.card.name for e in self.zoo})
        if missing:
            names = ", ".join(missing)
            raise UserError(
                f"run {run_id} needs the card(s) {names}, which are not loaded; pass the folder "
                "of each with --cards DIR (or add it to card_dirs in the config) and resume again"
            )

    def _carried(self, run_id: str, snapshot: Any) -> dict[str, Any]:
        """What a stored run spent: its attempts and what a cancel stopped in flight."""
        return carried_spend(snapshot, unrecorded_spend(self.checkpoint_path, run_id))

    def runs(self) -> list[dict[str, Any]]:
        """Every stored run: id, request, outcome (or ``unfinished``) and what it spent.

        A stored entry that cannot be read is listed with status ``unreadable``.
        """
        if self.checkpoint_path is None:
            return []
        rows = []
        for run_id in stored_run_ids(self.checkpoint_path):
            try:
                rows.append(self._row(run_id))
            except Exception as exc:  # noqa: BLE001 - one odd entry must not hide the others
                rows.append(
                    {
                        "run_id": run_id,
                        "request": "",
                        "status": "unreadable",
                        "next": [],
                        "spent": carried_spend(_Empty()),
                        "updated": None,
                        "error": f"{type(exc).__name__}: {short(str(exc))}",
                    }
                )
        return rows

    def _row(self, run_id: str) -> dict[str, Any]:
        snapshot = self._graph.get_state(self._config(run_id))
        values = snapshot.values or {}
        request = values.get("request")
        done = finished(values)
        return {
            "run_id": run_id,
            "request": request if isinstance(request, str) else "",
            "status": str(values.get("outcome") or "ok") if done else "unfinished",
            "next": list(snapshot.next) if not done else [],
            "spent": self._carried(run_id, snapshot),
            "updated": snapshot.created_at,
        }

    def show(self, run_id: str) -> RunResult:
        """The stored run as a RunResult (``status`` is ``unfinished`` if it did not end).

        Of an unfinished run, the steps that finished show their outputs (status ``done``).
        """
        snapshot = self._snapshot(run_id)
        values = with_pending(snapshot)
        budget = _budget_from(values.get("budget") or {})
        ledger = Ledger.resumed(budget, self._carried(run_id, snapshot))
        request = values.get("request")
        try:
            result = _result(
                run_id,
                request if isinstance(request, str) else "",
                values,
                ledger,
                Path(values.get("run_dir") or "."),
            )
        except Exception as exc:  # noqa: BLE001 - an odd stored entry is reported, not raised
            raise UserError(f"run {run_id} {_unreadable(exc)}") from exc
        if not finished(values):
            _unfinished(result, "unfinished")
        return result

    def _snapshot(self, run_id: str) -> Any:
        if self._saver is None:
            raise UserError("this orchestrator stores no runs (durable=False)")
        snapshot = self._graph.get_state(self._config(run_id))
        if not snapshot.values:
            raise UserError(f"no stored run '{run_id}' in {self.checkpoint_path}")
        return snapshot

    def _config(self, run_id: str) -> dict[str, Any]:
        return {"recursion_limit": 500, "configurable": {"thread_id": run_id}}

    def _durability(self) -> dict[str, Any]:
        # "sync": each step's checkpoint is written before the next step starts.
        return {"durability": "sync"} if self._saver is not None else {}

    def _context(
        self,
        ledger: Ledger,
        run_dir: Path,
        base_dir: Path,
        on_event: Callable[[Event], None] | None,
    ) -> RunContext:
        prepare_run_dir(run_dir, chosen=False)
        emit = on_event or (lambda event: None)
        executor = self.executor
        if self._to_pull:
            executor = AutoPull(self.executor, self._to_pull, emit)
        return RunContext(
            zoo=self.zoo,
            planner=self.planner,
            scorer=self.scorer,
            executor=executor,
            ledger=ledger,
            run_dir=run_dir,
            base_dir=base_dir,
            emit=emit,
            policy=self.policy,
        )

    def close(self) -> None:
        """Stop the worker processes this orchestrator started; close the run store."""
        if self._own_executor:
            self.executor.close()
        self.traces.close()
        if self._saver is not None:
            self._saver.conn.close()
            self._saver = None

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(
    run_id: str, prompt: str, state: dict[str, Any], ledger: Ledger, run_dir: Path
) -> RunResult:
    plan = Plan.model_validate(state["plan"]) if state.get("plan") else None
    steps: list[StepRecord] = []
    for subtask in plan.subtasks if plan else []:
        attempts = [a for a in state.get("attempts", []) if a["step"] == subtask.id]
        selection = state.get("selections", {}).get(subtask.id, {})
        result = state.get("results", {}).get(subtask.id)
        steps.append(
            StepRecord(
                step=subtask.id,
                task=subtask.task,
                instruction=subtask.instruction,
                status=state.get("status", {}).get(subtask.id, "not_run"),
                card=result["card"] if result else (attempts[-1]["card"] if attempts else None),
                candidates=selection.get("candidates", []),
                rejected=selection.get("rejected", []),
                attempts=attempts,
                outputs=result["outputs"] if result else None,
                seconds=round(sum(a["seconds"] + a["load_seconds"] for a in attempts), 3),
                usd=str(sum((Decimal(str(a["usd"])) for a in attempts), Decimal(0))),
            )
        )
    return RunResult(
        run_id=run_id,
        request=prompt,
        status=str(state.get("outcome") or "ok") if finished(state) else "unfinished",
        answer=state.get("answer", ""),
        message=state.get("message", ""),
        plan=plan,
        steps=steps,
        artifacts=[Path(p) for p in state.get("artifacts", [])],
        spent={**ledger.spent.as_dict(), "wall_seconds": round(ledger.elapsed(), 3)},
        budget_left=ledger.left(),
        decisions=state.get("decisions", []),
        run_dir=run_dir,
    )


def _cancellable(
    on_event: Callable[[Event], None] | None, cancel: threading.Event
) -> Callable[[Event], None]:
    """Pass events on; once ``cancel`` is set, stop the run at its next event.

    A step that finished is never thrown away: its ``step_finished`` event does not stop the
    run (the step's result is then stored), the next ``step_started`` or routing event does.
    A step that did not succeed after the cancel (its worker may have been stopped to cancel
    it) stops the run without being recorded: it runs again on resume.
    """

    def emit(event: Event) -> None:
        if cancel.is_set():
            finished_ok = isinstance(event, StepFinished) and event.status == "ok"
            if not (finished_ok or isinstance(event, Answered | TokenDelta)):
                raise RunCancelled("cancelled by the user")
        if on_event is not None:
            on_event(event)

    return emit


def _budget_from(data: dict[str, Any]) -> Budget:
    return Budget(
        usd=None if data.get("usd") is None else Decimal(str(data["usd"])),
        seconds=data.get("seconds"),
        tokens=data.get("tokens"),
        calls=data.get("calls"),
    )


def _unfinished(result: RunResult, status: str) -> RunResult:
    """``result`` of a run that did not end: a step whose last attempt succeeded shows it."""
    result.status = status
    for step in result.steps:
        last = step.attempts[-1] if step.attempts else None
        if step.status != "done" and last is not None and last.get("status") == "ok":
            step.status, step.outputs = "done", last.get("outputs")
            step.card = last.get("card")
    return result


def _rejected(run_id: str, prompt: str, message: str, budget: Budget) -> RunResult:
    """A request refused before anything ran or was stored."""
    return RunResult(
        run_id=run_id,
        request=short(prompt),
        status="rejected",
        answer=message,
        message=message,
        plan=None,
        steps=[],
        artifacts=[],
        spent={**Ledger(budget).spent.as_dict(), "wall_seconds": 0.0},
        budget_left=Ledger(budget).left(),
    )


def _unreadable(exc: Exception) -> str:
    return (
        f"is stored in a form that cannot be read ({type(exc).__name__}: "
        f"{short(str(exc).splitlines()[0] if str(exc) else '')})"
    )


class _Empty:
    """A snapshot of nothing (for a stored entry that cannot be read)."""

    values: dict[str, Any] = {}
    tasks: tuple[Any, ...] = ()
