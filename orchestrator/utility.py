"""The one utility selection and routing both rank a step's candidates by.

``utility = quality - cost_weight x price share``, where

- ``quality`` is the card's measured score on the probes nearest the step's instruction (its
  profile), or, for a card never profiled, its declared ``strength`` times
  :data:`UNPROFILED_TRUST`: a declaration is a weak prior, so an unprofiled card that declares
  0.95 ranks below any card measured at 0.5 or better on the step's task;
- ``price share`` is the card's expected price over the dearest candidate's (0 for a free card,
  1 for the dearest);
- ``cost_weight`` is the user's: how much quality they give up to go from the dearest card to a
  free one. At 0 the best-measured card always wins; a card with lower quality and a higher
  price never wins at any weight.

A measured card's quality already says whether it applies to the instruction (a sentiment model
asked for a language scores what it scored on the language probes: nothing). An unprofiled card's
prior says nothing about the instruction, so it is ranked by utility only when its description
matches the instruction about as well as the best-matching candidate's (:func:`applicable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "DEFAULT_COST_WEIGHT",
    "UNPROFILED_TRUST",
    "Rated",
    "applicable",
    "estimated_quality",
    "price_share",
    "trade_text",
    "utility",
]

UNPROFILED_TRUST = 0.5  # an unprofiled card's declared strength counts at this share
DEFAULT_COST_WEIGHT = 0.2  # quality given up to go from the dearest candidate to a free one
FIT_SHARE = 0.8  # share of the best fit a candidate needs to be applicable
FIT_SLACK = 0.1  # ... or this close to it (spurious word matches are small)


def estimated_quality(measured: float | None, strength: float) -> float:
    """The quality a card is ranked by: measured when there is a measurement, else the prior."""
    if measured is not None:
        return float(measured)
    return UNPROFILED_TRUST * float(strength)


def price_share(usd: Decimal, dearest: Decimal) -> float:
    """``usd`` over the dearest candidate's price (0 when every candidate is free)."""
    return float(usd / dearest) if dearest > 0 else 0.0


def utility(quality: float, share: float, cost_weight: float) -> float:
    """The utility of a candidate of quality ``quality`` and price share ``share``."""
    return quality - cost_weight * share


def applicable(measured: bool, relevance: float, best_relevance: float) -> bool:
    """Whether a candidate is ranked by utility: measured, or described about as well as the best.

    ``relevance`` is the candidate's description match, ``best_relevance`` the best of any
    candidate of the step.
    """
    if measured:
        return True
    return relevance >= FIT_SHARE * best_relevance or best_relevance - relevance <= FIT_SLACK


@dataclass(frozen=True)
class Rated:
    """One candidate with what its utility is made of (for ranking and the trace)."""

    card: str
    quality: float
    measured: bool
    usd: Decimal
    share: float
    utility: float

    def text(self, cost_weight: float) -> str:
        source = "measured" if self.measured else f"unprofiled: prior x {UNPROFILED_TRUST:g}"
        return (
            f"{self.card} utility {self.utility:.3f} = quality {self.quality:.3f} ({source}) "
            f"- cost weight {cost_weight:g} x price share {self.share:.2f} "
            f"(~${format(self.usd.normalize(), 'f')})"
        )


def trade_text(ranked: Sequence[Rated], cost_weight: float) -> str:
    """The quality/cost trade behind the first choice: it against the runner-up."""
    if not ranked:
        return ""
    first = ranked[0]
    text = first.text(cost_weight)
    if len(ranked) > 1:
        other = ranked[1]
        dq, dp = first.quality - other.quality, first.share - other.share
        text += f"; over {other.text(cost_weight)}"
        if dq < 0:
            text += f" (gives up {-dq:.3f} quality to save {-dp:.2f} of the price)"
        elif dp > 0:
            text += f" (pays {dp:.2f} more of the price for {dq:.3f} more quality)"
    return text
