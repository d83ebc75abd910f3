"""The pipeline as a LangGraph ``StateGraph``: plan -> select -> (route <-> execute)* -> answer.

``route`` decides, after every round of execution, what happens to each subtask (accept its
result, retry it on the next candidate, give up on it, skip it) and which attempts to launch
next; the conditional edge fans those attempts out with ``Send`` so independent subtasks run
in parallel. Live objects (zoo, executor, ledger) travel in the run context, not the state.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from orchestrator.answer import StepResult, compose_answer
from orchestrator.backends import CallContext
from orchestrator.budget import Ledger, Reservation, actual_cost, expected_cost
from orchestrator.cards import ToolCard
from orchestrator.errors import BudgetExceeded, ToolFailed, UserError
from orchestrator.execute import Executor
from orchestrator.plan import ComposeArg, FileArg, Plan, RefArg, Subtask, TextArg, validate_plan
from orchestrator.select import Scorer, Selection, select_for_plan
from orchestrator.zoo import Zoo
from planners import Planner

__all__ = ["RunContext", "RunState", "build_graph"]

Event = dict[str, Any]


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {**left, **right}


class RunState(TypedDict, total=False):
    """The graph state of one run (JSON-serializable, so it can be checkpointed)."""

    request: str
    files: list[str]
    plan: dict[str, Any] | None
    selections: dict[str, dict[str, Any]]
    attempts: Annotated[list[dict[str, Any]], operator.add]
    results: Annotated[dict[str, dict[str, Any]], _merge]
    decisions: Annotated[list[dict[str, Any]], operator.add]
    status: dict[str, str]
    pending: list[dict[str, Any]]
    outcome: str
    message: str
    answer: str
    artifacts: list[str]


@dataclass
class RunContext:
    """Live objects one run uses."""

    zoo: Zoo
    planner: Planner
    scorer: Scorer
    executor: Executor
    ledger: Ledger
    run_dir: Path
    base_dir: Path
    emit: Callable[[Event], None] = lambda event: None
    cards: dict[str, ToolCard] = field(default_factory=dict)

    def card(self, name: str) -> ToolCard:
        return self.zoo.get(name).card


# ----------------------------------------------------------------------------- nodes


def plan_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Plan the request and validate the plan."""
    ctx = runtime.context
    try:
        plan = ctx.planner.plan(
            state["request"], ctx.zoo, files=[Path(f) for f in state.get("files", [])]
        )
        validate_plan(plan, ctx.zoo, base_dir=ctx.base_dir)
    except UserError as exc:
        ctx.emit({"type": "rejected", "message": str(exc)})
        return {"plan": None, "outcome": "rejected", "message": str(exc)}
    ctx.emit({"type": "plan", "plan": plan.model_dump(mode="json")})
    return {"plan": plan.model_dump(mode="json")}


def _selection_record(selection: Selection) -> dict[str, Any]:
    return {
        "candidates": [c.as_dict() for c in selection.candidates],
        "rejected": [{"card": r.card, "reason": r.reason} for r in selection.rejected],
    }


def select_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Rank the candidate cards of every subtask; a subtask with none ends the run."""
    ctx = runtime.context
    plan = Plan.model_validate(state["plan"])
    selections = select_for_plan(plan, ctx.zoo, ctx.scorer)
    missing = [
        selections[s.id].missing_reason(s) for s in plan.subtasks if not selections[s.id].candidates
    ]
    records = {step: _selection_record(sel) for step, sel in selections.items()}
    ctx.emit({"type": "select", "selections": records})
    update: dict[str, Any] = {
        "selections": records,
        "status": {s.id: "waiting" for s in plan.subtasks},
    }
    if missing:
        update["outcome"] = "unservable"
        update["message"] = "; ".join(missing)
    return update


def _next_fitting(ctx: RunContext, candidates: list[dict[str, Any]], after: int) -> int | None:
    """The next candidate index after ``after`` whose expected cost fits the budget left."""
    for index in range(after + 1, len(candidates)):
        card = ctx.card(candidates[index]["card"])
        estimate = expected_cost(card, input_tokens=0, max_output_tokens=0, cold=False)
        try:
            ctx.ledger.release(ctx.ledger.reserve(estimate))
        except BudgetExceeded:
            continue
        return index
    return None


def _decide_attempted(
    ctx: RunState, runtime_ctx: RunContext, step: str, last: dict[str, Any]
) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """For a step whose last attempt finished: new status, next attempt (or None), decision."""
    candidates = ctx["selections"][step]["candidates"]
    if last["status"] == "ok":
        return (
            "done",
            None,
            {
                "step": step,
                "action": "accept",
                "card": last["card"],
                "reason": "the call succeeded and its outputs match the card",
            },
        )
    nxt = _next_fitting(runtime_ctx, candidates, last["candidate"])
    if nxt is not None:
        return (
            "running",
            {"step": step, "candidate": nxt},
            {
                "step": step,
                "action": "retry",
                "card": candidates[nxt]["card"],
                "reason": f"{last['card']} {last['status']}: {last['error']}; next candidate",
            },
        )
    final = "over_budget" if last["status"] == "over_budget" else "failed"
    return (
        final,
        None,
        {
            "step": step,
            "action": "give_up",
            "card": last["card"],
            "reason": f"{last['card']} {last['status']}: {last['error']}; no other candidate fits",
        },
    )


def route_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Decide each subtask's fate after a round, and which attempts to launch next."""
    ctx = runtime.context
    if state.get("outcome") in ("rejected", "unservable"):
        return {"pending": []}
    plan = Plan.model_validate(state["plan"])
    status = dict(state["status"])
    last_attempt = {a["step"]: a for a in state.get("attempts", [])}
    pending: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    for step in plan.topological_order():
        if status[step] == "running" and step in last_attempt:
            attempt = last_attempt[step]
            if attempt["seq"] == len([a for a in state["attempts"] if a["step"] == step]):
                status[step], launch, decision = _decide_attempted(state, ctx, step, attempt)
                decisions.append(decision)
                if launch:
                    pending.append(launch)
    for step in plan.topological_order():
        if status[step] != "waiting":
            continue
        deps = plan.get(step).deps
        blocked = [d for d in deps if status[d] in ("failed", "over_budget", "skipped")]
        if blocked:
            status[step] = "skipped"
            decisions.append(
                {
                    "step": step,
                    "action": "skip",
                    "card": None,
                    "reason": f"needs step {blocked[0]}, which did not finish",
                }
            )
        elif all(status[d] == "done" for d in deps):
            status[step] = "running"
            pending.append({"step": step, "candidate": 0})
    for decision in decisions:
        ctx.emit({"type": "decision", **decision})
    return {"status": status, "pending": pending, "decisions": decisions}


