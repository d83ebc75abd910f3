"""Route: after each round, decide per subtask what happens next, within the budget.

A :class:`RouterPolicy` sees one subtask (its ranked candidates with their quality, expected
cost and whether that still fits the budget, and every answer it got so far) and returns a
:class:`Decision`: ``start`` a candidate, ``accept`` an answer, ``retry`` the next candidate
after a failure, ``escalate`` to a stronger model, ``ask_second`` model and aggregate
(agreement or majority of comparable answers), ``replan`` the request without the cards that
failed, ``finish`` the run (answer with what finished), or ``give_up`` on the subtask.

Policies (the registry is :data:`POLICIES`; packages add theirs by :func:`register_policy` or an
entry point in the ``orchestrator.policies`` group): :class:`DefaultPolicy` (capability scores +
budget, one cost knob), ``llm`` (:class:`orchestrator.routing.llm.LLMPolicy`: Router-R1's
``<think>``/``<route>``/``<answer>`` protocol through the openai SDK; its output is validated
and a malformed one falls back to the default policy) and ``learned``
(:class:`orchestrator.routing.learned.LearnedPolicy`: a multi-round table learned from logged
answers - when to ask a second model, when to escalate, when to stop).
:func:`checked_decision` validates any policy's decision against the view.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from orchestrator.errors import MalformedDecision, UnknownPolicy, UserError
from orchestrator.plugins import Registry
from orchestrator.utility import (
    DEFAULT_COST_WEIGHT,
    Rated,
    applicable,
    price_share,
    trade_text,
    utility,
)

__all__ = [
    "ACTIONS",
    "POLICIES",
    "Answer",
    "Decision",
    "DefaultPolicy",
    "Option",
    "RouterPolicy",
    "StepView",
    "answer_key",
    "checked_decision",
    "get_policy",
    "policy_class",
    "register_policy",
    "unwrap_response",
]

ACTIONS: tuple[str, ...] = (
    "start",
    "accept",
    "retry",
    "escalate",
    "ask_second",
    "replan",
    "finish",
    "give_up",
)
_LAUNCHING = ("start", "retry", "escalate", "ask_second")
MIN_VOTER_QUALITY = 0.1  # a measured card below this on the instruction is never a second voter


@dataclass(frozen=True)
class Option:
    """One ranked candidate card of a subtask, as the router sees it."""

    index: int
    card: str
    quality: float
    relevance: float
    usd: Decimal
    fits: bool
    measured: bool = True  # quality is measured, not an unprofiled card's discounted prior


@dataclass(frozen=True)
class Answer:
    """One finished attempt at the subtask: its card, status and (when ok) its answer."""

    seq: int
    candidate: int
    card: str
    status: str
    text: str = ""
    key: str | None = None  # comparable form of the answer; None when it cannot be compared
    error: str | None = None


@dataclass(frozen=True)
class StepView:
    """What a policy knows about one subtask."""

    step: str
    task: str
    instruction: str
    options: tuple[Option, ...]
    answers: tuple[Answer, ...] = ()
    budget_left: dict[str, Any] = field(default_factory=dict)
    replans: int = 0
    # The run's ledger (orchestrator.budget.Ledger), for a policy whose own calls cost something
    # (the LLM policy reserves and settles them like model calls); None outside a run.
    ledger: Any = field(default=None, compare=False, repr=False)

    def option(self, card: str) -> Option | None:
        return next((o for o in self.options if o.card == card), None)

    def asked(self) -> set[str]:
        return {a.card for a in self.answers}

    def ok_answers(self) -> list[Answer]:
        return [a for a in self.answers if a.status == "ok"]


@dataclass(frozen=True)
class Decision:
    """What to do with one subtask, and why.

    ``candidate`` is the option index to call (launching actions); ``use`` is the ``seq`` of
    the answer to accept (``accept``).
    """

    action: str
    reason: str
    candidate: int | None = None
    use: int | None = None
    policy: str = ""


class RouterPolicy(Protocol):
    """Decides what happens to a subtask: where to start, and what to do after each answer."""

    name: str

    def start(self, view: StepView) -> Decision:
        """The first candidate to call for a subtask that has no answer yet."""
        ...

    def decide(self, view: StepView) -> Decision:
        """After the subtask's latest attempt finished: accept, call another, or stop."""
        ...


# ----------------------------------------------------------------------------- answers

_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?(?:[.):\s]|$)")
_LIST_REPR = re.compile(r"^\[\s*(['\"]).*\1\s*\]$", re.S)


