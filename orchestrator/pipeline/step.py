"""The execute node: one attempt at one subtask with one candidate card, paid from the budget.

Resolving the subtask's arguments into the card's inputs, reserving the expected cost (with a
hold of at least its fair share of what its round of parallel steps started with), capping the
whole call (loading included, and max_tokens) by that hold, calling the executor, and settling
the real cost.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from orchestrator.budget import (
    Reservation,
    raise_hint,
    usd_text,
)
from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext
from orchestrator.cards.pricing import actual_cost, counts_tokens, expected_cost
from orchestrator.errors import BudgetExceeded, ToolFailed
from orchestrator.events import StepFinished, StepStarted, TokenDelta, TokensDiscarded
from orchestrator.execution.pool import KILL_MARGIN_S, CallLimit
from orchestrator.execution.tracebacks import card_traceback
from orchestrator.pipeline.answer import StepResult, compose_answer, render_output
from orchestrator.plan import ComposeArg, FileArg, Plan, RefArg, Subtask, TextArg

if TYPE_CHECKING:
    from orchestrator.pipeline.graph import RunContext, RunState


def _attempts_of(state: RunState, step: str) -> list[dict[str, Any]]:
    plan_no = state.get("plan_no", 0)
    return sorted(
        (
            a
            for a in state.get("attempts", [])
            if a["step"] == step and a.get("plan_no", 0) == plan_no
        ),
        key=lambda a: a["seq"],
    )


def _resolve_inputs(
    ctx: RunContext, subtask: Subtask, card: ToolCard, plan: Plan, results: dict[str, Any]
) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    filled: set[str] = set()
    for io in card.inputs:
        if io.optional and io.type in filled:
            continue  # the step's input of this type went to a required input (a prompt, not
            # also its optional system message)
        filled.add(io.type)
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
        try:
            inputs[io.name] = _resolve_arg(ctx, arg, io.type, plan, results)
        except (OSError, ValueError) as exc:  # a text file input too large or unreadable
            raise ToolFailed(card.name, f"step {subtask.id}: {exc}") from exc
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
        path = path if path.is_absolute() else (ctx.base_dir / path).resolve()
        return _file_text(path) if io_type == "text" else str(path)
    if isinstance(arg, ComposeArg):
        steps = [_step_result(ctx, plan, results, s) for s in arg.steps]
        if arg.prompt:  # the instruction, then the texts it is about, as they are
            return f"{arg.prompt}\n\nText:\n" + "\n\n".join(render_output(r) for r in steps)
        return compose_answer(steps, spoken=True)
    producer = _step_result(ctx, plan, results, arg.step)
    outputs = producer.card.outputs
    named = [o for o in outputs if o.name == arg.output] if arg.output else []
    typed = [o for o in outputs if o.type == io_type]
    chosen = (named or typed or outputs)[0]
    value = producer.outputs[chosen.name]
    if io_type == "text" and chosen.type != "text":
        from orchestrator.pipeline.answer import render_value

        return render_value(chosen.type, value)
    return value


MAX_TEXT_FILE_BYTES = 1_000_000


def text_file_problem(path: Path) -> str | None:
    """Why a text file cannot be a text input (too large), or None."""
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        return (
            f"{path.name} has {size:,} bytes; a text file may have at most "
            f"{MAX_TEXT_FILE_BYTES:,}: split it and ask about each part"
        )
    return None


def _file_text(path: Path) -> str:
    """The text of a text file given as a text input (UTF-8; a larger file is refused)."""
    problem = text_file_problem(path)
    if problem is not None:
        raise ValueError(problem)
    return path.read_text(encoding="utf-8", errors="replace")


HEADROOM = 4.0  # a call may take at least 4x its expected cost, within what is left
DEFAULT_MAX_TOKENS = 256
AFTER_CALL_S = 0.05  # of a call's hold, kept for settling it, routing and answering after it


def _call_caps(
    card: ToolCard, reservation: Reservation, input_tokens: int
) -> tuple[float | None, int]:
    """Seconds of compute and output tokens that keep a call within its hold of the budget.

    The money held beyond the fixed part (per call, input tokens) is split between output
    tokens and compute time when a card charges both, so together they cannot overrun.
    """
    hold = reservation.cap
    remaining = hold.usd - card.cost.usd_per_call - _in_token_usd(card, input_tokens)
    per_token = card.cost.usd_per_1k_output_tokens / 1000
    max_tokens = DEFAULT_MAX_TOKENS
    token_money = Decimal(0)
    if per_token > 0:
        token_money = max(Decimal(0), min(remaining / 2, per_token * DEFAULT_MAX_TOKENS))
        if card.cost.usd_per_second <= 0:
            token_money = max(Decimal(0), remaining)
        max_tokens = min(max_tokens, int(token_money / per_token))
    if hold.tokens:
        max_tokens = min(max_tokens, hold.tokens - input_tokens)
    money_s = None
    if card.cost.usd_per_second > 0:
        money_s = float((remaining - token_money) / card.cost.usd_per_second)
    return money_s, max(0, max_tokens)


def _in_token_usd(card: ToolCard, tokens: int) -> Decimal:
    return card.cost.usd_per_1k_input_tokens * tokens / 1000


def _call_limit(
    ctx: RunContext, reservation: Reservation, money_s: float | None
) -> tuple[CallLimit, str] | None:
    """The cap on the whole call, loading included, and the limit that sets it.

    Its hold of the seconds limit, and the seconds its hold of the money limit buys, less
    :data:`AFTER_CALL_S`.
    """
    limits = []
    if ctx.ledger.budget.seconds is not None:
        limits.append((reservation.cap.seconds, "seconds"))
    if money_s is not None and ctx.ledger.budget.usd is not None:
        limits.append((money_s, "usd"))
    if not limits:
        return None
    seconds, name = min(limits)
    return CallLimit(seconds - AFTER_CALL_S, raise_hint(name)), name


def _too_small(
    card: ToolCard, capped: tuple[CallLimit, str] | None, max_tokens: int, counted: bool
) -> str | None:
    """Why the call cannot be capped safely within its hold, or None when it can."""
    if capped is not None and capped[0].seconds <= KILL_MARGIN_S:
        limit, name = capped
        return (
            f"budget limit '{name}' reached: a call needs more than {KILL_MARGIN_S:g} s "
            f"(to be stopped in time), the budget leaves {max(limit.seconds, 0.0):.3f} s "
            f"for this one; {limit.hint}"
        )
    if max_tokens <= 0 and counted:
        return (
            f"budget limit 'usd' reached: the money left buys no output token of {card.name}; "
            f"{raise_hint('usd')}"
        )
    return None


def _billed(outputs: dict[str, Any]) -> Decimal | None:
    value = outputs.get("billed_usd")
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            billed = Decimal(str(value))
        except ArithmeticError:
            return None
        return billed if billed.is_finite() and billed >= 0 else None
    return None


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
        "plan_no": payload.get("plan_no", 0),
        "seconds": 0.0,
        "load_seconds": 0.0,
        "usd": "0",
        "tokens": 0,
        "calls": 0,
        "error": None,
    }

    def finish(status: str, **fields: Any) -> dict[str, Any]:
        record.update(status=status, **fields)
        ctx.emit(StepFinished(**record))
        return {"attempts": [record]}

    try:
        inputs = _resolve_inputs(ctx, subtask, card, plan, payload["results"])
        prompt_tokens = sum(len(str(v).split()) for v in inputs.values()) * 2
        cold = not ctx.executor.is_warm(card)
        together = payload.get("round") or {}  # the steps starting in this round
        reservation = ctx.ledger.reserve(
            expected_cost(
                card,
                input_tokens=prompt_tokens,
                max_output_tokens=DEFAULT_MAX_TOKENS,
                cold=cold,
            ),
            headroom=HEADROOM,
            round_key=together.get("id"),
            peers=int(together.get("size", 1)),
        )
    except BudgetExceeded as exc:
        return finish("over_budget", error=f"{exc}; {raise_hint(exc.limit)}")
    except ToolFailed as exc:
        return finish("failed", error=exc.reason)
    money_s, max_tokens = _call_caps(card, reservation, prompt_tokens)
    capped = _call_limit(ctx, reservation, money_s)
    counted = counts_tokens(card) and (
        ctx.ledger.budget.tokens is not None or card.cost.usd_per_1k_output_tokens > 0
    )
    refusal = _too_small(card, capped, max_tokens, counted)
    if refusal is not None:
        ctx.ledger.release(reservation)
        return finish("over_budget", error=refusal)
    # Started only now: a step refused before its call never shows as running.
    ctx.emit(StepStarted(step=step, card=card.name, task=subtask.task))
    # No timeout of its own: the executor's default for the card, cut by the budget's cap.
    streamed = (step, record["plan_no"], record["seq"])

    def on_text(piece: str) -> None:  # a text-generation card streams its text (TokenDelta)
        ctx.streamed.add(streamed)
        ctx.emit(TokenDelta(step=step, card=card.name, seq=record["seq"], text=piece))

    call = CallContext(scratch=ctx.run_dir, max_tokens=max_tokens, on_text=on_text)
    started = ctx.ledger.clock()
    try:
        outcome = ctx.executor.call(card, inputs, call, limit=None if capped is None else capped[0])
    except ToolFailed as exc:
        if streamed in ctx.streamed:
            reason = f"the attempt failed: {exc.reason}"
            ctx.emit(TokensDiscarded(step=step, seq=record["seq"], reason=reason))
        seconds = ctx.ledger.clock() - started
        spent = actual_cost(card, seconds=seconds, input_tokens=0, output_tokens=0)
        ctx.ledger.settle(reservation, spent)
        trace = card_traceback(card, exc.detail) if exc.detail else None
        return finish(
            "failed",
            error=exc.reason,
            seconds=round(seconds, 3),
            usd=usd_text(spent.usd),
            calls=1,
            **({"traceback": trace} if trace else {}),
        )
    spent = actual_cost(
        card,
        seconds=outcome.seconds + outcome.load_seconds,
        input_tokens=outcome.usage.input_tokens,
        output_tokens=outcome.usage.output_tokens,
        billed_usd=_billed(outcome.outputs),
    )
    ctx.ledger.settle(reservation, spent)
    return finish(
        "ok",
        seconds=round(outcome.seconds, 3),
        load_seconds=round(outcome.load_seconds, 3),
        usd=usd_text(spent.usd),
        tokens=spent.tokens,
        calls=1,
        outputs=outcome.outputs,
        **_usage(outcome.usage),
    )


def discard_unused(ctx: RunContext, step: str, latest: dict[str, Any], decision: Any) -> None:
    """Say that the text an ok attempt streamed is not the step's result (not accepted as is).

    A failed attempt's text was discarded when it failed (see :func:`execute_node`).
    """
    key = (step, latest.get("plan_no", 0), latest["seq"])
    if latest["status"] != "ok" or key not in ctx.streamed:
        return
    if decision.action == "accept" and decision.use == latest["seq"]:
        return
    reason = f"the router chose to {decision.action}: {decision.reason}"
    ctx.emit(TokensDiscarded(step=step, seq=latest["seq"], reason=reason))


def _usage(usage: Any) -> dict[str, int]:
    """The prompt and answer tokens of a call, for the event and its trace (none: {})."""
    if not (usage.input_tokens or usage.output_tokens):
        return {}
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
