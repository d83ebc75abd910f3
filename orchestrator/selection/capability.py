"""The evidence behind capability-instruction scoring, for a fixed set of cards.

A :class:`CardIndex` holds, for each card, its text (name, description, tags) and its profile
probes (instructions it was tested on, with the score it got). For an instruction it returns per
card: the description match, the probe evidence (similarity to the card's probes weighted by its
scores on them), and the task fit (a similarity-weighted vote of all cards and probes for each
task type). Similarity is TF-IDF cosine; with an embedder it is also MiniLM cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orchestrator.cards import ToolCard
from orchestrator.embed import EmbeddingCache
from orchestrator.text import LexicalIndex, tokens

if TYPE_CHECKING:
    from orchestrator.selection.learn import SelectionModel

__all__ = ["CardIndex", "InstructionScores", "card_text"]

VOTE_TEMPERATURE = 0.1
PROBE_TEMPERATURE = 0.05


def card_text(card: ToolCard) -> str:
    """The text a card is matched on: name words, description, tags."""
    return " ".join([card.name.replace("-", " "), card.description, " ".join(card.tags)])


@dataclass
class InstructionScores:
    """Per-card evidence for one instruction, each array in card order, values in 0..1."""

    description: np.ndarray
    evidence: np.ndarray
    profiled: np.ndarray  # bool: the card has probes
    task_fit: np.ndarray
    query_terms: list[str]
    dense: np.ndarray | None = None  # embedding cosine to each card's text (None: no embedder)
    lexical: np.ndarray | None = None  # TF-IDF cosine to each card's text
    query_vector: np.ndarray | None = None
    task_vote: np.ndarray | None = None  # the similarity vote for each card's task
    # Per card: its measured score on the probes nearest the instruction (0 when unprofiled).
    measured: np.ndarray | None = None


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` in one thread: multi-threaded BLAS stalls on a busy machine."""
    return np.einsum("ij,j->i", matrix, vector)


