"""Text utilities shared by the planners, the selector and the evals: tokens, one lexical index."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["LexicalIndex", "stem", "tokens"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    """a an the and or of to in on at for from by with into onto is are was were be been being it
    its this that these those me my i you your we our us he she they them their what which who whom
    whose how do does did can could would should will shall may might must please tell give let
    then also just some any all there here as if so than too very about s t d ll re ve m""".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    """A light suffix-stripping stem: 'transcribes', 'transcribed' -> 'transcrib'."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed word tokens."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


class LexicalIndex:
    """Term statistics of a fixed list of documents, each given as its terms.

    Scored two ways: :meth:`similarities` is TF-IDF cosine (sub-linear term frequency, smoothed
    idf), :meth:`bm25` is Okapi BM25. ``dtype`` is the float type the weights are kept in (the
    selector keeps float32).
    """

    def __init__(
        self, documents: Iterable[Sequence[str]], dtype: type[np.floating] = np.float64
    ) -> None:
        docs = [Counter(doc) for doc in documents]
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        self.size = n = len(docs)
        self.vocabulary = {term: j for j, term in enumerate(df)}
        self._df = [df[t] for t in self.vocabulary]
        self._idf = np.array([math.log((1 + n) / (1 + c)) + 1.0 for c in self._df], dtype=dtype)
        self._lengths = np.array([sum(doc.values()) for doc in docs], dtype=float)
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        weights: list[float] = []
        for r, doc in enumerate(docs):
            unit = self._unit(doc)
            for term, count in doc.items():
                j = self.vocabulary[term]
                rows.append(r)
                cols.append(j)
                counts.append(count)
                weights.append(unit[j])
        row_ids = np.array(rows, dtype=np.int64)
        col_ids = np.array(cols, dtype=np.int64)
        data = np.array(weights, dtype=dtype)
        # By document (added in order): its terms and their weights.
        self._row_ptr = np.r_[0, np.cumsum(np.bincount(row_ids, minlength=n))]
        self._row_cols, self._row_data = col_ids, data
        # By term: the documents that have it, its weight and count in each.
        order = np.argsort(col_ids, kind="stable")
        self._col_ptr = np.r_[0, np.cumsum(np.bincount(col_ids, minlength=len(self._df)))]
        self._col_rows, self._col_data = row_ids[order], data[order]
        self._col_counts = np.array(counts, dtype=float)[order]

    def idf(self, term: str) -> float:
        """The term's smoothed inverse document frequency (a term no document has: the most)."""
        j = self.vocabulary.get(term)
        if j is None:
            return math.log(1 + self.size) + 1.0
        return float(self._idf[j])

    def _unit(self, counts: Counter[str]) -> dict[int, float]:
        """The unit-length TF-IDF vector of term counts (terms not indexed left out)."""
        vector = {
            self.vocabulary[t]: (1 + math.log(c)) * float(self._idf[self.vocabulary[t]])
            for t, c in counts.items()
            if t in self.vocabulary
        }
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {j: v / norm for j, v in vector.items()}

    def _postings(self, j: int) -> slice:
        return slice(self._col_ptr[j], self._col_ptr[j + 1])

    def similarities(self, terms: Sequence[str]) -> np.ndarray:
        """TF-IDF cosine of the query's terms to every document, in document order."""
        out = np.zeros(self.size, dtype=self._idf.dtype)
        for j, weight in self._unit(Counter(terms)).items():
            at = self._postings(j)
            out[self._col_rows[at]] += weight * self._col_data[at]
        return out

    def shared(self, terms: Sequence[str]) -> dict[int, float]:
        """TF-IDF cosine of the query to each document sharing a term with it."""
        sims = self.similarities(terms)
        return {int(i): float(sims[i]) for i in np.flatnonzero(sims)}

    def bm25(self, terms: Sequence[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
        """Okapi BM25 score of the query's terms (each counted once) for every document."""
        n = self.size
        average = self._lengths.mean() if n else 1.0
        out = np.zeros(n)
        for term in dict.fromkeys(terms):
            j = self.vocabulary.get(term)
            if j is None:
                continue
            idf = math.log(1 + (n - self._df[j] + 0.5) / (self._df[j] + 0.5))
            at = self._postings(j)
            rows, tf = self._col_rows[at], self._col_counts[at]
            norm = 1 - b + b * self._lengths[rows] / average
            out[rows] += idf * tf * (k1 + 1) / (tf + k1 * norm)
        return out

    def matched_terms(self, terms: Sequence[str], row: int) -> list[str]:
        """Query terms that document ``row`` also has, strongest first."""
        at = slice(self._row_ptr[row], self._row_ptr[row + 1])
        weights = dict(zip(self._row_cols[at].tolist(), self._row_data[at], strict=True))
        shared = {t for t in terms if self.vocabulary.get(t, -1) in weights}
        return sorted(shared, key=lambda t: -weights[self.vocabulary[t]])
