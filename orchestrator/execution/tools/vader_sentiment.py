"""Sentiment polarity of English text with VADER (a rule-and-lexicon model)."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import text_input

__all__ = ["VaderSentiment", "load"]


class VaderSentiment:
    """Labels a text positive, negative or neutral from VADER's compound score."""

    def __init__(self, *, threshold: float = 0.05) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.threshold = threshold
        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Score the input ``text``: ``scores`` has neg, neu, pos (shares) and compound (-1..1)."""
        scores = self.analyzer.polarity_scores(text_input(inputs))
        compound = scores["compound"]
        if compound >= self.threshold:
            label = "positive"
        elif compound <= -self.threshold:
            label = "negative"
        else:
            label = "neutral"
        return {"label": label, "scores": {k: float(v) for k, v in scores.items()}}


def load(options: dict[str, Any]) -> VaderSentiment:
    """Build the tool; ``threshold`` (0.05) is the compound score that counts as polar."""
    return VaderSentiment(threshold=float(options.get("threshold", 0.05)))
