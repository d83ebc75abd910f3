"""Selection: rank the tool cards that fit a subtask, by a score that explains itself.

The hard filter keeps cards of the subtask's task whose inputs the subtask's arguments can fill
and whose outputs its consumers need. The :class:`Scorer` then scores each: the default
:class:`EvidenceScorer` combines how well the card's description fits the instruction, its
measured (or prior) quality, and its expected cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from orchestrator._text import TfidfIndex
from orchestrator.budget import expected_cost
from orchestrator.cards import ToolCard
from orchestrator.plan import ComposeArg, Plan, RefArg, Subtask
from orchestrator.zoo import Zoo, ZooEntry

__all__ = [
    "Candidate",
    "EvidenceScorer",
    "Rejected",
    "ScoreParts",
    "Scorer",
    "Selection",
    "select_for_plan",
    "select_for_subtask",
]


@dataclass(frozen=True)
class ScoreParts:
    """The parts of a card's score for one subtask, each in 0..1, and their weighted total."""

    relevance: float
    quality: float
    cost: float
    total: float
    matched: tuple[str, ...] = ()

    def explain(self) -> str:
        words = f" (matched: {', '.join(self.matched[:4])})" if self.matched else ""
        return (
            f"score {self.total:.2f} = relevance {self.relevance:.2f}{words}, "
            f"quality {self.quality:.2f}, cost {self.cost:.2f}"
        )


class Scorer(Protocol):
    """Scores the cards that passed the hard filter for one subtask."""

    def score(self, subtask: Subtask, cards: list[ToolCard]) -> list[ScoreParts]: ...


@dataclass
class EvidenceScorer:
    """Description match + measured or prior quality + cheapness, weighted."""

    w_relevance: float = 0.5
    w_quality: float = 0.35
    w_cost: float = 0.15
    cost_scale: Decimal = Decimal("0.001")

    def score(self, subtask: Subtask, cards: list[ToolCard]) -> list[ScoreParts]:
        index = TfidfIndex(_card_text(c) for c in cards)
        similarities = index.similarities(subtask.instruction)
        parts = []
        for i, card in enumerate(cards):
            profiled = card.profile is not None and card.profile.probes
            quality = card.profile.mean_score if profiled and card.profile else card.strength
            # 1 for a free call, 0.5 at `cost_scale` dollars per call, towards 0 beyond.
            cost = float(1 / (1 + _nominal_usd(card) / self.cost_scale))
            relevance = similarities[i]
            total = self.w_relevance * relevance + self.w_quality * quality + self.w_cost * cost
            parts.append(
                ScoreParts(
                    relevance,
                    quality,
                    cost,
                    total,
                    tuple(index.matched_terms(subtask.instruction, i)),
                )
            )
        return parts


def _card_text(card: ToolCard) -> str:
    return " ".join([card.name.replace("-", " "), card.description, " ".join(card.tags)])


def _nominal_usd(card: ToolCard) -> Decimal:
    return expected_cost(card, input_tokens=100, max_output_tokens=100, cold=False).usd


@dataclass(frozen=True)
class Candidate:
    """A card that can serve a subtask, with its score."""

    card: ToolCard
    parts: ScoreParts

    def as_dict(self) -> dict[str, object]:
        return {
            "card": self.card.name,
            "score": round(self.parts.total, 4),
            "why": self.parts.explain(),
        }


@dataclass(frozen=True)
class Rejected:
    """A card of the right task that cannot serve the subtask, and why."""

    card: str
    reason: str


@dataclass
class Selection:
    """The ranked candidates of one subtask and the cards turned away."""

    step: str
    candidates: list[Candidate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def missing_reason(self, subtask: Subtask) -> str:
        """Say what is missing when there is no candidate."""
        if not self.rejected:
            return f"no card in the zoo does '{subtask.task}'"
        details = "; ".join(f"{r.card}: {r.reason}" for r in self.rejected)
        return f"no available card can do '{subtask.task}' for step {subtask.id} ({details})"


def _provided_types(subtask: Subtask) -> set[str]:
    provided = set(subtask.args)
    if "text" not in provided and any(
        isinstance(a, RefArg | ComposeArg) for a in subtask.args.values()
    ):
        # A reference can be read as text (json and labels render as text).
        provided.add("text")
    return provided


def _fits(entry: ZooEntry, subtask: Subtask, needed_outputs: set[str]) -> str | None:
    card = entry.card
    if not entry.available:
        return f"unavailable: {entry.unavailable}"
    missing_in = card.input_types() - _provided_types(subtask)
    if missing_in:
        return f"needs {', '.join(sorted(missing_in))} input the step does not have"
    missing_out = needed_outputs - card.output_types()
    if missing_out:
        return f"does not output {', '.join(sorted(missing_out))}, which a later step needs"
    return None


def _needed_outputs(plan: Plan, subtask: Subtask) -> set[str]:
    needed: set[str] = set()
    for consumer in plan.consumers(subtask.id):
        for io_type, arg in consumer.args.items():
            if isinstance(arg, RefArg) and arg.step == subtask.id:
                needed.add(io_type)
            elif isinstance(arg, ComposeArg) and subtask.id in arg.steps:
                needed.add("text")
    needed.discard("text")  # every output renders as text
    return needed


def select_for_subtask(plan: Plan, subtask: Subtask, zoo: Zoo, scorer: Scorer) -> Selection:
    """Rank the cards that can serve ``subtask`` (best first) and list those turned away."""
    selection = Selection(subtask.id)
    fitting: list[ToolCard] = []
    needed = _needed_outputs(plan, subtask)
    for entry in zoo.for_task(subtask.task):
        reason = _fits(entry, subtask, needed)
        if reason is None:
            fitting.append(entry.card)
        else:
            selection.rejected.append(Rejected(entry.card.name, reason))
    if fitting:
        scored = zip(fitting, scorer.score(subtask, fitting), strict=True)
        ranked = sorted(scored, key=lambda pair: (-pair[1].total, pair[0].name))
        selection.candidates = [Candidate(card, parts) for card, parts in ranked]
    return selection


def select_for_plan(plan: Plan, zoo: Zoo, scorer: Scorer) -> dict[str, Selection]:
    """Selections for every subtask of ``plan``."""
    return {s.id: select_for_subtask(plan, s, zoo, scorer) for s in plan.subtasks}
