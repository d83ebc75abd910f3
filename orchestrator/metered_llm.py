"""The run's own LLM calls (the planner's, the LLM scorer's) paid from its budget.

While a run plans or selects, :func:`metered` makes the run's ledger reachable through
:func:`active_meter`; an LLM call made there reserves its expected cost first (a call that does
not fit is not made: :class:`~orchestrator.errors.BudgetExceeded`), runs under a hard deadline
(:func:`call_within`: a server that accepts the connection and never answers cannot hold the
run), and settles what it really cost. What the meter settled is kept in the run's state, so a
resumed run counts it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from orchestrator.budget import Cost, Ledger, Reservation
from orchestrator.errors import CallTimedOut

__all__ = [
    "Meter",
    "PaidReply",
    "active_meter",
    "call_within",
    "metered",
    "paid_completion",
]

T = TypeVar("T")
PLAN_SHARE = 1 / 3  # share of the seconds left that planning may take (the rest runs the plan)

_ACTIVE: ContextVar[Meter | None] = ContextVar("orchestrator_meter", default=None)


@dataclass
class Meter:
    """Reserves and settles one stage's LLM calls on the run's ledger, and adds them up."""

    ledger: Ledger
    share: float = PLAN_SHARE
    spent: Cost = field(default_factory=Cost)
    deadline: float | None = None  # monotonic time by which this stage's calls must end

    def __post_init__(self) -> None:
        left = self.ledger.headroom_seconds()
        if left is not None:
            self.deadline = self.now() + self.share * left

    def now(self) -> float:
        """The ledger's clock (the one its seconds limit is kept on)."""
        return self.ledger.clock()

    def seconds_left(self) -> float | None:
        """Seconds this stage's calls may still take (None: no time limit)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.now())

    def reserve(self, expected: Cost) -> Reservation:
        """Hold ``expected`` on the ledger, or raise BudgetExceeded (the call is not made)."""
        return self.ledger.reserve(expected)

    def settle(self, reservation: Reservation, actual: Cost) -> None:
        self.ledger.settle(reservation, actual)
        self.spent = self.spent + actual


@contextmanager
def metered(ledger: Ledger, share: float = PLAN_SHARE) -> Iterator[Meter]:
    """Make ``ledger`` pay for the LLM calls made inside the block."""
    meter = Meter(ledger, share)
    token = _ACTIVE.set(meter)
    try:
        yield meter
    finally:
        _ACTIVE.reset(token)


def active_meter() -> Meter | None:
    """The meter of the stage running now, or None outside a run."""
    return _ACTIVE.get()


def call_within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or CallTimedOut after ``seconds`` (the call is left to end on its own)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="orchestrator-llm-call", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    if worker.is_alive():
        raise CallTimedOut(f"no answer within {seconds:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class PaidReply:
    """A completion's text and what it was charged."""

    text: str
    tokens: int
    seconds: float


def paid_completion(
    create: Callable[[float], Any],
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    timeout_s: float,
    usd_of: Callable[[int], Decimal],
    settled: Callable[[PaidReply], None] | None = None,
) -> PaidReply:
    """One chat completion ``create(timeout)``, paid from the active meter when in a run.

    Its cost is reserved first (BudgetExceeded when it does not fit), it runs under a hard
    deadline, and what it cost is settled (the reserved tokens unless the endpoint reports its
    usage); ``settled`` hears of it even when the call fails.
    """
    meter = active_meter()
    timeout = timeout_s
    left = meter.seconds_left() if meter is not None else None
    if left is not None:
        timeout = min(timeout, left)
    # An upper bound of the prompt's tokens: at most one token per byte, plus the template's.
    tokens = sum(len(m["content"].encode("utf-8")) + 8 for m in messages) + max_tokens
    reservation = None
    if meter is not None:
        hold_s = timeout if left is not None else 0.0
        expected = Cost(usd=usd_of(tokens), seconds=hold_s, tokens=tokens, calls=1)
        reservation = meter.reserve(expected)
    clock = meter.now if meter is not None else time.monotonic
    started = clock()
    used, text = tokens, ""
    try:
        response = call_within(lambda: create(max(timeout, 0.01)), timeout + 0.25)
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", None):
            used = int(usage.total_tokens)
        text = response.choices[0].message.content or ""
        return PaidReply(text, used, clock() - started)
    finally:
        seconds = clock() - started
        if meter is not None and reservation is not None:
            meter.settle(reservation, Cost(usd=usd_of(used), seconds=seconds, tokens=used, calls=1))
            if settled is not None:
                settled(PaidReply(text, used, seconds))