class CardIndex:
    """Texts, probes and (optionally) embeddings of a fixed list of cards."""

    def __init__(self, cards: Sequence[ToolCard], cache: EmbeddingCache | None = None) -> None:
        self.cards = list(cards)
        self.cache = cache
        self.tasks = sorted({c.task for c in self.cards})
        task_ids = {t: i for i, t in enumerate(self.tasks)}
        self.card_task = np.array([task_ids[c.task] for c in self.cards], dtype=np.int64)
        probe_rows, probe_texts, probe_scores = [], [], []
        for row, card in enumerate(self.cards):
            for probe in card.profile.probes if card.profile else []:
                probe_rows.append(row)
                probe_texts.append(probe.instruction)
                probe_scores.append(probe.score)
        self.probe_texts: list[str] = probe_texts
        self.probe_row = np.array(probe_rows, dtype=np.int64)
        self.probe_score = np.array(probe_scores, dtype=np.float32)
        self.profiled = np.zeros(len(self.cards), dtype=bool)
        self.profiled[self.probe_row] = True
        starts = np.flatnonzero(np.r_[True, np.diff(self.probe_row) != 0]) if probe_rows else []
        self.run_starts = np.asarray(starts, dtype=np.int64)
        self.run_rows = self.probe_row[self.run_starts] if probe_rows else self.probe_row
        texts = [card_text(c) for c in self.cards]
        self.texts = texts
        self.tfidf = LexicalIndex((tokens(t) for t in texts), dtype=np.float32)
        self.probe_tfidf = (
            LexicalIndex((tokens(t) for t in probe_texts), dtype=np.float32)
            if probe_texts
            else None
        )
        self.static_parts: tuple[np.ndarray, np.ndarray] | None = None  # set by the scorer
        self.learned: SelectionModel | None = None  # set by the scorer when it learns
        self.card_vecs: np.ndarray | None = None
        self.probe_vecs: np.ndarray | None = None
        if cache is not None:
            self.card_vecs = cache.vectors(texts)
            self.probe_vecs = cache.vectors(probe_texts)

    def probe_similarity(self, query: np.ndarray | None, terms: list[str]) -> np.ndarray:
        """Similarity of an instruction to every probe (TF-IDF, averaged with embeddings)."""
        probe_lex = (
            self.probe_tfidf.similarities(terms)
            if self.probe_tfidf is not None
            else np.zeros(0, dtype=np.float32)
        )
        if query is None or self.probe_vecs is None or not len(self.probe_vecs):
            return probe_lex
        probe_dense = _matvec(self.probe_vecs, query)
        return np.clip(0.5 * probe_dense + 0.5 * probe_lex, 0, 1).astype(np.float32)

    def evidence(self, probe_sim: np.ndarray) -> np.ndarray:
        """Per-card probe evidence: closeness of the nearest probe times the scores near it."""
        best, trust = self.measured(probe_sim)
        return (best * trust).astype(np.float32)

    def measured(self, probe_sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per card: the closeness of its nearest probe, and its scores near it (the trust).

        The trust is the card's measured quality for this instruction: the mean of its probe
        scores weighted towards the probes most like the instruction.
        """
        n = len(self.cards)
        if not len(probe_sim):
            return np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        # Applicability: the closest probe; trust: the scores of the probes near it.
        # Probes are stored card by card, so each card's probes are one contiguous run.
        best = np.zeros(n, dtype=np.float32)
        best[self.run_rows] = np.maximum.reduceat(probe_sim, self.run_starts)
        weights = np.exp((probe_sim - best[self.probe_row]) / PROBE_TEMPERATURE)
        total = np.bincount(self.probe_row, weights=weights, minlength=n)
        scored = np.bincount(self.probe_row, weights=weights * self.probe_score, minlength=n)
        trust = np.divide(scored, total, out=np.zeros(n), where=total > 0)
        return best, trust

    def scores(self, instruction: str) -> InstructionScores:
        """Per-card description match, probe evidence and task fit for ``instruction``."""
        terms = tokens(instruction)
        lexical = self.tfidf.similarities(terms)
        query = dense = None
        if self.cache is not None and self.card_vecs is not None:
            query = self.cache.query_vector(instruction)
            dense = np.clip(_matvec(self.card_vecs, query), 0, 1)
        probe_sim = self.probe_similarity(query, terms)
        card_sim = lexical if dense is None else dense
        description = lexical if dense is None else np.clip(0.5 * dense + 0.5 * lexical, 0, 1)
        vote = self.task_vote(card_sim, probe_sim)
        closeness, trust = self.measured(probe_sim)
        return InstructionScores(
            description,
            (closeness * trust).astype(np.float32),
            self.profiled,
            vote,
            terms,
            dense=dense,
            lexical=lexical,
            query_vector=query,
            task_vote=vote,
            measured=trust,
        )

    def task_vote(self, card_sim: np.ndarray, probe_sim: np.ndarray) -> np.ndarray:
        """P(task | instruction) by a similarity-weighted vote of cards and passed probes.

        Per card (its task's share of the vote). A probe with similarity below zero (masked out)
        has no say.
        """
        if len(self.tasks) == 1:
            return np.ones(len(self.cards), dtype=np.float32)
        sims = np.concatenate([card_sim, probe_sim])
        labels = np.concatenate([self.card_task, self.card_task[self.probe_row]])
        trust = np.concatenate([np.ones(len(card_sim)), self.probe_score])
        weights = trust * np.exp((sims - sims.max()) / VOTE_TEMPERATURE)
        votes = np.bincount(labels, weights=weights, minlength=len(self.tasks))
        votes /= votes.sum() or 1.0
        return votes[self.card_task].astype(np.float32)

    def matched_terms(self, terms: list[str], row: int) -> list[str]:
        """Instruction terms that card ``row``'s text also has, strongest first."""
        return self.tfidf.matched_terms(terms, row)