def fan_out(state: RunState) -> list[Send] | str:
    """Send each pending attempt to ``execute``; with none left, answer."""
    pending = state.get("pending") or []
    if not pending:
        return "answer"
    return [
        Send(
            "execute",
            {
                "attempt": a,
                "plan": state["plan"],
                "results": state.get("results", {}),
                "selections": state["selections"],
                "seq": 1 + sum(1 for x in state.get("attempts", []) if x["step"] == a["step"]),
            },
        )
        for a in pending
    ]


def _resolve_inputs(
    ctx: RunContext, subtask: Subtask, card: ToolCard, plan: Plan, results: dict[str, Any]
) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for io in card.inputs:
        arg = subtask.args.get(io.type)
        if arg is None and io.type != "text":
            if io.optional:
                continue
            raise ToolFailed(card.name, f"step {subtask.id} has no {io.type} input for '{io.name}'")
        if arg is None:
            arg = next(
                (a for a in subtask.args.values() if isinstance(a, RefArg | ComposeArg)), None
            )
            if arg is None:
                if io.optional:
                    continue
                raise ToolFailed(card.name, f"step {subtask.id} has no text input for '{io.name}'")
        inputs[io.name] = _resolve_arg(ctx, arg, io.type, plan, results)
    return inputs


def _step_result(ctx: RunContext, plan: Plan, results: dict[str, Any], step: str) -> StepResult:
    record = results[step]
    return StepResult(step, plan.get(step).instruction, ctx.card(record["card"]), record["outputs"])


def _resolve_arg(
    ctx: RunContext, arg: Any, io_type: str, plan: Plan, results: dict[str, Any]
) -> Any:
    if isinstance(arg, TextArg):
        return arg.value
    if isinstance(arg, FileArg):
        path = Path(arg.path)
        return str(path if path.is_absolute() else (ctx.base_dir / path).resolve())
    if isinstance(arg, ComposeArg):
        return compose_answer([_step_result(ctx, plan, results, s) for s in arg.steps], spoken=True)
    producer = _step_result(ctx, plan, results, arg.step)
    outputs = producer.card.outputs
    named = [o for o in outputs if o.name == arg.output] if arg.output else []
    typed = [o for o in outputs if o.type == io_type]
    chosen = (named or typed or outputs)[0]
    value = producer.outputs[chosen.name]
    if io_type == "text" and chosen.type != "text":
        from orchestrator.answer import render_value

        return render_value(chosen.type, value)
    return value


def _call_timeout(ctx: RunContext, card: ToolCard, reservation: Reservation) -> float | None:
    limits = [ctx.ledger.headroom_seconds()]
    usd_left = ctx.ledger.headroom_usd()
    if usd_left is not None and card.cost.usd_per_second > 0:
        limits.append(float((usd_left + reservation.cost.usd) / card.cost.usd_per_second))
    known = [x for x in limits if x is not None]
    return max(0.5, min(known)) if known else None


