"""A hard budget: limits on money, wall seconds, tokens and calls, reserved before each call.

:class:`Budget` is the value a user passes (every limit optional). :class:`Ledger` is what a run
keeps: what was spent and what is reserved by calls in flight. A call first ``reserve``s its
expected cost (raising :class:`~orchestrator.errors.BudgetExceeded` if it cannot fit), then
``settle``s the real cost when it returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.errors import BudgetExceeded

__all__ = ["Budget", "Cost", "Ledger", "Reservation", "actual_cost", "expected_cost"]


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Optional hard limits for one run."""

    usd: Decimal | None = None
    seconds: float | None = None
    tokens: int | None = None
    calls: int | None = None

    def __post_init__(self) -> None:
        if self.usd is not None:
            object.__setattr__(self, "usd", Decimal(str(self.usd)))
        for name in ("usd", "seconds", "tokens", "calls"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"budget {name} must not be negative, got {value}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "usd": None if self.usd is None else str(self.usd),
            "seconds": self.seconds,
            "tokens": self.tokens,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class Cost:
    """An amount of each budgeted resource (seconds here are those a call takes)."""

    usd: Decimal = Decimal(0)
    seconds: float = 0.0
    tokens: int = 0
    calls: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.usd + other.usd,
            self.seconds + other.seconds,
            self.tokens + other.tokens,
            self.calls + other.calls,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "usd": str(self.usd),
            "seconds": round(self.seconds, 3),
            "tokens": self.tokens,
            "calls": self.calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        """The inverse of :meth:`as_dict` (used when a run is resumed)."""
        return cls(
            Decimal(str(data.get("usd", "0"))),
            float(data.get("seconds", 0.0)),
            int(data.get("tokens", 0)),
            int(data.get("calls", 0)),
        )


@dataclass(frozen=True)
class Reservation:
    """An amount held for one call in flight.

    ``cost`` is the expected cost; ``hold`` is what is held, at least ``cost``: the most the
    call may spend. Callers cap the call to it (timeout, max_tokens), so it cannot overrun.
    """

    id: int
    cost: Cost
    hold: Cost | None = None

    @property
    def cap(self) -> Cost:
        return self.hold if self.hold is not None else self.cost


@dataclass
class Ledger:
    """What one run has spent and holds, checked against its budget. Thread-safe."""

    budget: Budget
    spent: Cost = field(default_factory=Cost)
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    carried_seconds: float = 0.0  # wall seconds spent before a resume
    _held: dict[int, Cost] = field(default_factory=dict)
    _next_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    @classmethod
    def resumed(
        cls, budget: Budget, spent: dict[str, Any], clock: Callable[[], float] = time.monotonic
    ) -> Ledger:
        """A ledger that carries what an earlier, interrupted part of the run spent.

        ``spent`` is the ledger's :meth:`snapshot` as stored in the run state: money, tokens and
        calls are carried as they were, and its ``wall_seconds`` count against the seconds limit.
        """
        return cls(
            budget,
            spent=Cost.from_dict(spent),
            clock=clock,
            carried_seconds=float(spent.get("wall_seconds", 0.0)),
        )

    def snapshot(self) -> dict[str, Any]:
        """What was spent so far, with the wall seconds (JSON; kept in the run state)."""
        with self._lock:
            return {**self.spent.as_dict(), "wall_seconds": round(self.elapsed(), 6)}

    def elapsed(self) -> float:
        assert self.started is not None
        return self.carried_seconds + self.clock() - self.started

    def _held_total(self) -> Cost:
        total = Cost()
        for cost in self._held.values():
            total = total + cost
        return total

    def _check(self, cost: Cost) -> None:
        held = self._held_total()
        limits = self.budget
        if limits.usd is not None:
            left = limits.usd - self.spent.usd - held.usd
            if cost.usd > left:
                raise BudgetExceeded("usd", f"${cost.usd:.6f}", f"${max(left, Decimal(0)):.6f}")
        if limits.seconds is not None:
            left_s = limits.seconds - self.elapsed() - held.seconds
            if cost.seconds > left_s:
                raise BudgetExceeded("seconds", f"{cost.seconds:.1f} s", f"{max(left_s, 0):.1f} s")
        if limits.tokens is not None:
            left_t = limits.tokens - self.spent.tokens - held.tokens
            if cost.tokens > left_t:
                raise BudgetExceeded("tokens", cost.tokens, max(left_t, 0))
        if limits.calls is not None:
            left_c = limits.calls - self.spent.calls - held.calls
            if cost.calls > left_c:
                raise BudgetExceeded("calls", cost.calls, max(left_c, 0))

    def reserve(self, cost: Cost, *, headroom: float = 1.0) -> Reservation:
        """Hold ``cost`` for a call about to be made, or raise BudgetExceeded.

        With ``headroom`` > 1 the hold is ``cost`` x ``headroom`` on each limited resource,
        clipped to what is left (never below ``cost``): room for a call that runs longer or
        writes more than expected, still within the budget, and capped at that hold.
        """
        with self._lock:
            self._check(cost)
            hold = cost if headroom <= 1.0 else self._grown(cost, headroom)
            self._next_id += 1
            self._held[self._next_id] = hold
            return Reservation(self._next_id, cost, hold)

    def _grown(self, cost: Cost, factor: float) -> Cost:
        """``cost`` x ``factor``, clipped to what is left of each limit (lock held)."""
        held = self._held_total()
        b = self.budget
        usd = cost.usd * Decimal(str(factor))
        if b.usd is not None:
            usd = max(cost.usd, min(usd, b.usd - self.spent.usd - held.usd))
        seconds = cost.seconds * factor
        if b.seconds is not None:
            seconds = max(cost.seconds, min(seconds, b.seconds - self.elapsed() - held.seconds))
        tokens = int(cost.tokens * factor)
        if b.tokens is not None:
            tokens = max(cost.tokens, min(tokens, b.tokens - self.spent.tokens - held.tokens))
        return Cost(usd, seconds, tokens, cost.calls)

    def settle(self, reservation: Reservation, actual: Cost) -> None:
        """Replace a reservation by what the call really cost."""
        with self._lock:
            self._held.pop(reservation.id, None)
            self.spent = self.spent + actual

    def held(self) -> Cost:
        """What calls in flight hold now."""
        with self._lock:
            return self._held_total()

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose call was never made."""
        with self._lock:
            self._held.pop(reservation.id, None)

    def left(self) -> dict[str, Any]:
        """What is left of each limit (None where there is no limit)."""
        with self._lock:
            held = self._held_total()
            b = self.budget
            return {
                "usd": None if b.usd is None else str(b.usd - self.spent.usd - held.usd),
                "seconds": None if b.seconds is None else round(b.seconds - self.elapsed(), 3),
                "tokens": None if b.tokens is None else b.tokens - self.spent.tokens - held.tokens,
                "calls": None if b.calls is None else b.calls - self.spent.calls - held.calls,
            }

    def headroom_seconds(self) -> float | None:
        """Wall seconds a call may still take, or None without a time limit."""
        if self.budget.seconds is None:
            return None
        return max(0.0, self.budget.seconds - self.elapsed())

    def headroom_usd(self) -> Decimal | None:
        """Money a call may still spend, or None without a money limit."""
        if self.budget.usd is None:
            return None
        with self._lock:
            return self.budget.usd - self.spent.usd - self._held_total().usd


def _token_usd(card: ToolCard, input_tokens: int, output_tokens: int) -> Decimal:
    return (
        card.cost.usd_per_1k_input_tokens * input_tokens
        + card.cost.usd_per_1k_output_tokens * output_tokens
    ) / 1000


MIN_CALL_S = 0.25
"""The least time a call is expected to take, whatever the card's measured latency says: a
call's round trip to its worker process costs this much at worst under load, and a hold that
is a few multiples of a 1 ms latency would leave a timeout too short to make the call at all."""


def expected_cost(
    card: ToolCard,
    *,
    input_tokens: int,
    max_output_tokens: int,
    cold: bool,
    count_tokens: bool = False,
) -> Cost:
    """What a call to ``card`` is expected to cost, from its prices and measured latency.

    Its seconds are at least :data:`MIN_CALL_S`. Tokens are counted for a card priced by
    tokens, or for any card with ``count_tokens``
    (a budget that limits tokens holds them for every call).
    """
    seconds = max(card.cost.latency_s, MIN_CALL_S) + (card.cost.load_s if cold else 0.0)
    counts_tokens = (
        count_tokens or card.cost.usd_per_1k_input_tokens or card.cost.usd_per_1k_output_tokens
    )
    tokens = input_tokens + max_output_tokens if counts_tokens else 0
    usd = (
        card.cost.usd_per_call
        + card.cost.usd_per_second * Decimal(str(round(seconds, 6)))
        + _token_usd(card, input_tokens, max_output_tokens)
    )
    return Cost(usd=usd, seconds=seconds, tokens=tokens, calls=1)


def actual_cost(
    card: ToolCard,
    *,
    seconds: float,
    input_tokens: int,
    output_tokens: int,
    billed_usd: Decimal | None = None,
) -> Cost:
    """What a finished call cost: its prices applied to its real time and tokens.

    ``billed_usd`` is the price the model's provider reported for the call (an API's bill, a
    recorded price): when given, it is the money spent.
    """
    usd = (
        card.cost.usd_per_call
        + card.cost.usd_per_second * Decimal(str(round(seconds, 6)))
        + _token_usd(card, input_tokens, output_tokens)
    )
    if billed_usd is not None:
        usd = billed_usd
    return Cost(usd=usd, seconds=seconds, tokens=input_tokens + output_tokens, calls=1)
