"""How a probe's answers are scored against its references (each score in 0..1).

Per case (one input, one reference):

- ``label``: the answer's label equals the reference exactly (case and surrounding punctuation
  aside): a label read from a text, a ``{"label": ...}`` record or a pipeline's nested list;
- ``keywords``: the answer names one of the case's words and none of the other cases' words
  (an answer that names everything is not an answer);
- ``count``: the answer lists exactly that many items (a detector's boxes);
- ``wer`` / ``cer``: 1 - word / character error rate against the reference transcript (OCR by
  characters, speech by words);
- ``summary``: word overlap (F1) with a reference summary times the length reduction (a summary
  as long as its input scores 0);
- ``translation``: word unigram and bigram F1 against a reference translation;
- ``speech``: the audio is transcribed back by the zoo's speech recogniser, then ``wer``;
- ``image_of``: the image is labelled by the zoo's image classifier, then ``keywords``.

A probe's score: for the discrete checks (label, keywords, count, image_of) the share of cases
right, corrected for chance (``(right - c) / (1 - c)``, where ``c`` is the share a constant
answer could get right: the largest group of cases with the same reference), so a tool that
always gives one answer scores 0; for the graded checks the mean over the cases, each case's
score less the best the same answer scores against the probe's other references (profile.py),
so an answer as close to another input's reference as to its own earns nothing. An embedding
probe (``pairs``) is scored by ranking: each text's nearest neighbour among all the probe's
texts must be its partner, again corrected for chance.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DISCRETE",
    "GRADED",
    "KINDS",
    "as_label",
    "as_text",
    "as_vector",
    "chance_corrected",
    "error_rate",
    "pair_ranking",
    "score_case",
]

DISCRETE = ("label", "keywords", "count", "image_of")
GRADED = ("wer", "cer", "summary", "translation", "speech")
KINDS = DISCRETE + GRADED
_TEXT_KEYS = ("generated_text", "summary_text", "translation_text", "text", "caption", "label")


def _first(value: Any) -> Any:
    while isinstance(value, list | tuple) and value:
        value = value[0]
    return value


def as_text(value: Any) -> str:
    """The text of an answer: a string, a pipeline record's text field, or the first of a list."""
    record = _first(value)
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for key in _TEXT_KEYS:
            if isinstance(record.get(key), str):
                return str(record[key])
        return ""
    if record is None or isinstance(record, list | tuple):  # nothing, or an empty list
        return ""
    return str(record)


def as_label(value: Any) -> str:
    """The label of an answer, normalised: lower case, no surrounding space or punctuation."""
    return as_text(value).strip().strip(".,;:!?\"'()[]").strip().lower()


def as_vector(value: Any) -> np.ndarray:
    """An embedding as one vector: token vectors (nested lists) are mean-pooled."""
    if isinstance(value, dict):
        value = next(iter(value.values()))
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0 or array.size == 0:
        raise ValueError("the answer is not a vector")
    return array.reshape(-1, array.shape[-1]).mean(axis=0)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Edit distance over the reference's length (word or character error rate)."""
    return _edits(reference, hypothesis) / max(len(reference), 1)


def _chars(text: str) -> list[str]:
    return list(" ".join(text.lower().split()))


def _f1(ref: Counter[Any], hyp: Counter[Any]) -> float:
    overlap = sum((ref & hyp).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _bigrams(tokens: list[str]) -> Counter[tuple[str, str]]:
    return Counter(zip(tokens, tokens[1:], strict=False))


def _summary(reference: dict[str, Any], answer: str, source: str) -> float:
    overlap = _f1(Counter(words(reference["reference"])), Counter(words(answer)))
    ratio = len(words(answer)) / max(len(words(source)), 1)
    most = float(reference.get("max_ratio", 0.5))
    reduction = 1.0 if ratio <= most else max(0.0, (1 - ratio) / (1 - most))
    return overlap * reduction


def _translation(reference: str, answer: str) -> float:
    ref, hyp = words(reference), words(answer)
    return (_f1(Counter(ref), Counter(hyp)) + _f1(_bigrams(ref), _bigrams(hyp))) / 2


def _keywords(wanted: Sequence[str], others: Sequence[str], text: str) -> float:
    said = " " + " ".join(words(text)) + " "

    def named(word: str) -> bool:
        return f" {' '.join(words(word))} " in said

    return float(any(named(w) for w in wanted) and not any(named(w) for w in others))


def _count(value: Any) -> int:
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), [])
    return len(value) if isinstance(value, list) else -1


def score_case(
    kind: str, expected: Any, answer: Any, *, source: str = "", others: Sequence[str] = ()
) -> float:
    """The score of one answer against the case's reference ``expected``.

    ``answer`` is the tool's primary output (for ``speech`` / ``image_of``: the text heard or the
    label seen); ``source`` is the case's input text (summaries); ``others`` the words of the
    probe's other cases (keywords, image_of).
    """
    if kind == "label":
        return float(as_label(answer) == str(expected).strip().lower())
    if kind in ("keywords", "image_of"):
        return _keywords([str(w) for w in expected], [str(w) for w in others], as_text(answer))
    if kind == "count":
        return float(_count(answer) == int(expected))
    if kind in ("wer", "speech"):
        return max(0.0, 1.0 - error_rate(words(str(expected)), words(as_text(answer))))
    if kind == "cer":
        return max(0.0, 1.0 - error_rate(_chars(str(expected)), _chars(as_text(answer))))
    if kind == "summary":
        return _summary(expected, as_text(answer), source)
    if kind == "translation":
        return _translation(str(expected), as_text(answer))
    raise ValueError(f"unknown check '{kind}'; use one of {', '.join(KINDS)}")


def chance_corrected(right: Sequence[float], expected: Sequence[Any]) -> float:
    """The share right over what a constant answer gets (see the module doc); one case: as is."""
    if len(right) <= 1:
        return float(right[0]) if right else 0.0
    groups = Counter(json.dumps(e, sort_keys=True, default=str) for e in expected)
    chance = max(groups.values()) / len(expected)
    if chance >= 1.0:
        return float(np.mean(right))
    return max(0.0, (float(np.mean(right)) - chance) / (1.0 - chance))


def pair_ranking(vectors: Sequence[np.ndarray]) -> float:
    """How well embeddings rank partners (texts 2i and 2i+1) nearest, corrected for chance.

    The share of texts whose strictly nearest text is its partner; a constant or random
    embedding scores about 0.
    """
    n = len(vectors)
    if n < 4:
        raise ValueError("an embedding probe needs at least two pairs")
    matrix = np.stack([v / (np.linalg.norm(v) or 1.0) for v in vectors])
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    hits = 0
    for i in range(n):
        partner = i ^ 1
        rivals = np.delete(sims[i], [i, partner])
        hits += bool(sims[i, partner] > rivals.max() + 1e-9)
    chance = 1 / (n - 1)
    return max(0.0, (hits / n - chance) / (1 - chance))
