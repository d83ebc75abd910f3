"""Learned parts of selection, fitted per zoo from the zoo's own data.

A :class:`SelectionModel` has two parts, both learned from what a zoo carries and nothing else:

- a **task classifier** (softmax regression over instruction embeddings): P(task | instruction),
  trained on every card's own text labelled with the card's task, plus every passed profile
  probe labelled with its card's task (a probe is an instruction the card was shown to serve);
- a **pair ranker** (a conditional logit over per-(instruction, card) features: task
  probability, similarity vote, embedding cosine, TF-IDF cosine, probe evidence), trained on the
  passed probes as instructions whose right card is known. Its training features are computed
  out of fold: the task probabilities and probe evidence of an example come from the other folds'
  probes only, so the ranker learns how far to trust them on instructions it has not seen.

The same code fits any zoo (Hugging Face, TorchHub, TF Hub lists, the built-in cards), but the
learned ranker must earn its place on each zoo: it ranks (``learned_share`` 1) only where it
ranks the zoo's own passed probes better than the plain embedding order (share 0) when it is
fitted on the other folds of them (cross-validation: top-1 + top-5 + task@1; ties go to the
embedding order). A zoo where the learned
ranker does not beat the embedding order, or without (enough) passed probes to tell, ranks by
the embedding order alone. The
model is saved next to the embedding cache under a digest of everything it was fitted on, so a
zoo is fitted once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrator.text import tokens

if TYPE_CHECKING:
    from orchestrator.selection.capability import CardIndex

__all__ = [
    "FEATURES",
    "SelectionModel",
    "fit_listwise",
    "fit_selection_model",
    "fit_softmax",
    "model_digest",
    "pair_features",
]

FEATURES = ("log_task", "task", "vote", "dense", "lexical", "evidence")
# Ranker weights used until probes teach better ones.
DEFAULT_RANK_WEIGHTS = np.array([0.5, 2.0, 1.0, 4.0, 4.0, 3.0])
MODEL_VERSION = "6"
# The learned ranker's shares tried against the embedding order. Blends were tried: on the
# Gorilla folds they differed from the learned ranker by less than the noise of ~250 probes
# and lowered domain@1 by 0.02, so the choice is the one or the other.
SHARES = (0.0, 1.0)
BASE_SCALE = 10.0  # the embedding cosine's weight in the embedding-order ranker
CV_FOLDS = 4
MIN_RANK_EXAMPLES = 20  # fewer passed probes than this: keep the default ranker weights
MAX_NEGATIVES = 1000  # ranker rows per example beyond its own card (a larger zoo: a sample)
PASS_SCORE = 0.5


def pair_features(
    task_prob: np.ndarray,
    task_vote: np.ndarray,
    dense: np.ndarray,
    lexical: np.ndarray,
    evidence: np.ndarray,
) -> np.ndarray:
    """Rows of ranker features for cards (columns as in ``FEATURES``), each input per card."""
    columns = [np.log(task_prob + 1e-6), task_prob, task_vote, dense, lexical, evidence]
    return np.stack(columns, axis=1).astype(np.float32)


def fit_softmax(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    weights: np.ndarray | None = None,
    l2: float = 1e-4,
    iters: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by Nesterov-accelerated gradient descent.

    Returns (W, b) with ``x @ W + b`` the class logits. Rows of ``x`` should be about unit
    length (embeddings are), which makes the fixed step size safe.
    """
    n, d = x.shape
    w8 = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w8 = w8 / w8.sum()
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    xb = np.hstack([x.astype(np.float32), np.ones((n, 1), dtype=np.float32)])
    onehot = onehot.astype(np.float32)
    w8 = w8.astype(np.float32)
    scale = float(np.max(np.sum(xb * xb, axis=1)))
    step = 1.0 / (0.5 * scale + l2)
    theta = np.zeros((d + 1, n_classes), dtype=np.float32)
    ahead = theta.copy()
    momentum = 1.0
    for _ in range(iters):
        logits = xb @ ahead
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        grad = xb.T @ ((probs - onehot) * w8[:, None]) + l2 * ahead
        new_theta = ahead - step * grad
        new_momentum = (1 + (1 + 4 * momentum * momentum) ** 0.5) / 2
        ahead = new_theta + ((momentum - 1) / new_momentum) * (new_theta - theta)
        theta, momentum = new_theta, new_momentum
    return theta[:-1].astype(np.float32), theta[-1].astype(np.float32)


