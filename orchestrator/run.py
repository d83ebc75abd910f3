"""``Orchestrator.run(prompt)``: one request in, one :class:`RunResult` out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget, Ledger
from orchestrator.config import Config
from orchestrator.execute import Executor, WorkerPoolExecutor
from orchestrator.graph import RunContext, build_graph
from orchestrator.plan import Plan
from orchestrator.select import EvidenceScorer, Scorer
from orchestrator.zoo import Zoo
from planners import Planner, get_planner

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
    a needed step: ``message`` names it).
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
    ) -> None:
        self.config = config or Config.load()
        self.zoo = zoo if zoo is not None else Zoo.load(self.config.card_dirs)
        self.planner = planner or get_planner(self.config.planner)
        self.scorer = scorer or EvidenceScorer()
        self._own_executor = executor is None
        self.executor = executor or WorkerPoolExecutor(max_workers=self.config.max_workers)
        self._graph = build_graph()

    def run(
        self,
        prompt: str,
        *,
        budget: Budget | None = None,
        files: Sequence[str | Path] = (),
        base_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> RunResult:
        """Run one request to its answer.

        ``files`` are attached inputs; file names in ``prompt`` are read relative to
        ``base_dir`` (default: the current folder). Outputs go to ``out_dir`` (default: a new
        folder under the configured runs folder). ``on_event`` receives progress events.
        """
        run_id = uuid.uuid4().hex[:12]
        run_dir = Path(out_dir) if out_dir else self.config.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(budget or self.config.budget.to_budget())
        context = RunContext(
            zoo=self.zoo,
            planner=self.planner,
            scorer=self.scorer,
            executor=self.executor,
            ledger=ledger,
            run_dir=run_dir.resolve(),
            base_dir=Path(base_dir or Path.cwd()).resolve(),
            emit=on_event or (lambda event: None),
        )
        state = self._graph.invoke(
            {"request": prompt, "files": [str(Path(f).resolve()) for f in files]},
            context=context,
            config={"recursion_limit": 500},
        )
        return _result(run_id, prompt, state, ledger, run_dir)

    def close(self) -> None:
        """Stop the worker processes this orchestrator started."""
        if self._own_executor:
            self.executor.close()

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


def _dec(value: str) -> Any:
    from decimal import Decimal

    return Decimal(value)
