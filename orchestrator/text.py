"""Small text utilities shared by the planner and the selector: tokens and TF-IDF cosine."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

__all__ = ["TfidfIndex", "stem", "tokens"]

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


class TfidfIndex:
    """TF-IDF vectors of a fixed set of documents, queried by cosine similarity."""

    def __init__(self, documents: Iterable[str]) -> None:
        docs = [Counter(tokens(d)) for d in documents]
        n = len(docs)
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        self._idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
        self._vectors = [self._weigh(doc) for doc in docs]

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vector = {t: (1 + math.log(c)) * self._idf.get(t, 0.0) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {t: v / norm for t, v in vector.items() if v}

    def similarities(self, query: str) -> list[float]:
        """Cosine similarity of ``query`` to every document, in document order."""
        q = self._weigh(Counter(tokens(query)))
        return [sum(w * doc.get(t, 0.0) for t, w in q.items()) for doc in self._vectors]

    def matched_terms(self, query: str, index: int) -> list[str]:
        """Query terms that document ``index`` also has, strongest first."""
        doc = self._vectors[index]
        shared = {t for t in tokens(query) if t in doc}
        return sorted(shared, key=lambda t: -doc[t])