def execute_node(payload: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Make one attempt at one subtask with one candidate card, paid from the budget."""
    ctx = runtime.context
    attempt, plan = payload["attempt"], Plan.model_validate(payload["plan"])
    step, index = attempt["step"], attempt["candidate"]
    subtask = plan.get(step)
    card = ctx.card(payload["selections"][step]["candidates"][index]["card"])
    record: dict[str, Any] = {
        "step": step,
        "candidate": index,
        "card": card.name,
        "seq": payload["seq"],
        "seconds": 0.0,
        "load_seconds": 0.0,
        "usd": "0",
        "tokens": 0,
        "error": None,
    }
    ctx.emit({"type": "step_started", "step": step, "card": card.name, "task": subtask.task})
    started = time.monotonic()
    try:
        inputs = _resolve_inputs(ctx, subtask, card, plan, payload["results"])
        prompt_tokens = sum(len(str(v).split()) for v in inputs.values()) * 2
        cold = not ctx.executor.is_warm(card)
        reservation = ctx.ledger.reserve(
            expected_cost(card, input_tokens=prompt_tokens, max_output_tokens=256, cold=cold)
        )
    except BudgetExceeded as exc:
        record.update(status="over_budget", error=str(exc))
        ctx.emit({"type": "step_finished", **record})
        return {"attempts": [record]}
    except ToolFailed as exc:
        record.update(status="failed", error=exc.reason)
        ctx.emit({"type": "step_finished", **record})
        return {"attempts": [record]}
    call = CallContext(
        scratch=ctx.run_dir, max_tokens=256, timeout_s=_call_timeout(ctx, card, reservation)
    )
    try:
        outcome = ctx.executor.call(card, inputs, call)
    except ToolFailed as exc:
        seconds = time.monotonic() - started
        ctx.ledger.settle(
            reservation, actual_cost(card, seconds=seconds, input_tokens=0, output_tokens=0)
        )
        record.update(status="failed", error=exc.reason, seconds=round(seconds, 3))
        ctx.emit({"type": "step_finished", **record})
        return {"attempts": [record]}
    spent = actual_cost(
        card,
        seconds=outcome.seconds + outcome.load_seconds,
        input_tokens=outcome.usage.input_tokens,
        output_tokens=outcome.usage.output_tokens,
    )
    ctx.ledger.settle(reservation, spent)
    record.update(
        status="ok",
        seconds=round(outcome.seconds, 3),
        load_seconds=round(outcome.load_seconds, 3),
        usd=str(spent.usd),
        tokens=spent.tokens,
    )
    ctx.emit({"type": "step_finished", **record, "outputs": outcome.outputs})
    return {
        "attempts": [record],
        "results": {step: {"card": card.name, "outputs": outcome.outputs}},
    }


def answer_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Aggregate the accepted results into the answer; say what did not finish and why."""
    ctx = runtime.context
    if state.get("outcome") in ("rejected", "unservable"):
        message = state.get("message", "")
        ctx.emit({"type": "answer", "answer": message, "outcome": state["outcome"]})
        return {"answer": message, "artifacts": []}
    plan = Plan.model_validate(state["plan"])
    results = state.get("results", {})
    done = [s.id for s in plan.subtasks if s.id in results]
    answer = compose_answer(_step_result(ctx, plan, results, s) for s in done)
    artifacts = [
        str(results[s]["outputs"][io.name])
        for s in done
        for io in ctx.card(results[s]["card"]).outputs
        if io.type in ("audio", "image") and io.name in results[s]["outputs"]
    ]
    status = state["status"]
    problems = _problems(plan, status, state.get("decisions", []))
    outcome = "ok"
    if any(v == "over_budget" for v in status.values()):
        outcome = "budget_exhausted"
    elif problems:
        outcome = "partial" if done else "failed"
    message = " ".join(problems)
    if outcome == "budget_exhausted":
        message = (
            "The budget ran out before every step could run; this answer uses what finished. "
            + message
        )
    full = (answer + ("\n" + message if message else "")).strip()
    ctx.emit({"type": "answer", "answer": full, "outcome": outcome, "artifacts": artifacts})
    return {"answer": full, "artifacts": artifacts, "outcome": outcome, "message": message}


def _problems(plan: Plan, status: dict[str, str], decisions: list[dict[str, Any]]) -> list[str]:
    last_reason = {d["step"]: d["reason"] for d in decisions if d["action"] in ("give_up", "skip")}
    problems = []
    for subtask in plan.subtasks:
        if status[subtask.id] != "done":
            reason = last_reason.get(subtask.id, status[subtask.id])
            problems.append(
                f"Step {subtask.id} ('{subtask.instruction}') did not finish: {reason}."
            )
    return problems


def _after_plan(state: RunState) -> str:
    return "answer" if state.get("outcome") == "rejected" else "select"


def build_graph() -> Any:
    """Compile the pipeline graph."""
    graph = StateGraph(RunState, context_schema=RunContext)
    graph.add_node("plan", plan_node)
    graph.add_node("select", select_node)
    graph.add_node("route", route_node)
    graph.add_node("execute", execute_node)
    graph.add_node("answer", answer_node)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _after_plan, ["select", "answer"])
    graph.add_edge("select", "route")
    graph.add_conditional_edges("route", fan_out, ["execute", "answer"])
    graph.add_edge("execute", "route")
    graph.add_edge("answer", END)
    return graph.compile()
