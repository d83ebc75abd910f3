"""The one lexical index: TF-IDF cosine, BM25 and term matching over the same statistics."""

import math

import numpy as np
import pytest

from orchestrator.text import LexicalIndex, tokens

DOCS = [
    ["speech", "transcrib", "speech"],
    ["imag", "object", "detect"],
    ["imag", "caption"],
]


def test_a_document_is_most_similar_to_itself_and_unrelated_ones_score_zero():
    index = LexicalIndex(DOCS)
    sims = index.similarities(["imag", "caption"])
    assert sims[2] == pytest.approx(1.0)
    assert sims[0] == 0.0
    assert 0.0 < sims[1] < sims[2]


def test_tfidf_weights_are_sublinear_counts_times_smoothed_idf():
    index = LexicalIndex(DOCS)
    n = len(DOCS)
    speech = (1 + math.log(2)) * (math.log((1 + n) / 2) + 1)
    transcribe = math.log((1 + n) / 2) + 1
    expected = speech / math.hypot(speech, transcribe)
    assert index.similarities(["speech"])[0] == pytest.approx(expected)


def test_idf_of_an_unknown_term_is_the_largest():
    index = LexicalIndex(DOCS)
    assert index.idf("imag") < index.idf("caption") < index.idf("never-seen")
    assert index.idf("never-seen") == pytest.approx(math.log(1 + len(DOCS)) + 1)


def test_shared_lists_only_documents_with_a_common_term():
    shared = LexicalIndex(DOCS).shared(["imag", "zebra"])
    assert sorted(shared) == [1, 2] and all(v > 0 for v in shared.values())


def test_float32_index_keeps_float32_and_agrees_with_float64():
    query = ["imag", "detect"]
    wide = LexicalIndex(DOCS).similarities(query)
    narrow = LexicalIndex(DOCS, dtype=np.float32).similarities(query)
    assert narrow.dtype == np.float32 and wide.dtype == np.float64
    assert np.allclose(narrow, wide, atol=1e-6)


def test_bm25_matches_the_okapi_formula():
    index = LexicalIndex(DOCS)
    k1, b = 1.5, 0.75
    average = (3 + 3 + 2) / 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    expected = idf * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / average))
    scores = index.bm25(["imag", "imag"], k1, b)  # a repeated query term counts once
    assert scores[2] == pytest.approx(expected)
    assert scores[0] == 0.0 and scores[1] < scores[2]  # the longer document scores lower


def test_matched_terms_are_the_shared_ones_strongest_first():
    index = LexicalIndex([tokens("detect objects in images"), tokens("images")] * 2)
    assert index.matched_terms(tokens("detect the images of a cat"), 0) == ["detect", "imag"]


def test_an_empty_index_scores_nothing():
    index = LexicalIndex([])
    assert index.similarities(["x"]).shape == (0,) and index.bm25(["x"]).shape == (0,)
