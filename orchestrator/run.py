"""``Orchestrator.run(prompt)``: one request in, one :class:`RunResult` out."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget, Cost, Ledger
from orchestrator.config import Config
from orchestrator.errors import RunCancelled, UserError
from orchestrator.execute import Executor, WorkerPoolExecutor
from orchestrator.graph import RunContext, build_graph
from orchestrator.plan import Plan
from orchestrator.route import RouterPolicy, get_policy
from orchestrator.select import EvidenceScorer, Scorer
from orchestrator.zoo import Zoo
from planners import Planner, planner_from_config

__all__ = ["Orchestrator", "RunResult", "StepRecord"]


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
    a needed step: ``message`` names it), ``cancelled`` (stopped by the caller; resumable).
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


class Orchestrator:
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
        checkpoint_path: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or Config.load()
        self.zoo = zoo if zoo is not None else Zoo.load(self.config.card_dirs)
        self.planner = planner or planner_from_config(self.config)
        self.scorer = scorer or EvidenceScorer()
        self.policy = policy or _configured_policy(self.config)
        self.clock = clock  # what the budget's wall seconds are measured by
        self._own_executor = executor is None
        self.executor = executor or WorkerPoolExecutor.from_config(self.config)
        self.checkpoint_path: Path | None = None
        self._saver: Any = None
        if durable:
            self.checkpoint_path = Path(checkpoint_path or checkpoints_path(self.config))
            self._saver = open_checkpointer(self.checkpoint_path)
        self._graph = build_graph(self._saver)

    def run(
        self,
        prompt: str,
        *,
        budget: Budget | None = None,
        files: Sequence[str | Path] = (),
        base_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        run_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run one request to its answer (stored under ``run_id``, new by default).

        ``files`` are attached inputs; file names in ``prompt`` are read relative to
        ``base_dir`` (default: the current folder). Outputs go to ``out_dir`` (default: a new
        folder under the configured runs folder). ``on_event`` receives progress events.
        Setting ``cancel`` stops the run before its next step starts (a step already running
        finishes and is kept): the result's status is ``cancelled`` and, if the orchestrator
        is durable, ``resume(run_id)`` continues it.
        """
        run_id = run_id or uuid.uuid4().hex[:12]
        run_dir = (Path(out_dir) if out_dir else self.config.runs_dir / run_id).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        budget = budget or self.config.budget.to_budget()
        ledger = Ledger(budget, clock=self.clock)
        events = _cancellable(on_event, cancel) if cancel is not None else on_event
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
        return _result(run_id, prompt, state, ledger, run_dir)

    def _cancelled(self, run_id: str, prompt: str, ledger: Ledger, run_dir: Path) -> RunResult:
        values: dict[str, Any] = {}
        if self._saver is not None:
            values = _with_pending(self._graph.get_state(self._config(run_id)))
        values = {k: v for k, v in values.items() if k not in ("outcome", "answer")}
        result = _result(run_id, prompt, values, ledger, run_dir)
        result.status = "cancelled"
        for step in result.steps:
            last = step.attempts[-1] if step.attempts else None
            if step.status != "done" and last is not None and last.get("status") == "ok":
                step.status, step.outputs = "done", last.get("outputs")
        finished = [s.step for s in result.steps if s.status == "done"]
        result.message = "Cancelled before every step ran" + (
            f"; finished: {', '.join(finished)}." if finished else "."
        )
        if self._saver is not None:
            result.message += f" Resume with: orchestrator runs resume {run_id}"
        result.answer = result.message
        return result

    def resume(
        self, run_id: str, *, on_event: Callable[[dict[str, Any]], None] | None = None
    ) -> RunResult:
        """Continue a stored run that did not finish (e.g. its process was killed).

        Subtasks that finished are not run again; the budget already spent is carried over
        (money, tokens and calls from every settled attempt; wall seconds from the last
        routing round). A run that had finished is returned as it was.
        """
        snapshot = self._snapshot(run_id)
        values = snapshot.values
        budget = _budget_from(values.get("budget") or {})
        ledger = Ledger.resumed(budget, carried_spend(snapshot), clock=self.clock)
        run_dir = Path(values.get("run_dir") or self.config.runs_dir / run_id)
        base_dir = Path(values.get("base_dir") or Path.cwd())
        if snapshot.next:
            context = self._context(ledger, run_dir, base_dir, on_event)
            values = self._graph.invoke(
                None, context=context, config=self._config(run_id), **self._durability()
            )
        return _result(run_id, values.get("request", ""), values, ledger, run_dir)

    def runs(self) -> list[dict[str, Any]]:
        """Every stored run: id, request, outcome (or ``unfinished``) and what it spent."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return []
        rows = []
        for run_id in stored_run_ids(self.checkpoint_path):
            snapshot = self._graph.get_state(self._config(run_id))
            values = snapshot.values
            rows.append(
                {
                    "run_id": run_id,
                    "request": values.get("request", ""),
                    "status": "unfinished" if snapshot.next else values.get("outcome", "ok"),
                    "next": list(snapshot.next),
                    "spent": carried_spend(snapshot),
                    "updated": snapshot.created_at,
                }
            )
        return rows

    def show(self, run_id: str) -> RunResult:
        """The stored run as a RunResult (``status`` is ``unfinished`` if it did not end)."""
        snapshot = self._snapshot(run_id)
        values = snapshot.values
        ledger = Ledger.resumed(_budget_from(values.get("budget") or {}), carried_spend(snapshot))
        result = _result(
            run_id, values.get("request", ""), values, ledger, Path(values.get("run_dir", "."))
        )
        if snapshot.next:
            result.status = "unfinished"
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
        on_event: Callable[[dict[str, Any]], None] | None,
    ) -> RunContext:
        run_dir.mkdir(parents=True, exist_ok=True)
        return RunContext(
            zoo=self.zoo,
            planner=self.planner,
            scorer=self.scorer,
            executor=self.executor,
            ledger=ledger,
            run_dir=run_dir,
            base_dir=base_dir,
            emit=on_event or (lambda event: None),
            policy=self.policy,
        )

    def close(self) -> None:
        """Stop the worker processes this orchestrator started; close the run store."""
        if self._own_executor:
            self.executor.close()
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
                usd=str(sum((_dec(a["usd"]) for a in attempts), _dec("0"))),
            )
        )
    return RunResult(
        run_id=run_id,
        request=prompt,
        status=state.get("outcome", "ok"),
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


_UNSTOPPABLE = ("step_finished", "answer")


def _cancellable(
    on_event: Callable[[dict[str, Any]], None] | None, cancel: threading.Event
) -> Callable[[dict[str, Any]], None]:
    """Pass events on; once ``cancel`` is set, stop the run at its next event.

    A step that finished is never thrown away: its ``step_finished`` event does not stop the
    run (the step's result is then stored), the next ``step_started`` or routing event does.
    """

    def emit(event: dict[str, Any]) -> None:
        if cancel.is_set() and event.get("type") not in _UNSTOPPABLE:
            raise RunCancelled("cancelled by the user")
        if on_event is not None:
            on_event(event)

    return emit


def _dec(value: str) -> Any:
    return Decimal(value)


def checkpoints_path(config: Config) -> Path:
    """Where runs are stored.

    ``$ORCHESTRATOR_CHECKPOINTS``, the config's ``checkpoints``, else ``checkpoints.sqlite`` in
    the runs folder.
    """
    named = os.environ.get("ORCHESTRATOR_CHECKPOINTS") or config.checkpoints
    return Path(named) if named else config.runs_dir / "checkpoints.sqlite"


def open_checkpointer(path: Path) -> Any:
    """A LangGraph SQLite checkpointer on ``path`` (created with its folder if missing)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    saver = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
    saver.setup()
    return saver


def stored_run_ids(path: Path) -> list[str]:
    """The ids of the runs stored in a checkpoint database, oldest first."""
    with sqlite3.connect(str(path)) as conn:
        rows = conn.execute(
            "SELECT thread_id, MIN(rowid) FROM checkpoints GROUP BY thread_id ORDER BY 2"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _with_pending(snapshot: Any) -> dict[str, Any]:
    """A stored run's values with the writes of its interrupted round merged in.

    Steps that finished in the round a cancel or a crash cut short are kept by the
    checkpointer as pending writes; this shows them as the resumed run will.
    """
    values = dict(snapshot.values or {})
    for task in getattr(snapshot, "tasks", ()) or ():
        result = getattr(task, "result", None)
        if not isinstance(result, dict):
            continue
        for key, value in result.items():
            if isinstance(value, list):
                values[key] = [*values.get(key, []), *value]
            elif isinstance(value, dict):
                values[key] = {**values.get(key, {}), **value}
    return values


def carried_spend(snapshot: Any) -> dict[str, Any]:
    """What a stored run spent.

    Every settled attempt counts (including those of a round that was interrupted, which the
    checkpointer keeps as pending writes), and the last wall-clock reading.
    """
    attempts = list(snapshot.values.get("attempts", []))
    for task in getattr(snapshot, "tasks", ()) or ():
        result = getattr(task, "result", None)
        if isinstance(result, dict):
            attempts.extend(result.get("attempts", []))
    total = Cost()
    for a in attempts:
        total = total + Cost(
            Decimal(str(a.get("usd", "0"))),
            float(a.get("seconds", 0.0)) + float(a.get("load_seconds", 0.0)),
            int(a.get("tokens", 0)),
            int(a.get("calls", 0)),
        )
    wall = float((snapshot.values.get("spent") or {}).get("wall_seconds", 0.0))
    return {**total.as_dict(), "wall_seconds": max(wall, total.seconds)}


def _budget_from(data: dict[str, Any]) -> Budget:
    return Budget(
        usd=None if data.get("usd") is None else Decimal(str(data["usd"])),
        seconds=data.get("seconds"),
        tokens=data.get("tokens"),
        calls=data.get("calls"),
    )


def _configured_policy(config: Config) -> RouterPolicy:
    """The router policy the configuration names.

    ``$ORCHESTRATOR_ROUTER`` if set, else the config's ``router`` (``default`` unless changed).
    """
    name = os.environ.get("ORCHESTRATOR_ROUTER") or config.router
    options = dict(config.router_options)
    return get_policy(str(name), **options)