def unwrap_response(text: str) -> str:
    r"""A response recorded as a Python list literal (``"['B\\n']"``) becomes its first item."""
    text = text.strip()
    if _LIST_REPR.match(text):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, list) and value:
            return str(value[0]).strip()
    return text


def answer_key(text: str, *, max_chars: int = 40) -> str | None:
    """A comparable form of an answer, or None when answers like it cannot be compared.

    A multiple-choice reply (``"B"``, ``"(b)"``, ``"B) Logan"``) compares by its letter; any
    other short reply by its lower-cased words; a long free-form reply (code, prose) is not
    comparable.
    """
    text = unwrap_response(text)
    match = _CHOICE.match(text)
    if match:
        return match.group(1).upper()
    words = " ".join(re.findall(r"\w+", text.lower()))
    if not words or len(words) > max_chars:
        return None
    return words


# ----------------------------------------------------------------------------- validation


def checked_decision(decision: Any, view: StepView, *, started: bool) -> Decision:
    """``decision`` if it is a well-formed choice for ``view``; raise MalformedDecision if not."""
    if not isinstance(decision, Decision):
        raise MalformedDecision(f"a policy must return a Decision, got {type(decision).__name__}")
    if decision.action not in ACTIONS:
        raise MalformedDecision(f"unknown action '{decision.action}'; use one of {ACTIONS}")
    if not started and decision.action not in ("start", "finish", "give_up"):
        raise MalformedDecision(f"'{decision.action}' needs an answer; the subtask has none yet")
    if started and decision.action == "start":
        raise MalformedDecision("'start' is only for a subtask that has no attempt yet")
    if decision.action in _LAUNCHING:
        if decision.candidate is None or not 0 <= decision.candidate < len(view.options):
            raise MalformedDecision(f"'{decision.action}' needs a candidate among the options")
        option = view.options[decision.candidate]
        if decision.action != "start" and not option.fits:
            raise MalformedDecision(f"{option.card} does not fit the budget left")
        if decision.action in ("escalate", "ask_second") and option.card in view.asked():
            raise MalformedDecision(f"{option.card} already answered this subtask")
    if decision.action == "accept":
        ok = {a.seq for a in view.ok_answers()}
        if decision.use not in ok:
            raise MalformedDecision("'accept' must name a successful answer of this subtask")
    return decision


# ----------------------------------------------------------------------------- default policy