def fit_listwise(
    x: np.ndarray,
    group: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray | None = None,
    l2: float = 1e-2,
    iters: int = 30,
) -> np.ndarray:
    """Conditional logit (softmax over each group's rows, one right row per group) by Newton.

    Learns weights ``w`` so that, within each group (one instruction's candidate cards), the
    right card has the largest ``x @ w``. Returns ``w``; a bias would cancel within a group.
    The ridge pulls ``w`` towards ``prior`` (default zero), so weights the examples say little
    about stay near it. Each Newton step is halved until the loss goes down (plain Newton can
    overshoot).
    """
    x = x.astype(np.float64)
    groups = int(group.max()) + 1
    d = x.shape[1]
    ridge = l2 * groups
    w0 = np.zeros(d) if prior is None else np.asarray(prior, dtype=np.float64)

    def loss_and_probs(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        top = np.full(groups, -np.inf)
        np.maximum.at(top, group, z)
        e = np.exp(z - top[group])
        total = np.bincount(group, weights=e, minlength=groups)
        loss = float(np.sum(np.log(total) + top) - z[y > 0].sum())
        loss += 0.5 * ridge * float((w - w0) @ (w - w0))
        return loss, e / total[group]

    w = w0.copy()
    loss, p = loss_and_probs(w)
    for _ in range(iters):
        mean = np.stack(
            [np.bincount(group, weights=p * x[:, k], minlength=groups) for k in range(d)], axis=1
        )
        centred = x - mean[group]
        grad = -(centred * y[:, None]).sum(axis=0) + ridge * (w - w0)
        hess = (centred * p[:, None]).T @ centred + ridge * np.eye(d)
        delta = np.linalg.solve(hess, grad)
        step = 1.0
        while step > 1e-4:
            new_loss, new_p = loss_and_probs(w - step * delta)
            if new_loss <= loss:
                break
            step /= 2
        else:
            break  # no step lowers the loss: converged
        w, loss, p = w - step * delta, new_loss, new_p
        if float(np.abs(step * delta).max()) < 1e-6:
            break
    return w


@dataclass
class SelectionModel:
    """A fitted task classifier and pair ranker for one zoo (one set of cards and probes)."""

    tasks: tuple[str, ...]
    embedder: str
    task_weights: np.ndarray  # (dim, tasks)
    task_bias: np.ndarray  # (tasks,)
    rank_weights: np.ndarray  # (len(FEATURES),)
    rank_bias: float
    rank_examples: int  # passed probes the ranker learned from (0: default weights)
    digest: str = ""
    learned_share: float = 0.0  # the learned ranker's share against the embedding order
    validation: dict[str, dict[str, float]] | None = None  # held-out figures per share

    def task_probs(self, query: np.ndarray) -> np.ndarray:
        """P(task | instruction) for a unit query vector, in ``tasks`` order."""
        logits = query.astype(np.float32) @ self.task_weights + self.task_bias
        logits = logits - logits.max()
        probs = np.exp(logits)
        return probs / probs.sum()

    def rank_logits(self, features: np.ndarray) -> np.ndarray:
        """Ranker logits for rows of per-card features (columns as in ``FEATURES``)."""
        return features @ self.rank_weights.astype(np.float32) + np.float32(self.rank_bias)

    def describe(self) -> dict[str, object]:
        """What the model learned, for reports: ranker weights by feature name."""
        return {
            "tasks": len(self.tasks),
            "rank_examples": self.rank_examples,
            "learned_share": self.learned_share,
            "validation": self.validation,
            "rank_weights": {
                f: round(float(w), 3) for f, w in zip(FEATURES, self.rank_weights, strict=True)
            },
        }

    def save(self, path: Path) -> None:
        """Write the model as one .npz file (arrays plus a JSON header)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "version": MODEL_VERSION,
            "tasks": list(self.tasks),
            "embedder": self.embedder,
            "rank_bias": self.rank_bias,
            "rank_examples": self.rank_examples,
            "digest": self.digest,
            "learned_share": self.learned_share,
            "validation": self.validation,
        }
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            header=np.array(json.dumps(header)),
            task_weights=self.task_weights,
            task_bias=self.task_bias,
            rank_weights=self.rank_weights,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> SelectionModel | None:
        """The model saved at ``path``; None when there is none of this version (or unreadable)."""
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                header = json.loads(str(data["header"]))
                if header.get("version") != MODEL_VERSION:
                    return None
                return cls(
                    tasks=tuple(header["tasks"]),
                    embedder=header["embedder"],
                    task_weights=data["task_weights"],
                    task_bias=data["task_bias"],
                    rank_weights=data["rank_weights"],
                    rank_bias=float(header["rank_bias"]),
                    rank_examples=int(header["rank_examples"]),
                    digest=header["digest"],
                    learned_share=float(header["learned_share"]),
                    validation=header["validation"],
                )
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None  # a damaged or foreign file: the caller fits the model again


def model_digest(embedder: str, card_texts: Sequence[str], index: CardIndex) -> str:
    """A digest of everything a model is fitted on: embedder, card texts and tasks, probes."""
    h = hashlib.sha256(f"{MODEL_VERSION}\x00{embedder}".encode())
    for text, card in zip(card_texts, index.cards, strict=True):
        h.update(f"\x01{card.task}\x00{text}".encode())
    for text, row, score in zip(index.probe_texts, index.probe_row, index.probe_score, strict=True):
        h.update(f"\x02{int(row)}\x00{float(score):.4f}\x00{text}".encode())
    return h.hexdigest()[:24]


def _card_examples(index: CardIndex) -> tuple[np.ndarray, np.ndarray]:
    """Labelled vectors from the cards alone: each card's whole text and its description alone.

    The description read on its own is the closest thing a card has to a user's request
    (a pseudo-instruction); it needs no data beyond the card.
    """
    assert index.card_vecs is not None and index.cache is not None
    described = [i for i, c in enumerate(index.cards) if c.description != index.texts[i]]
    extra = index.cache.vectors([index.cards[i].description for i in described])
    x = np.vstack([index.card_vecs, extra])
    y = np.concatenate([index.card_task, index.card_task[np.array(described, dtype=np.int64)]])
    return x, y


def _fit_tasks(
    index: CardIndex, probe_mask: np.ndarray, cards: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The task classifier from the card examples and the passed probes in ``probe_mask``."""
    assert index.probe_vecs is not None
    keep = probe_mask & (index.probe_score >= PASS_SCORE)
    x = np.vstack([cards[0], index.probe_vecs[keep]])
    y = np.concatenate([cards[1], index.card_task[index.probe_row[keep]]])
    w = np.concatenate([np.ones(len(cards[1])), index.probe_score[keep].astype(np.float64)])
    return fit_softmax(x, y, len(index.tasks), w)


def _rows_for(n: int, gold: int, rng: np.random.Generator) -> np.ndarray:
    """The card rows one example trains the ranker on: its card and the others (or a sample).

    Negatives are all cards, or a uniform sample in a large zoo: choosing them by closeness
    would teach the ranker that closeness predicts a wrong card.
    """
    if n <= MAX_NEGATIVES + 1:
        return np.arange(n)
    return np.unique(np.r_[rng.choice(n, MAX_NEGATIVES, replace=False), gold])


def _rank_rows(
    index: CardIndex,
    examples: np.ndarray,
    fold_of: np.ndarray,
    folds: int,
    rng: np.random.Generator,
    card_examples: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold ranker rows: features, example (group), label, same task as the right card."""
    assert index.card_vecs is not None and index.probe_vecs is not None
    xs, ys, gs, same = [], [], [], []
    for fold in range(folds):
        held = examples[fold_of[examples] == fold]
        if not len(held):
            continue
        others = fold_of != fold
        weights, bias = _fit_tasks(index, others, card_examples)
        for j in held:
            query = index.probe_vecs[j]
            text = index.probe_texts[j]
            terms = tokens(text)
            gold = int(index.probe_row[j])
            dense_all = np.clip(index.card_vecs @ query, 0, 1)
            lexical_all = index.tfidf.similarities(terms)
            cards = _rows_for(len(index.cards), gold, rng)
            logits = query @ weights + bias
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            probe_sim = index.probe_similarity(query, terms)
            vote = index.task_vote(dense_all, np.where(others, probe_sim, -1.0))
            probe_sim = np.where(others, probe_sim, 0.0).astype(np.float32)
            evidence = index.evidence(probe_sim)
            xs.append(
                pair_features(
                    probs[index.card_task[cards]],
                    vote[cards],
                    dense_all[cards],
                    lexical_all[cards],
                    evidence[cards],
                )
            )
            ys.append((cards == gold).astype(np.float64))
            gs.append(np.full(len(cards), len(gs)))
            same.append(index.card_task[cards] == index.card_task[gold])
    return np.vstack(xs), np.concatenate(gs), np.concatenate(ys), np.concatenate(same)


def _baseline_weights() -> np.ndarray:
    """Ranker weights that order cards by the embedding cosine alone (the baseline)."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("dense")] = BASE_SCALE
    return weights


def _subset(
    x: np.ndarray, group: np.ndarray, y: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of the groups in ``keep`` (a mask over groups), groups numbered from 0."""
    rows = keep[group]
    renumber = np.cumsum(keep) - 1
    return x[rows], renumber[group[rows]], y[rows]


def _hits(
    scores: np.ndarray, group: np.ndarray, y: np.ndarray, same: np.ndarray
) -> dict[str, float]:
    """Held-out figures of ``scores``: top-1, top-5 (ties count against) and task@1."""
    groups = int(group.max()) + 1
    gold = np.zeros(groups)
    gold[group[y > 0]] = scores[y > 0]
    beaten = ((scores >= gold[group]) & (y == 0)).astype(np.float64)
    ahead = np.bincount(group, weights=beaten, minlength=groups)
    order = np.lexsort((-scores, group))  # by group, best first
    first = order[np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]]
    return {
        "top1": round(float(np.mean(ahead < 1)), 4),
        "top5": round(float(np.mean(ahead < 5)), 4),
        "task_at_1": round(float(np.mean(same[first])), 4),
    }


def _earned_share(
    x: np.ndarray, group: np.ndarray, y: np.ndarray, same: np.ndarray | None = None
) -> tuple[float, dict[str, dict[str, float]]]:
    """The learned ranker's share that ranks held-out probes best (see the module doc)."""
    groups = int(group.max()) + 1
    fold = np.arange(groups) % CV_FOLDS
    held_scores = {share: np.zeros(len(y)) for share in SHARES}
    base = x @ _baseline_weights()
    for k in range(CV_FOLDS):
        train = fold != k
        if train.all() or not train.any():
            continue
        weights = fit_listwise(*_subset(x, group, y, train), prior=DEFAULT_RANK_WEIGHTS)
        rows = ~train[group]
        learned = x[rows] @ weights
        for share in SHARES:
            held_scores[share][rows] = share * learned + (1 - share) * base[rows]
    same = y > 0 if same is None else same
    figures = {f"{share:g}": _hits(held_scores[share], group, y, same) for share in SHARES}
    # The best sum of top-1, top-5 and task@1; on a tie the smaller share (the embedding order).
    best = max(SHARES, key=lambda s: (round(sum(figures[f"{s:g}"].values()), 6), -s))
    return best, figures


def fit_selection_model(
    index: CardIndex, embedder: str, digest: str = "", folds: int = 4, max_examples: int = 600
) -> SelectionModel:
    """Fit the task classifier and the pair ranker of ``index`` (which must have embeddings)."""
    if index.card_vecs is None or index.probe_vecs is None:
        raise ValueError("a selection model needs an index with embeddings")
    n_probes = len(index.probe_row)
    everything = np.ones(n_probes, dtype=bool)
    card_examples = _card_examples(index)
    task_weights, task_bias = _fit_tasks(index, everything, card_examples)
    rng = np.random.default_rng(0)
    passed = np.flatnonzero(index.probe_score >= PASS_SCORE)
    # Without probes to validate a learned ranker on, the embedding order ranks.
    rank_weights, rank_bias, used = _baseline_weights(), 0.0, 0
    share, validation = 0.0, None
    if len(passed) >= MIN_RANK_EXAMPLES:
        if len(passed) > max_examples:
            passed = np.sort(rng.choice(passed, max_examples, replace=False))
        fold_of = np.arange(n_probes) % folds
        x, group, y, same = _rank_rows(index, passed, fold_of, folds, rng, card_examples)
        share, validation = _earned_share(x, group, y, same)
        learned = fit_listwise(x, group, y, prior=DEFAULT_RANK_WEIGHTS)
        rank_weights = share * learned + (1 - share) * _baseline_weights()
        # The bias puts the best card of a typical instruction near probability one half.
        best = np.full(int(group.max()) + 1, -np.inf)
        np.maximum.at(best, group, x @ rank_weights)
        rank_bias = -float(np.median(best))
        used = len(passed)
    else:
        rank_bias = -BASE_SCALE * 0.5  # a cosine of about 0.5 at probability one half
    return SelectionModel(
        tasks=tuple(index.tasks),
        embedder=embedder,
        task_weights=task_weights,
        task_bias=task_bias,
        rank_weights=np.asarray(rank_weights, dtype=np.float32),
        rank_bias=float(rank_bias),
        rank_examples=used,
        digest=digest,
        learned_share=float(share),
        validation=validation,
    )
