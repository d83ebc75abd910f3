"""A second :class:`~orchestrator.select.Scorer`: an LLM reads "capability text + instruction".

This is Model-SAT's form: each candidate is described by its capability text (its description
and its measured results on the probes of its profile), the instruction follows, and the LLM
answers how well the model will do on it, as a number from 0 to 10. The LLM is any chat model
behind an OpenAI-compatible endpoint, reached with the openai SDK (for example the project's own
``orchestrator.llm_server`` serving a local card).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.plan import Subtask
from orchestrator.select import ScoreParts, _cheapness, _quality

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
    replies: list[str] = field(default_factory=list, repr=False)
    _client: Any = field(default=None, repr=False)

    def _chat(self, prompt: str) -> str:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=0
            )
        response = self._client.chat.completions.create(
            model=self.model,
            messages=[
                {
                    "role": "system",
                    "content": "You rate how well a model suits a task. "
                    "Reply with one number from 0 to 10.",
                },
                {"role": "user", "content": prompt},
            ],
            max_tokens=self.max_tokens,
            temperature=0,
        )
        return response.choices[0].message.content or ""

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
        """One LLM call per candidate; a reply without a number rates 0."""
        parts = []
        for card in cards:
            rating, reply = self.rate(card, subtask.instruction)
            cheap = _cheapness(card, self.cost_scale)
            parts.append(
                ScoreParts(
                    relevance=rating,
                    quality=_quality(card),
                    cost=cheap,
                    total=self.w_llm * rating + self.w_cost * cheap,
                    matched=(f"llm: {reply.strip()[:40]}",),
                    evidence=None,
                )
            )
        return parts