@dataclass
class DefaultPolicy:
    """Capability scores + budget, with one cost knob.

    Each candidate's utility is the one selection ranks by (:mod:`orchestrator.utility`):
    ``quality - cost_weight x usd / (dearest candidate's usd)``, among the candidates that apply
    to the instruction. ``cost_weight`` 0 starts with the best-measured model, a large one with
    the cheapest; a card of lower quality and higher price is never started. When the
    answer is comparable (a choice, a label) and a stronger model exists, a second, similar
    candidate is asked if the expected gain is worth its price; agreement is accepted, and a
    disagreement escalates to the strongest candidate that fits, whose answer decides with the
    others by majority (ties go to the answer backed by the most quality). A failure retries
    the next candidate that fits; when none fits and the budget stopped the call, the run
    finishes with what it has.
    """

    cost_weight: float = DEFAULT_COST_WEIGHT
    verify: bool = True
    margin: float = 0.02  # quality gain below which no second opinion is sought
    max_replans: int = 0
    choices: int = 4  # how many ways a comparable answer can be wrong, for the vote
    # On a disagreement too dear to escalate, ask further cheap voters. Off by default: on
    # RouterBench's held-out folds the cheap models' errors were correlated and a third
    # cheap vote lowered accuracy (ARC 0.90 -> 0.87 at the same cost weight).
    extra_votes: bool = False
    name: str = "default"

    def _scale(self, view: StepView) -> Decimal:
        dearest = max((o.usd for o in view.options), default=Decimal(0))
        return dearest if dearest > 0 else Decimal(1)

    def rated(self, option: Option, view: StepView) -> Rated:
        """``option``'s utility and what it is made of."""
        share = price_share(option.usd, max(o.usd for o in view.options))
        value = utility(option.quality, share, self.cost_weight)
        return Rated(option.card, option.quality, option.measured, option.usd, share, value)

    def utility(self, option: Option, view: StepView) -> float:
        return self.rated(option, view).utility

    def _price(self, option: Option, view: StepView) -> float:
        return self.cost_weight * float(option.usd / self._scale(view))

    def _relevant(self, option: Option, view: StepView) -> bool:
        """Whether ``option`` applies to the instruction (see :func:`applicable`)."""
        best = max((o.relevance for o in view.options), default=0.0)
        return applicable(option.measured, option.relevance, best)

    def _voter(self, option: Option, view: StepView) -> bool:
        """Whether ``option`` may give a second opinion: it applies, and did not fail the probes.

        A measured card below ``MIN_VOTER_QUALITY`` on instructions like this one (a language
        identifier asked about sentiment) is never asked.
        """
        return self._relevant(option, view) and not (
            option.measured and option.quality < MIN_VOTER_QUALITY
        )

    def _ranked(self, view: StepView, *, fitting: bool = True) -> list[Option]:
        """Options best first: the relevant ones by utility, then the rest in selection order."""
        options = [o for o in view.options if o.fits or not fitting]
        return sorted(
            options,
            key=lambda o: (
                (0, -self.utility(o, view), o.usd, o.index)
                if self._relevant(o, view)
                else (1, 0.0, Decimal(0), o.index)
            ),
        )

    def start(self, view: StepView) -> Decision:
        ranked = self._ranked(view) or self._ranked(view, fitting=False)
        first = ranked[0]
        why = "fits the budget" if first.fits else "nothing fits the budget; the call will say so"
        trade = trade_text(
            [self.rated(o, view) for o in ranked if self._relevant(o, view)], self.cost_weight
        )
        return Decision(
            "start",
            f"best utility: {trade or self.rated(first, view).text(self.cost_weight)}; {why}",
            candidate=first.index,
            policy=self.name,
        )

    def decide(self, view: StepView) -> Decision:
        last = view.answers[-1]
        if last.status != "ok":
            return self._after_failure(view, last)
        ok = view.ok_answers()
        if last.key is None:
            return self._accept(last, f"{last.card} answered (free-form: nothing to compare)")
        if len(ok) == 1:
            return self._second_opinion(view, last)
        return self._aggregate(view, ok)

    def _after_failure(self, view: StepView, last: Answer) -> Decision:
        untried = [o for o in self._ranked(view) if o.card not in view.asked()]
        if untried:
            nxt = untried[0]
            return Decision(
                "retry",
                f"{last.card} {last.status}: {last.error}; next candidate {nxt.card}",
                candidate=nxt.index,
                policy=self.name,
            )
        ok = view.ok_answers()
        if ok:
            best = self._best_supported(view, ok)
            return self._accept(best, f"{last.card} {last.status}; keeping {best.card}'s answer")
        if last.status == "over_budget":
            return Decision(
                "finish",
                f"{last.card} {last.status}: {last.error}; no other candidate fits, "
                "so the run finishes with what it has",
                policy=self.name,
            )
        if view.replans < self.max_replans:
            return Decision(
                "replan",
                f"every candidate failed (last: {last.card}: {last.error}); re-planning "
                "without the cards that failed",
                policy=self.name,
            )
        return Decision(
            "give_up",
            f"{last.card} {last.status}: {last.error}; no other candidate fits",
            policy=self.name,
        )

    def _accept(self, answer: Answer, reason: str) -> Decision:
        return Decision("accept", reason, use=answer.seq, policy=self.name)

    def _second_opinion(self, view: StepView, first: Answer) -> Decision:
        option = view.option(first.card)
        conf = option.quality if option else 0.0
        strong = self._strongest(view, above=conf)
        peers = [
            o
            for o in self._ranked(view)
            if o.card not in view.asked()
            and self._voter(o, view)
            and (strong is None or o.card != strong.card)
        ]
        if self.verify and peers and strong is not None:
            peer = peers[0]
            # A check pays when the first answer may be wrong and a disagreement can be settled
            # by the strongest model: (1 - conf) x q_strong against the peer's price and the
            # escalation it would then trigger.
            gain = (1 - conf) * strong.quality
            price = self._price(peer, view) + (1 - conf) * self._price(strong, view)
            if conf < strong.quality - self.margin and gain > price:
                return Decision(
                    "ask_second",
                    f"{first.card} answered '{first.key}' (quality {conf:.3f}); checking it "
                    f"with {peer.card} is worth its price (gain {gain:.3f} > {price:.3f})",
                    candidate=peer.index,
                    policy=self.name,
                )
        if strong is not None and strong.quality - conf > max(
            self.margin, self._price(strong, view)
        ):
            return self._escalate(view, strong, f"{first.card}'s answer (quality {conf:.3f})")
        why = "no stronger model fits" if strong is None else "a check is not worth its price"
        return self._accept(first, f"{first.card} answered; {why}")

    def _strongest(self, view: StepView, *, above: float) -> Option | None:
        stronger = [
            o
            for o in view.options
            if o.fits
            and o.card not in view.asked()
            and o.quality > above
            and self._relevant(o, view)
        ]
        return max(stronger, key=lambda o: (o.quality, -o.index), default=None)

    def _escalate(self, view: StepView, top: Option, doubt: str) -> Decision:
        return Decision(
            "escalate",
            f"{doubt} is doubtful; escalating to the strongest model that fits, {top.card} "
            f"(quality {top.quality:.3f})",
            candidate=top.index,
            policy=self.name,
        )

    def posterior(self, view: StepView, ok: list[Answer]) -> dict[str, float]:
        """How likely each distinct answer is right.

        The models are treated as independent voters, each right with its quality and wrong
        alike over ``choices`` options.
        """
        keys = {a.key or f"#{a.seq}" for a in ok}
        weight = {}
        for key in keys:
            w = 1.0
            for a in ok:
                q = min(max(self._quality(view, a), 0.01), 0.99)
                w *= q if (a.key or f"#{a.seq}") == key else (1 - q) / (self.choices - 1)
            weight[key] = w
        total = sum(weight.values()) or 1.0
        return {k: w / total for k, w in weight.items()}

    def _aggregate(self, view: StepView, ok: list[Answer]) -> Decision:
        groups: dict[str, list[Answer]] = {}
        for answer in ok:
            groups.setdefault(answer.key or f"#{answer.seq}", []).append(answer)
        belief = self.posterior(view, ok)
        key = max(belief, key=lambda k: (belief[k], len(groups[k])))
        conf = belief[key]
        best = max(groups[key], key=lambda a: self._quality(view, a))
        if len(groups) == 1:
            return self._accept(
                best, f"all {len(ok)} answers agree on '{key}' ({best.card}'s kept)"
            )
        strong = self._strongest(view, above=conf)
        if strong is not None and strong.quality - conf > self._price(strong, view):
            keys = ", ".join(f"{a.card}: '{a.key}'" for a in ok)
            return self._escalate(view, strong, f"disagreement ({keys})")
        peers = [
            o for o in self._ranked(view) if o.card not in view.asked() and self._voter(o, view)
        ]
        if self.extra_votes and peers:
            # Too dear to escalate: another vote may still settle it, if it is cheap enough.
            peer = peers[0]
            gain = (1 - conf) * peer.quality / 2
            if gain > self._price(peer, view):
                return Decision(
                    "ask_second",
                    f"answers disagree (belief in '{key}' {conf:.2f}); escalating is not worth "
                    f"its price, another vote from {peer.card} is (gain {gain:.3f})",
                    candidate=peer.index,
                    policy=self.name,
                )
        size = len(groups[key])
        return self._accept(
            best,
            f"answers disagree; '{key}' is most likely right ({size} of {len(ok)} answers, "
            f"belief {conf:.2f}; {best.card}'s kept)",
        )

    def _quality(self, view: StepView, answer: Answer) -> float:
        option = view.option(answer.card)
        return option.quality if option else 0.0

    def _best_supported(self, view: StepView, ok: list[Answer]) -> Answer:
        support: dict[str, float] = {}
        for answer in ok:
            key = answer.key or f"#{answer.seq}"
            support[key] = support.get(key, 0.0) + self._quality(view, answer)
        return max(ok, key=lambda a: (support[a.key or f"#{a.seq}"], self._quality(view, a)))


# ----------------------------------------------------------------------------- registry

POLICIES: Registry[type] = Registry(
    "orchestrator.policies",
    UnknownPolicy,
    {
        "default": DefaultPolicy,
        "llm": "orchestrator.routing.llm:LLMPolicy",
        "learned": "orchestrator.routing.learned:LearnedPolicy",
    },
)
"""Router policy classes, built-in and from installed packages (group ``orchestrator.policies``)."""


def register_policy(name: str, policy: str | type) -> None:
    """Register a router policy class, or a lazy ``module:Class`` reference, under ``name``."""
    POLICIES.register(name, policy)


def policy_class(name: str) -> type:
    """The router policy class registered under ``name``, imported on first use."""
    return POLICIES.get(name)


def get_policy(name: str, **options: Any) -> RouterPolicy:
    """A new router policy of the kind registered under ``name``, built with ``options``."""
    entry = policy_class(name)
    try:
        policy: RouterPolicy = entry(**options)
    except TypeError as exc:
        raise UserError(f"router policy '{name}': bad options: {exc}") from exc
    return policy
