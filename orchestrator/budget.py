"""A hard budget: limits on money, wall seconds, tokens and calls, reserved before each call.

:class:`Budget` is the value a user passes (every limit optional). :class:`Ledger` is what a run
keeps: what was spent and what is reserved by calls in flight. A call first ``reserve``s its
expected cost (raising :class:`~orchestrator.errors.BudgetExceeded` if it cannot fit), then
``settle``s the real cost when it returns.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from orchestrator.errors import BudgetExceeded, InvalidBudget

__all__ = [
    "Budget",
    "Cost",
    "Ledger",
    "Reservation",
    "raise_hint",
]

# How a user raises each limit: the command-line option and the Python API field.
_RAISE = {
    "usd": ("--budget-usd", "Budget(usd=...)"),
    "seconds": ("--max-seconds", "Budget(seconds=...)"),
    "tokens": ("--max-tokens", "Budget(tokens=...)"),
    "calls": ("--max-calls", "Budget(calls=...)"),
}


def usd_text(amount: Decimal) -> str:
    """A money amount as plain decimal digits ("0.00000001551", never "1.551E-8")."""
    return format(amount, "f")


def raise_hint(limit: str) -> str:
    """What to raise to allow more of ``limit``: ``raise --max-seconds or Budget(seconds=...)``."""
    option, api = _RAISE[limit]
    return f"raise {option} or {api}"


def _checked_usd(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | numbers.Real | str):
        raise InvalidBudget(_bad("usd", value, "an amount of US dollars like 0.05"))
    try:
        amount = Decimal(value if isinstance(value, Decimal) else str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise InvalidBudget(_bad("usd", value, "an amount of US dollars like 0.05")) from exc
    if not amount.is_finite() or amount < 0:
        raise InvalidBudget(_bad("usd", value, "a finite amount of US dollars >= 0, like 0.05"))
    return amount


def _checked_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidBudget(_bad("seconds", value, "a number of seconds like 60"))
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidBudget(_bad("seconds", value, "a finite number of seconds >= 0, like 60"))
    return seconds


def _checked_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidBudget(_bad(name, value, f"a whole number of {name} >= 0, like 10"))
    return int(value)


def _bad(name: str, value: Any, allowed: str) -> str:
    option, api = _RAISE[name]
    shown = repr(value) if isinstance(value, str) else str(value)
    return (
        f"budget limit '{name}' must be {allowed} (or unset for no limit), "
        f"got {shown} ({type(value).__name__}); set it with {option} or {api}"
    )


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Optional hard limits for one run, checked when made (else :class:`InvalidBudget`).

    ``usd`` takes a Decimal, a number or a string like ``"0.05"``; ``seconds`` a number;
    ``tokens`` and ``calls`` whole numbers. Each must be finite and not negative; ``None``
    means no limit.
    """

    usd: Decimal | None = None
    seconds: float | None = None
    tokens: int | None = None
    calls: int | None = None

    def __post_init__(self) -> None:
        if self.usd is not None:
            object.__setattr__(self, "usd", _checked_usd(self.usd))
        if self.seconds is not None:
            object.__setattr__(self, "seconds", _checked_seconds(self.seconds))
        for name in ("tokens", "calls"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _checked_count(name, getattr(self, name)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "usd": None if self.usd is None else usd_text(self.usd),
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
            "usd": usd_text(self.usd),
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
    _round: tuple[object, _Left] | None = None  # the current round and what it started with

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

    def _left(self) -> _Left:
        """What is left of each limit now, after what is spent and held (lock held)."""
        held = self._held_total()
        b = self.budget
        return _Left(
            None if b.usd is None else b.usd - self.spent.usd - held.usd,
            None if b.seconds is None else b.seconds - self.elapsed() - held.seconds,
            None if b.tokens is None else b.tokens - self.spent.tokens - held.tokens,
            None if b.calls is None else b.calls - self.spent.calls - held.calls,
        )

    def _check(self, cost: Cost, left: _Left) -> None:
        if left.usd is not None and cost.usd > left.usd:
            raise BudgetExceeded("usd", *_usd_amounts(cost.usd, left.usd))
        if left.seconds is not None and cost.seconds > left.seconds:
            raise BudgetExceeded("seconds", *_seconds_amounts(cost.seconds, left.seconds))
        if left.tokens is not None and cost.tokens > left.tokens:
            raise BudgetExceeded("tokens", cost.tokens, max(left.tokens, 0))
        if left.calls is not None and cost.calls > left.calls:
            raise BudgetExceeded("calls", cost.calls, max(left.calls, 0))

    def reserve(
        self, cost: Cost, *, headroom: float = 1.0, round_key: object = None, peers: int = 1
    ) -> Reservation:
        """Hold ``cost`` for a call about to be made, or raise BudgetExceeded.

        With ``headroom`` > 1 the hold is larger than ``cost`` on each limited resource the
        call uses: ``cost`` x ``headroom``, or, for a call that is one of ``peers`` calls
        starting together in the round ``round_key``, its fair share of what was left when the
        round's first call reserved (that left / ``peers``) if that is more. The hold is clipped
        to what is left now (never below ``cost``), so the holds of one round together never
        exceed what the round started with: room for a call that runs longer or writes more
        than expected, still within the budget, and capped at that hold.
        """
        with self._lock:
            left = self._left()
            self._check(cost, left)
            if round_key is not None and (self._round is None or self._round[0] != round_key):
                self._round = (round_key, left)
            base = self._round[1] if round_key is not None and self._round else None
            hold = cost
            if headroom > 1.0:
                hold = _grown(cost, headroom, left, base, max(1, peers))
            self._next_id += 1
            self._held[self._next_id] = hold
            return Reservation(self._next_id, cost, hold)

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


@dataclass(frozen=True)
class _Left:
    """What is left of each limit (None: no limit)."""

    usd: Decimal | None
    seconds: float | None
    tokens: int | None
    calls: int | None


def _grown(cost: Cost, factor: float, left: _Left, base: _Left | None, peers: int) -> Cost:
    """The hold of a call expected to cost ``cost`` (see :meth:`Ledger.reserve`)."""
    usd = cost.usd * Decimal(str(factor))
    if left.usd is not None and cost.usd > 0:
        if base is not None and base.usd is not None:
            usd = max(usd, base.usd / peers)
        usd = max(cost.usd, min(usd, left.usd))
    seconds = cost.seconds * factor
    if left.seconds is not None and cost.seconds > 0:
        if base is not None and base.seconds is not None:
            seconds = max(seconds, base.seconds / peers)
        seconds = max(cost.seconds, min(seconds, left.seconds))
    tokens = int(cost.tokens * factor)
    if left.tokens is not None and cost.tokens > 0:
        if base is not None and base.tokens is not None:
            tokens = max(tokens, base.tokens // peers)
        tokens = max(cost.tokens, min(tokens, left.tokens))
    return Cost(usd, seconds, tokens, cost.calls)


def _usd_amounts(needed: Decimal, left: Decimal) -> tuple[str, str]:
    """Both amounts rounded to just enough digits (at least 6 places) to tell them apart."""
    left = max(left, Decimal(0))
    for places in range(6, 19):
        quantum = Decimal(1).scaleb(-places)
        shown_needed = needed.quantize(quantum, ROUND_HALF_UP)
        shown_left = left.quantize(quantum, ROUND_HALF_UP)
        if shown_needed != shown_left:
            break
    return f"${shown_needed:f}", f"${shown_left:f}"


def _seconds_amounts(needed: float, left: float) -> tuple[str, str]:
    """Both durations rounded to just enough digits (at least one) to tell them apart."""
    left = max(left, 0.0)
    for digits in range(1, 7):
        if f"{needed:.{digits}f}" != f"{left:.{digits}f}":
            break
    return f"{needed:.{digits}f} s", f"{left:.{digits}f} s"
