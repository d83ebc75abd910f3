"""The pipeline as a LangGraph ``StateGraph``: plan -> select -> (route <-> execute)* -> answer.

``route`` asks the router policy (:mod:`orchestrator.routing.policy`), after every round of
execution, what happens to each subtask (start, accept an answer, retry the next candidate,
escalate, ask a second model, re-plan, finish, give up; a subtask whose inputs failed is skipped)
and which attempts to launch next; the conditional edge fans those attempts out with ``Send`` so
independent subtasks run in parallel. Every call is paid from the ledger: reserved before
(with a capped hold), settled after. Live objects (zoo, executor, ledger, policy) travel in the
run context; the state stays JSON (with what was spent) so a checkpointer can store it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from orchestrator.budget import Ledger
from orchestrator.cards import ToolCard
from orchestrator.cards.pricing import expected_cost
from orchestrator.cards.zoo import Zoo
from orchestrator.errors import BudgetExceeded, MalformedDecision, NoCapableTool, UserError
from orchestrator.events import Answered, Decided, Event, PlanMade, Rejected, Selected
from orchestrator.execution.pool import Executor
from orchestrator.metered_llm import Meter, metered
from orchestrator.pipeline.answer import compose_answer
from orchestrator.pipeline.checks import ECHO_CHARS, short
from orchestrator.pipeline.step import _attempts_of, _step_result, discard_unused, execute_node
from orchestrator.plan import Plan
from orchestrator.planning import Planner, checked_plan
from orchestrator.planning.validate import validate_plan
from orchestrator.routing.policy import (
    Answer,
    Decision,
    DefaultPolicy,
    Option,
    RouterPolicy,
    StepView,
    answer_key,
    checked_decision,
)
from orchestrator.selection.rank import Scorer, Selection, select_for_plan
from orchestrator.utility import DEFAULT_COST_WEIGHT, estimated_quality

__all__ = ["RunContext", "RunState", "build_graph"]


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
    decided: dict[str, int]  # step -> seq of its last attempt the router decided on
    finished: str  # why the router finished the run early
    spent: dict[str, Any]  # the ledger's snapshot after the last routing round
    budget: dict[str, Any]  # the run's limits (so a resumed run keeps them)
    run_dir: str
    base_dir: str
    plan_no: int  # 0 for the first plan, +1 per re-plan
    replans: int
    replanning: bool
    excluded: list[str]  # cards left out after failing (re-planning)
    kept: dict[str, Any]  # results a re-plan keeps, until select re-marks them done
    overhead: Annotated[list[dict[str, Any]], operator.add]  # the planner's and scorer's spend


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
    policy: RouterPolicy = field(default_factory=DefaultPolicy)
    streamed: set[tuple[str, int, int]] = field(default_factory=set)  # (step, plan_no, seq)

    def card(self, name: str) -> ToolCard:
        """The loaded card ``name`` (a run needing a card not loaded is the user's mistake)."""
        try:
            return self.zoo.get(name).card
        except KeyError:
            raise UserError(
                f"this run needs the card {name}, which is not loaded; pass the folder of its "
                "card with --cards DIR (or add it to card_dirs in the config)"
            ) from None


# ----------------------------------------------------------------------------- nodes


def plan_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Plan the request and validate the plan."""
    ctx = runtime.context
    files = [Path(f) for f in state.get("files", [])]
    with metered(ctx.ledger) as meter:
        try:
            plan = ctx.planner.plan(state["request"], ctx.zoo, files=files)
            plan = checked_plan(
                plan, ctx.zoo, files, lambda: _embedded(state["request"], ctx, files)
            )
            validate_plan(plan, ctx.zoo, base_dir=ctx.base_dir)
        except UserError as exc:
            message = _clip_quotes(str(exc))
            # A request no available card can serve is not a malformed one: it is unservable.
            outcome = "unservable" if isinstance(exc, NoCapableTool) else "rejected"
            ctx.emit(Rejected(message=message, outcome=outcome))
            return {"plan": None, "outcome": outcome, "message": message, **_paid(meter)}
    dumped = plan.model_dump(mode="json")
    ctx.emit(PlanMade(plan=dumped))
    if not state.get("replanning"):
        return {"plan": dumped, **_paid(meter)}
    return {"plan": dumped, **_replanned(state, plan), **_paid(meter)}


def _paid(meter: Meter) -> dict[str, Any]:
    """The state update that keeps what a stage's own LLM calls cost (none: no update)."""
    return {"overhead": [meter.spent.as_dict()]} if meter.spent.calls else {}


def _embedded(request: str, ctx: RunContext, files: list[Path]) -> Plan:
    """The embedded planner's plan: what replaces a plan that fails the shared check."""
    from orchestrator.planning.embedded import EmbeddedPlanner

    return EmbeddedPlanner().plan(request, ctx.zoo, files=files)


_QUOTED = re.compile("'([^']{" + str(ECHO_CHARS + 1) + ",})'")


def _clip_quotes(message: str) -> str:
    """``message`` with each long quoted part cut (a message never echoes a long prompt)."""
    return _QUOTED.sub(lambda m: repr(short(m.group(1))), message)


def _replanned(state: RunState, plan: Plan) -> dict[str, Any]:
    """A re-plan keeps the results of the subtasks it left unchanged, and starts the others."""
    old = Plan.model_validate(state["plan"]) if state.get("plan") else None
    kept = {}
    for subtask in plan.subtasks:
        same = old is not None and any(s == subtask for s in old.subtasks)
        if same and subtask.id in state.get("results", {}):
            kept[subtask.id] = state["results"][subtask.id]
    return {
        "plan_no": state.get("plan_no", 0) + 1,
        "replans": state.get("replans", 0) + 1,
        "replanning": False,
        "kept": kept,
        "decided": {},
        "finished": "",
    }


def _selection_record(selection: Selection) -> dict[str, Any]:
    return {
        "candidates": [
            {
                **c.as_dict(),
                "quality": round(c.parts.quality, 4),
                "relevance": round(c.parts.relevance, 4),
                "measured": c.parts.measured,
            }
            for c in selection.candidates
        ],
        "rejected": [{"card": r.card, "reason": r.reason} for r in selection.rejected],
    }


def select_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Rank the candidate cards of every subtask; a subtask with none ends the run."""
    ctx = runtime.context
    plan = Plan.model_validate(state["plan"])
    weight = getattr(ctx.policy, "cost_weight", DEFAULT_COST_WEIGHT)
    with metered(ctx.ledger) as meter:
        selections = select_for_plan(plan, ctx.zoo, ctx.scorer, float(weight))
    excluded = set(state.get("excluded", []))
    for selection in selections.values():
        selection.candidates = [c for c in selection.candidates if c.card.name not in excluded]
    missing = [
        selections[s.id].missing_reason(s) for s in plan.subtasks if not selections[s.id].candidates
    ]
    records = {step: _selection_record(sel) for step, sel in selections.items()}
    ctx.emit(Selected(selections=records))
    kept = state.get("kept") or {}
    update: dict[str, Any] = {
        "selections": records,
        "status": {s.id: "done" if s.id in kept else "waiting" for s in plan.subtasks},
        "kept": {},
        **_paid(meter),
    }
    if missing:
        update["outcome"] = "unservable"
        update["message"] = "; ".join(missing)
    return update


def _option(ctx: RunContext, index: int, record: dict[str, Any]) -> Option:
    card = ctx.card(record["card"])
    estimate = expected_cost(
        card, input_tokens=0, max_output_tokens=0, cold=not ctx.executor.is_warm(card)
    )
    try:
        ctx.ledger.release(ctx.ledger.reserve(estimate))
        fits = True
    except BudgetExceeded:
        fits = False
    return Option(
        index=index,
        card=card.name,
        quality=float(record.get("quality", estimated_quality(None, card.strength))),
        relevance=float(record.get("relevance", 0.0)),
        usd=estimate.usd,
        fits=fits,
        measured=bool(record.get("measured", False)),
    )


def _answer_text(card: ToolCard, outputs: dict[str, Any]) -> str:
    from orchestrator.pipeline.answer import render_value

    primary = card.primary_output()
    return render_value(primary.type, outputs[primary.name]) if primary.name in outputs else ""


def _view(state: RunState, ctx: RunContext, plan: Plan, step: str) -> StepView:
    subtask = plan.get(step)
    candidates = state["selections"][step]["candidates"]
    answers = []
    for attempt in _attempts_of(state, step):
        text = ""
        key = None
        if attempt["status"] == "ok":
            text = _answer_text(ctx.card(attempt["card"]), attempt.get("outputs") or {})
            key = answer_key(text)
        answers.append(
            Answer(
                seq=attempt["seq"],
                candidate=attempt["candidate"],
                card=attempt["card"],
                status=attempt["status"],
                text=text,
                key=key,
                error=attempt.get("error"),
            )
        )
    return StepView(
        step=step,
        task=subtask.task,
        instruction=subtask.instruction,
        options=tuple(_option(ctx, i, c) for i, c in enumerate(candidates)),
        answers=tuple(answers),
        budget_left=ctx.ledger.left(),
        replans=state.get("replans", 0),
        ledger=ctx.ledger,  # a policy's own calls (the LLM router's) are paid from it
    )


def _policy_decision(ctx: RunContext, view: StepView, *, started: bool) -> Decision:
    """The policy's decision, validated; a malformed one falls back to the default policy."""
    policy = ctx.policy
    try:
        decision = policy.decide(view) if started else policy.start(view)
        return checked_decision(decision, view, started=started)
    except MalformedDecision as exc:
        fallback = DefaultPolicy()
        decision = fallback.decide(view) if started else fallback.start(view)
        return replace(
            decision,
            reason=f"policy {policy.name} gave a malformed decision ({exc}); default policy: "
            + decision.reason,
            policy=f"{policy.name}->default",
        )


def _record(step: str, decision: Decision, view: StepView) -> dict[str, Any]:
    card = None
    if decision.candidate is not None:
        card = view.options[decision.candidate].card
    elif decision.use is not None:
        card = next(a.card for a in view.answers if a.seq == decision.use)
    elif view.answers:
        card = view.answers[-1].card
    return {
        "step": step,
        "action": decision.action,
        "card": card,
        "reason": decision.reason,
        "policy": decision.policy,
    }


@dataclass
class _Round:
    """What one routing round decides (built up by the helpers of :func:`route_node`)."""

    status: dict[str, str]
    decided: dict[str, int]
    finished: str = ""
    replan: bool = False
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


def _decide_answered(state: RunState, ctx: RunContext, plan: Plan, rnd: _Round) -> None:
    """Ask the policy about every running subtask whose latest attempt is new."""
    for step in plan.topological_order():
        attempts = _attempts_of(state, step)
        if rnd.status[step] != "running" or not attempts:
            continue
        if rnd.decided.get(step) == attempts[-1]["seq"]:
            continue
        rnd.decided[step] = attempts[-1]["seq"]
        view = _view(state, ctx, plan, step)
        decision = _policy_decision(ctx, view, started=True)
        rnd.decisions.append(_record(step, decision, view))
        discard_unused(ctx, step, attempts[-1], decision)
        if decision.action == "accept":
            chosen = next(a for a in attempts if a["seq"] == decision.use)
            rnd.status[step] = "done"
            rnd.results[step] = {"card": chosen["card"], "outputs": chosen["outputs"]}
        elif decision.action in ("retry", "escalate", "ask_second"):
            rnd.pending.append({"step": step, "candidate": decision.candidate})
        elif decision.action == "replan" and not rnd.finished:
            rnd.replan = True
            rnd.status[step] = "failed"
        else:  # give_up, finish (and a replan once the run is finishing)
            last = attempts[-1]["status"]
            rnd.status[step] = "over_budget" if last == "over_budget" else "failed"
            if decision.action == "finish":
                rnd.finished = decision.reason


def _start_ready(state: RunState, ctx: RunContext, plan: Plan, rnd: _Round) -> None:
    """Start every waiting subtask whose inputs are ready; skip those that cannot run."""
    done = {**state.get("results", {}), **rnd.results}
    for step in plan.topological_order():
        if rnd.status[step] != "waiting":
            continue
        deps = plan.get(step).deps
        blocked = [d for d in deps if rnd.status[d] in ("failed", "over_budget", "skipped")]
        if rnd.finished or blocked:
            rnd.status[step] = "skipped"
            reason = (
                f"the run finished early: {rnd.finished}"
                if rnd.finished
                else f"needs step {blocked[0]}, which did not finish"
            )
            rnd.decisions.append(
                {"step": step, "action": "skip", "card": None, "reason": reason, "policy": ""}
            )
        elif all(rnd.status[d] == "done" and d in done for d in deps):
            view = _view(state, ctx, plan, step)
            decision = _policy_decision(ctx, view, started=False)
            rnd.decisions.append(_record(step, decision, view))
            if decision.action == "start":
                rnd.status[step] = "running"
                rnd.pending.append({"step": step, "candidate": decision.candidate})
            else:
                rnd.status[step] = "skipped"
                if decision.action == "finish":
                    rnd.finished = decision.reason


def route_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask the router policy about each subtask after a round; launch the next attempts."""
    ctx = runtime.context
    if state.get("outcome") in ("rejected", "unservable"):
        return {"pending": []}
    plan = Plan.model_validate(state["plan"])
    rnd = _Round(
        status=dict(state["status"]),
        decided=dict(state.get("decided", {})),
        finished=state.get("finished") or "",
    )
    _decide_answered(state, ctx, plan, rnd)
    if not rnd.replan:
        _start_ready(state, ctx, plan, rnd)
    for decision in rnd.decisions:
        ctx.emit(Decided(**decision))
    update: dict[str, Any] = {
        "status": rnd.status,
        "pending": [] if rnd.replan else rnd.pending,
        "decisions": rnd.decisions,
        "decided": rnd.decided,
        "spent": ctx.ledger.snapshot(),
        "replanning": rnd.replan,
        "finished": rnd.finished,
    }
    if rnd.results:
        update["results"] = rnd.results
    if rnd.replan:
        failed = {a["card"] for a in state.get("attempts", []) if a["status"] == "failed"}
        update["excluded"] = sorted(set(state.get("excluded", [])) | failed)
    return update


def fan_out(state: RunState) -> list[Send] | str:
    """Send each pending attempt to ``execute``; with none left, answer."""
    if state.get("replanning"):
        return "plan"
    pending = state.get("pending") or []
    if not pending:
        return "answer"
    return [
        Send(
            "execute",
            {
                "attempt": a,
                "plan": state["plan"],
                "plan_no": state.get("plan_no", 0),
                "results": state.get("results", {}),
                "selections": state["selections"],
                "seq": 1 + len(_attempts_of(state, a["step"])),
                # the steps starting together share what is left (see Ledger.reserve)
                "round": {"id": len(state.get("attempts", [])), "size": len(pending)},
            },
        )
        for a in pending
    ]


def answer_node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Aggregate the accepted results into the answer; say what did not finish and why."""
    ctx = runtime.context
    if state.get("outcome") in ("rejected", "unservable"):
        message = state.get("message", "")
        ctx.emit(Answered(answer=message, outcome=state["outcome"]))
        return {"answer": message, "artifacts": []}
    plan = Plan.model_validate(state["plan"])
    results = state.get("results", {})
    status = state["status"]
    done = [s.id for s in plan.subtasks if s.id in results and status.get(s.id) == "done"]
    answer = compose_answer((_step_result(ctx, plan, results, s) for s in done), plan=plan)
    artifacts = [
        str(results[s]["outputs"][io.name])
        for s in done
        for io in ctx.card(results[s]["card"]).outputs
        if io.type in ("audio", "image") and io.name in results[s]["outputs"]
    ]
    status = state["status"]
    problems = _problems(plan, status, state.get("decisions", []), state.get("attempts", []))
    problems += _stand_ins(plan, status, results, state.get("attempts", []))
    outcome = "ok" if not any(status.get(s.id) != "done" for s in plan.subtasks) else "partial"
    if any(v == "over_budget" for v in status.values()):
        outcome = "budget_exhausted"
    elif outcome != "ok":
        outcome = "partial" if done else "failed"
    elif plan.unserved:
        outcome = "partial"  # the plan does what the zoo can; the rest is said below
    message = " ".join([*problems, *(f"Not done: {u}" for u in plan.unserved)])
    if outcome == "budget_exhausted":
        message = (
            "The budget ran out before every step could run; this answer uses what finished. "
            + message
        )
    full = (answer + ("\n" + message if message else "")).strip()
    ctx.emit(Answered(answer=full, outcome=outcome, artifacts=artifacts))
    return {
        "answer": full,
        "artifacts": artifacts,
        "outcome": outcome,
        "message": message,
        "spent": ctx.ledger.snapshot(),
    }


def _problems(
    plan: Plan,
    status: dict[str, str],
    decisions: list[dict[str, Any]],
    attempts: Sequence[dict[str, Any]] = (),
) -> list[str]:
    last_reason = {d["step"]: d["reason"] for d in decisions if d["action"] in ("give_up", "skip")}
    # A step the budget stopped says which limit and what to raise (its last refusal).
    last_reason.update(
        {a["step"]: a["error"] for a in attempts if a["status"] == "over_budget" and a.get("error")}
    )
    problems = []
    for subtask in plan.subtasks:
        if status[subtask.id] != "done":
            reason = last_reason.get(subtask.id, status[subtask.id])
            problems.append(
                f"Step {subtask.id} ('{short(subtask.instruction)}') did not finish: {reason}."
            )
    return problems


_COULD_NOT_RUN = ("failed to load", "not started", "the sandbox could not be applied")


def _stand_ins(
    plan: Plan,
    status: dict[str, str],
    results: dict[str, Any],
    attempts: Sequence[dict[str, Any]],
) -> list[str]:
    """Finished steps another card answered because the chosen one could not start or load."""
    notes: dict[tuple[str, str], str] = {}
    for subtask in plan.subtasks:
        if status.get(subtask.id) != "done" or subtask.id not in results:
            continue
        answered = results[subtask.id]["card"]
        for a in attempts:
            error = str(a.get("error") or "")
            if (
                a["step"] == subtask.id
                and a["status"] == "failed"
                and a["card"] != answered
                and error.startswith(_COULD_NOT_RUN)
            ):
                notes[(subtask.id, a["card"])] = (
                    f"Step {subtask.id}: {a['card']} could not run ({short(error)}); "
                    f"{answered} answered instead."
                )
    return list(notes.values())


def _after_plan(state: RunState) -> str:
    return "answer" if state.get("outcome") in ("rejected", "unservable") else "select"


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the pipeline graph; with a ``checkpointer`` every step of a run is stored."""
    graph = StateGraph(RunState, context_schema=RunContext)
    graph.add_node("plan", plan_node)
    graph.add_node("select", select_node)
    graph.add_node("route", route_node)
    graph.add_node("execute", execute_node)
    graph.add_node("answer", answer_node)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _after_plan, ["select", "answer"])
    graph.add_edge("select", "route")
    graph.add_conditional_edges("route", fan_out, ["execute", "answer", "plan"])
    graph.add_edge("execute", "route")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)
