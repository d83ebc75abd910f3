"""Selection: rank the tool cards that fit a subtask, by a score that explains itself.

The hard filter keeps available cards of the subtask's task whose inputs the subtask's arguments
can fill and whose outputs its consumers need. The :class:`Scorer` then scores each: the default
:class:`CapabilityScorer` combines the description match, the card's profile evidence (its
scores on probe instructions like this one), the task fit, measured quality, availability and
expected cost. :class:`orchestrator.selection.llm_scorer.LLMScorer` is a second implementation that
asks an LLM (Model-SAT's "capability text + instruction" form).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from orchestrator.cards import ToolCard
from orchestrator.cards.pricing import expected_cost
from orchestrator.cards.zoo import Zoo, ZooEntry
from orchestrator.embed import EmbeddingCache, default_embedder
from orchestrator.plan import ComposeArg, Plan, RefArg, Subtask, TextArg
from orchestrator.selection.capability import CardIndex, InstructionScores
from orchestrator.selection.learn import (
    FEATURES,
    SelectionModel,
    fit_selection_model,
    model_digest,
    pair_features,
)
from orchestrator.utility import (
    DEFAULT_COST_WEIGHT,
    Rated,
    applicable,
    estimated_quality,
    price_share,
    utility,
)

__all__ = [
    "CapabilityScorer",
    "Candidate",
    "EvidenceScorer",
    "Rejected",
    "ScoreParts",
    "Scorer",
    "Selection",
    "by_utility",
    "rank_open",
    "rated",
    "select_for_plan",
    "select_for_subtask",
    "task_text",
]


@dataclass(frozen=True)
class ScoreParts:
    """The parts of a card's score for one subtask, each in 0..1, and their weighted total.

    ``relevance`` is the description match, ``evidence`` the profile evidence (similarity of the
    instruction to the card's probes weighted by its scores on them; None when not profiled),
    ``task_fit`` how likely the instruction is of the card's task type (1 when the task is given),
    ``quality`` the quality the step's utility ranks by (:mod:`orchestrator.utility`: the
    card's measured score on the probes nearest the instruction, or its discounted prior when
    ``measured`` is false), ``cost`` cheapness.
    """

    relevance: float
    quality: float
    cost: float
    total: float
    matched: tuple[str, ...] = ()
    evidence: float | None = None
    task_fit: float = 1.0
    availability: float = 1.0
    learned: dict[str, float] | None = None  # the learned ranker's terms, when it ranked
    measured: bool = False  # quality is measured (the card has probes), not a prior

    def explain(self) -> str:
        words = f" (matched: {', '.join(self.matched[:4])})" if self.matched else ""
        evidence = "unprofiled" if self.evidence is None else f"{self.evidence:.2f}"
        ranker = ""
        if self.learned:
            terms = ", ".join(f"{k} {v:+.2f}" for k, v in self.learned.items())
            ranker = f"; learned ranker: {terms}"
        return (
            f"score {self.total:.2f} = relevance {self.relevance:.2f}{words}, "
            f"probe evidence {evidence}, task fit {self.task_fit:.2f}, "
            f"quality {self.quality:.2f} ({'measured' if self.measured else 'prior'}), "
            f"availability {self.availability:.2f}, "
            f"cost {self.cost:.2f}{ranker}"
        )

    def as_dict(self) -> dict[str, float | None]:
        """The parts as numbers (rounded), for traces and JSON output."""
        return {
            "relevance": round(self.relevance, 4),
            "evidence": None if self.evidence is None else round(self.evidence, 4),
            "task_fit": round(self.task_fit, 4),
            "quality": round(self.quality, 4),
            "measured": self.measured,
            "availability": round(self.availability, 4),
            "cost": round(self.cost, 4),
            "total": round(self.total, 4),
        }


class Scorer(Protocol):
    """Scores the cards that passed the hard filter for one subtask."""

    def score(self, subtask: Subtask, cards: list[ToolCard]) -> list[ScoreParts]: ...


@dataclass
class CapabilityScorer:
    """Capability-instruction scoring (Model-SAT's idea, for every kind of model).

    A card's score for an instruction is a weighted sum of: its description match, its profile
    evidence (how close the instruction is to the probes the card was tested on, times how well
    it did on the closest ones), the fit of its task type to the instruction, its measured
    quality, its availability and its cheapness. A card without a profile gets its prior
    ``strength`` (times 0.4) in place of the evidence. Similarity is TF-IDF; MiniLM embeddings
    are added when the candidates number ``embed_min_cards`` or more (or ``embed`` is true), so
    small zoos never load the embedding model.

    With embeddings (and ``learn`` not false) the card set is also fitted with a
    :class:`~orchestrator.selection.learn.SelectionModel`, saved next to the embedding cache: a
    task classifier learned from the cards' own text and their passed probes gives the task fit,
    and a pair ranker learned from the probes weighs task fit, embedding and TF-IDF match and
    probe evidence in place of the fixed weights (its terms are listed in each card's ``why``).

    ``encoder`` (opt-in) is a folder made by ``orchestrator cards tune-encoder`` (a MiniLM
    fine-tuned on the zoo's own cards and probes) or any saved sentence-transformers model, used
    in place of the base model (embeddings are then on at any zoo size; a ``cache`` given as well
    keeps its own embedder). A folder that is neither is refused here, when the scorer is made.
    """

    w_relevance: float = 0.35
    w_evidence: float = 0.25
    w_task: float = 0.1
    w_quality: float = 0.0  # probe scores already count through the evidence
    w_availability: float = 0.05
    w_cost: float = 0.05
    cost_scale: Decimal = Decimal("0.001")
    embed: bool | None = None
    embed_min_cards: int = 200
    cache: EmbeddingCache | None = None
    learn: bool | None = None  # None: learn whenever embeddings are used
    w_ranked: float = 0.9  # weight of the learned ranker's probability in the total
    encoder: Path | None = None  # a tuned encoder folder; None: the base MiniLM
    _indexes: dict[tuple[int, ...], CardIndex] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Any) -> CapabilityScorer:
        """The scorer of an orchestrator ``Config`` (its ``selection_encoder``)."""
        return cls(encoder=config.selection_encoder)

    def __post_init__(self) -> None:
        if self.encoder is not None and self.cache is None:
            from orchestrator.selection.embed_tune import encoder_embedder

            self.cache = EmbeddingCache(encoder_embedder(self.encoder))

    def _uses_embeddings(self, n_cards: int) -> bool:
        if self.embed is not None:
            return self.embed
        return self.encoder is not None or n_cards >= self.embed_min_cards

    def index(self, cards: list[ToolCard]) -> CardIndex:
        """The evidence index of ``cards`` (kept while the same card objects are scored)."""
        key = tuple(map(id, cards))
        found = self._indexes.get(key)  # the index holds the cards: their ids stay theirs
        if found is None:
            cache = None
            if self._uses_embeddings(len(cards)):
                if self.cache is None:
                    self.cache = EmbeddingCache(default_embedder())
                cache = self.cache
            if len(self._indexes) > 8:
                self._indexes.clear()
            found = self._indexes[key] = CardIndex(cards, cache)
            if cache is not None and self.learn is not False:
                found.learned = self._learned_model(found, cache)
        return found

    def _learned_model(self, index: CardIndex, cache: EmbeddingCache) -> SelectionModel:
        """The selection model of ``index``: read back from disk, or fitted now and saved."""
        name = cache.embedder.name
        digest = model_digest(name, index.texts, index)
        assert cache.path is not None
        path = cache.path.parent / "selection" / f"{digest}.npz"
        model = SelectionModel.load(path)
        if model is None or model.digest != digest:
            model = fit_selection_model(index, name, digest)
            model.save(path)
        return model

    def score(
        self,
        subtask: Subtask,
        cards: list[ToolCard],
        available: Sequence[bool] | None = None,
    ) -> list[ScoreParts]:
        """Score parts of each card for ``subtask`` (cards past the hard filter: all available)."""
        if not cards:
            return []
        parts = self._parts(subtask, cards, available, None)
        return [p for _, p in parts]

    def rank(
        self,
        subtask: Subtask,
        cards: list[ToolCard],
        k: int,
        available: Sequence[bool] | None = None,
    ) -> list[tuple[int, ScoreParts]]:
        """The ``k`` best (card position, score parts), best first; fast on large zoos."""
        if not cards:
            return []
        return self._parts(subtask, cards, available, k)

    def _parts(
        self,
        subtask: Subtask,
        cards: list[ToolCard],
        available: Sequence[bool] | None,
        k: int | None,
    ) -> list[tuple[int, ScoreParts]]:
        index = self.index(cards)
        evidence = index.scores(task_text(subtask))
        quality, cheap = self._static(index)
        model: SelectionModel | None = getattr(index, "learned", None)
        learned_terms: np.ndarray | None = None
        if model is not None and evidence.query_vector is not None:
            evidence.task_fit = model.task_probs(evidence.query_vector)[index.card_task]
            learned_terms = self._learned_terms(model, evidence)
            totals = self._learned_totals(learned_terms, model, cheap, available)
        else:
            totals = self._totals(evidence, quality, cheap, available)
        if k is None:
            rows = range(len(cards))
        else:
            k = min(k, len(cards))
            top = np.argpartition(-totals, k - 1)[:k]
            rows = sorted(top.tolist(), key=lambda r: (-totals[r], cards[r].name))
        explain_rows = set(np.argsort(-totals)[:10].tolist()) if k is None else set(rows[:10])
        out = []
        for row in rows:
            profiled = bool(evidence.profiled[row])
            relevance = float(evidence.description[row])
            matched = (
                tuple(index.matched_terms(evidence.query_terms, row)) if row in explain_rows else ()
            )
            parts = ScoreParts(
                relevance=relevance,
                quality=round(
                    estimated_quality(
                        _at(evidence.measured, row) if profiled else None, cards[row].strength
                    ),
                    4,  # as the trace keeps it: selection and routing rank the same numbers
                ),
                cost=float(cheap[row]),
                total=float(totals[row]),
                matched=matched,
                evidence=float(evidence.evidence[row]) if profiled else None,
                task_fit=float(evidence.task_fit[row]),
                availability=1.0 if available is None else float(bool(available[row])),
                learned=None if learned_terms is None else _terms(learned_terms[row]),
                measured=profiled,
            )
            out.append((row, parts))
        return out

    @staticmethod
    def _learned_terms(model: SelectionModel, ev: InstructionScores) -> np.ndarray:
        """Per card, each feature times its learned weight (columns as in FEATURES)."""
        assert ev.dense is not None and ev.lexical is not None
        assert ev.task_vote is not None
        features = pair_features(ev.task_fit, ev.task_vote, ev.dense, ev.lexical, ev.evidence)
        return features * model.rank_weights.astype(np.float32)

    def _learned_totals(
        self,
        terms: np.ndarray,
        model: SelectionModel,
        cheap: np.ndarray,
        available: Sequence[bool] | None,
    ) -> np.ndarray:
        logits = terms.sum(axis=1) + np.float32(model.rank_bias)
        ranked = 1 / (1 + np.exp(-np.clip(logits, -30, 30)))
        avail = 1.0 if available is None else np.array(available, dtype=np.float32)
        return self.w_ranked * ranked + self.w_availability * avail + self.w_cost * cheap

    def _static(self, index: CardIndex) -> tuple[np.ndarray, np.ndarray]:
        """Per-card quality and cheapness, computed once per index."""
        cached = getattr(index, "static_parts", None)
        if cached is None:
            quality = np.array([_quality(c) for c in index.cards], dtype=np.float32)
            cheap = np.array(
                [_cheapness(c, self.cost_scale) for c in index.cards], dtype=np.float32
            )
            cached = index.static_parts = (quality, cheap)
        return cached

    def _totals(
        self,
        ev: InstructionScores,
        quality: np.ndarray,
        cheap: np.ndarray,
        available: Sequence[bool] | None,
    ) -> np.ndarray:
        # Unprofiled cards: no probe evidence, their prior quality stands in (scaled down).
        evidence = np.where(ev.profiled, ev.evidence, 0.4 * quality)
        avail = 1.0 if available is None else np.array(available, dtype=np.float32)
        return (
            self.w_relevance * ev.description
            + self.w_evidence * evidence
            + self.w_task * ev.task_fit
            + self.w_quality * quality
            + self.w_availability * avail
            + self.w_cost * cheap
        )


EvidenceScorer = CapabilityScorer  # the former name of the default scorer

_EMPTY_QUOTES = re.compile(r"[\"“”']\s*[\"“”']|:\s*$")


def task_text(subtask: Subtask) -> str:
    """The instruction without the literal texts it carries: those are the data, not the task.

    'Which language is "what a horrible review" in?' is scored as 'Which language is in?', so
    the words of the text to analyse never pull in a card that matches them (a sentiment
    model here). An instruction that is nothing but its text is kept whole.
    """
    text = subtask.instruction
    for arg in subtask.args.values():
        if isinstance(arg, TextArg) and len(arg.value.strip()) >= 3:
            text = text.replace(arg.value, " ")
    text = " ".join(_EMPTY_QUOTES.sub(" ", text).split())
    return text if re.search(r"\w{2}", text) else subtask.instruction


def _at(values: np.ndarray | None, row: int) -> float:
    return 0.0 if values is None else float(values[row])


def _terms(row: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(FEATURES, row, strict=True)}


def _quality(card: ToolCard) -> float:
    profiled = card.profile is not None and card.profile.probes
    return card.profile.mean_score if profiled and card.profile else card.strength


def _cheapness(card: ToolCard, scale: Decimal) -> float:
    """1 for a free call, 0.5 at ``scale`` dollars per call, towards 0 beyond."""
    return float(1 / (1 + _nominal_usd(card) / scale))


def _nominal_usd(card: ToolCard) -> Decimal:
    return expected_cost(card, input_tokens=100, max_output_tokens=100, cold=False).usd


def rank_open(instruction: str, zoo: Zoo, scorer: CapabilityScorer, k: int = 5) -> list[Candidate]:
    """The best ``k`` cards of the whole zoo for an instruction of unknown task type.

    No hard filter: the task type is inferred (the task-fit part), unavailable cards are ranked
    with availability 0. Used to rank a model list against free-form requests (the selection eval).
    """
    entries = list(zoo)
    cards = [e.card for e in entries]
    subtask = Subtask(id="q", task="any", instruction=instruction)
    parts = scorer.score(subtask, cards, [e.available for e in entries])
    order = sorted(range(len(cards)), key=lambda i: (-parts[i].total, cards[i].name))[:k]
    return [Candidate(cards[i], parts[i]) for i in order]


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


MAX_CANDIDATES = 50  # candidates kept per subtask when more cards fit
_FILTER_MEMO: dict[tuple[object, ...], tuple[Zoo, list[ToolCard], list[Rejected]]] = {}


def _hard_filter(plan: Plan, subtask: Subtask, zoo: Zoo) -> tuple[list[ToolCard], list[Rejected]]:
    """The cards of the subtask's task that fit it, and those turned away with the reason.

    Remembered per zoo, task and IO signature (a zoo's entries only change by ``add``, which
    changes its size), so a large zoo is filtered once, not per subtask.
    """
    needed = _needed_outputs(plan, subtask)
    provided = frozenset(_provided_types(subtask))
    key = (id(zoo), len(zoo), subtask.task, provided, frozenset(needed))
    memo = _FILTER_MEMO.get(key)
    if memo is not None and memo[0] is zoo:
        return memo[1], memo[2]
    fitting: list[ToolCard] = []
    rejected: list[Rejected] = []
    for entry in zoo.for_task(subtask.task):
        reason = _fits(entry, subtask, needed)
        if reason is None:
            fitting.append(entry.card)
        else:
            rejected.append(Rejected(entry.card.name, reason))
    if len(_FILTER_MEMO) > 64:
        _FILTER_MEMO.clear()
    _FILTER_MEMO[key] = (zoo, fitting, rejected)
    return fitting, rejected


def select_for_subtask(
    plan: Plan,
    subtask: Subtask,
    zoo: Zoo,
    scorer: Scorer,
    cost_weight: float = DEFAULT_COST_WEIGHT,
) -> Selection:
    """Rank the cards that can serve ``subtask`` (best first) and list those turned away.

    The order is the step's utility (:mod:`orchestrator.utility`, at ``cost_weight``): the
    candidates that apply to the instruction by utility, then the rest by score.
    """
    selection = Selection(subtask.id)
    fitting, rejected = _hard_filter(plan, subtask, zoo)
    if subtask.cards:  # the planner named the cards that do this step's capability
        why = "not one of the cards the plan names for this step"
        rejected = [
            *rejected,
            *(Rejected(c.name, why) for c in fitting if c.name not in subtask.cards),
        ]
        fitting = [c for c in fitting if c.name in subtask.cards]
    selection.rejected = list(rejected)
    if len(fitting) > MAX_CANDIDATES and isinstance(scorer, CapabilityScorer):
        # A large zoo: keep the best few (enough to fall back on), scored without the rest.
        top = scorer.rank(subtask, fitting, MAX_CANDIDATES)
        candidates = [Candidate(fitting[row], parts) for row, parts in top]
    else:
        scored = zip(fitting, scorer.score(subtask, fitting), strict=True)
        candidates = [Candidate(card, parts) for card, parts in scored]
    selection.candidates = by_utility(candidates, cost_weight)
    return selection


def rated(candidates: Sequence[Candidate], cost_weight: float) -> list[Rated]:
    """Each candidate's utility and what it is made of, in the candidates' order."""
    prices = [_nominal_usd(c.card) for c in candidates]
    dearest = max(prices, default=Decimal(0))
    out = []
    for c, usd in zip(candidates, prices, strict=True):
        share = price_share(usd, dearest)
        value = utility(c.parts.quality, share, cost_weight)
        out.append(Rated(c.card.name, c.parts.quality, c.parts.measured, usd, share, value))
    return out


def by_utility(candidates: Sequence[Candidate], cost_weight: float) -> list[Candidate]:
    """The candidates that apply to the instruction, best utility first; then the rest."""
    rates = rated(candidates, cost_weight)
    best = max((c.parts.relevance for c in candidates), default=0.0)

    def key(i: int) -> tuple[int, float, float, float, str]:
        c = candidates[i]
        if not applicable(c.parts.measured, c.parts.relevance, best):
            return (1, 0.0, 0.0, -c.parts.total, c.card.name)
        # Equal utility: the cheaper first (at cost weight 0, equal quality).
        return (0, -rates[i].utility, rates[i].share, -c.parts.total, c.card.name)

    return [candidates[i] for i in sorted(range(len(candidates)), key=key)]


def select_for_plan(
    plan: Plan, zoo: Zoo, scorer: Scorer, cost_weight: float = DEFAULT_COST_WEIGHT
) -> dict[str, Selection]:
    """Selections for every subtask of ``plan`` (each ranked by utility at ``cost_weight``)."""
    return {s.id: select_for_subtask(plan, s, zoo, scorer, cost_weight) for s in plan.subtasks}
