"""The embedding cache and index: incremental, on disk, numpy search."""

from __future__ import annotations

import numpy as np

from orchestrator.config import cache_dir
from orchestrator.embed import EmbeddingCache, EmbeddingIndex, HashingEmbedder


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen.extend(texts)
        return super().embed(texts)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_only_new_or_changed_texts_are_embedded_and_the_cache_persists(tmp_path):
    db = tmp_path / "e.sqlite"
    first = CountingEmbedder()
    cache = EmbeddingCache(first, db)
    texts = ["transcribe speech to text", "detect faces in a photo", "translate french"]
    before = cache.vectors(texts)
    assert first.seen == texts and before.shape == (3, 384)
    # A new process (new cache object) with one text edited: only that one is embedded.
    second = CountingEmbedder()
    again = EmbeddingCache(second, db).vectors([texts[0], "detect faces in an image", texts[2]])
    assert second.seen == ["detect faces in an image"]
    assert np.allclose(again[0], before[0]) and np.allclose(again[2], before[2])
    assert not np.allclose(again[1], before[1])


def test_index_search_ranks_the_closest_first(tmp_path):
    cache = EmbeddingCache(HashingEmbedder(), tmp_path / "e.sqlite")
    docs = {
        "asr": "transcribe speech audio",
        "ocr": "read printed text in an image",
        "tts": "speak text aloud",
    }
    index = EmbeddingIndex.build(list(docs), list(docs.values()), cache)
    hits = index.search(cache.query_vector("read the printed text of this image"), k=2)
    assert hits[0][0] == "ocr" and len(hits) == 2 and hits[0][1] > hits[1][1]
    assert abs(float(np.linalg.norm(index.matrix[0])) - 1.0) < 1e-5


def test_minilm_embedder_is_not_loaded_until_used():
    from orchestrator.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    assert embedder._model is None
    assert embedder.embed([]).shape == (0, 384)
    assert embedder._model is None
