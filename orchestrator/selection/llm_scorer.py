"""A second :class:`~.rank.Scorer`: an LLM reads "capability text + instruction".

This is Model-SAT's form: each candidate is described by its capability text (its description
and its measured results on the probes of its profile), the instruction follows, and the LLM
answers how well the model will do on it, as a number from 0 to 10. The LLM is any chat model
behind an OpenAI-compatible endpoint, reached with the openai SDK (for example the project's own
``orchestrator.server.single_model`` serving a local card).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.errors import BudgetExceeded, CallTimedOut, ConfigError
from orchestrator.llm import LlmClient
from orchestrator.plan import Subtask
from orchestrator.selection.rank import CapabilityScorer, ScoreParts, _cheapness
from orchestrator.utility import estimated_quality

__all__ = ["LLMScorer", "capability_text"]

_NUMBER = re.compile(r"\b(10|[0-9](?:\.[0-9]+)?)\b")


def capability_text(card: ToolCard, max_probes: int = 6) -> str:
    """The card's capability as text: what it does and how it scored on its probes."""
    lines = [f"Model: {card.name} (task: {card.task})", f"Description: {card.description}"]
    if card.profile and card.profile.probes:
        lines.append("Measured results on test instructions (score 0-1):")
        lines += [f"- {p.instruction}: {p.score:.2f}" for p in card.profile.probes[:max_probes]]
    return "\n".join(lines)


@dataclass
class LLMScorer:
    """Scores each candidate by asking an LLM; 0..10 answers become 0..1 relevance."""

    model: str
    base_url: str | None = None
    api_key: str = "not-needed"
    max_tokens: int = 8
    timeout_s: float = 120.0
    w_llm: float = 0.9
    w_cost: float = 0.1
    cost_scale: Decimal = Decimal("0.001")
    usd_per_call: Decimal = Decimal(0)  # the rating model's price, paid from the run's budget
    usd_per_1k_tokens: Decimal = Decimal(0)
    replies: list[str] = field(default_factory=list, repr=False)
    _llm: LlmClient | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Any) -> LLMScorer:
        """A scorer asking the ``[llm]`` endpoint of an orchestrator ``Config``."""
        llm = config.llm
        if not llm.configured:
            raise ConfigError(
                "scorer = 'llm' needs an LLM endpoint: set [llm] base_url (or "
                "$ORCHESTRATOR_LLM_BASE_URL)"
            )
        return cls(
            model=llm.model,
            base_url=llm.base_url,
            api_key=llm.api_key() or "not-needed",
            timeout_s=llm.timeout_s,
            usd_per_call=llm.usd_per_call,
            usd_per_1k_tokens=llm.usd_per_1k_tokens,
        )

    def _chat(self, prompt: str) -> str:
        """One rating call; inside a run it is reserved on and settled with the run's budget."""
        if self._llm is None:
            self._llm = LlmClient(
                self.base_url,
                self.model,
                self.api_key,
                timeout_s=self.timeout_s,
                caller="LLM scorer",
            )
        messages = [
            {
                "role": "system",
                "content": "You rate how well a model suits a task. "
                "Reply with one number from 0 to 10.",
            },
            {"role": "user", "content": prompt},
        ]
        reply = self._llm.paid(
            messages, max_tokens=self.max_tokens, usd_of=self._usd, temperature=0
        )
        return reply.text

    def _usd(self, tokens: int) -> Decimal:
        return Decimal(self.usd_per_call) + Decimal(self.usd_per_1k_tokens) * tokens / 1000

    def rate(self, card: ToolCard, instruction: str) -> tuple[float, str]:
        """The LLM's 0..1 rating of ``card`` for ``instruction`` and its raw reply."""
        prompt = (
            f"{capability_text(card)}\n\nInstruction: {instruction}\n\n"
            "How well will this model do on the instruction? Answer with a number from 0 to 10."
        )
        reply = self._chat(prompt)
        self.replies.append(reply)
        found = _NUMBER.search(reply)
        return (min(float(found.group(1)), 10.0) / 10.0 if found else 0.0), reply

    def score(self, subtask: Subtask, cards: list[ToolCard]) -> list[ScoreParts]:
        """One LLM call per candidate; a reply without a number rates 0.

        When a call cannot be made within the run's budget (it does not fit, or the time for it
        ran out) every card is scored by the default :class:`CapabilityScorer` instead, and each
        card's ``matched`` says so.
        """
        parts = []
        for card in cards:
            try:
                rating, reply = self.rate(card, subtask.instruction)
            except (BudgetExceeded, CallTimedOut) as exc:
                return _without_llm(subtask, cards, f"llm not asked: {exc}")
            cheap = _cheapness(card, self.cost_scale)
            parts.append(
                ScoreParts(
                    relevance=rating,
                    quality=estimated_quality(_measured_mean(card), card.strength),
                    cost=cheap,
                    total=self.w_llm * rating + self.w_cost * cheap,
                    matched=(f"llm: {reply.strip()[:40]}",),
                    evidence=None,
                    measured=_measured_mean(card) is not None,
                )
            )
        return parts


def _without_llm(subtask: Subtask, cards: list[ToolCard], why: str) -> list[ScoreParts]:
    """The default scorer's parts for ``cards``, each noting why the LLM was not asked."""
    parts = CapabilityScorer().score(subtask, cards)
    return [replace(p, matched=(why[:120],)) for p in parts]


def _measured_mean(card: ToolCard) -> float | None:
    """The card's mean probe score, or None when it was never profiled."""
    return card.profile.mean_score if card.profile and card.profile.probes else None
