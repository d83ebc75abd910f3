"""The learned router policy for ``orchestrator eval routing``: fitted on --train only.

The routing tables of :class:`~orchestrator.routing.learned.LearnedPolicy` are solved on the
training file's recorded answers, one per setting of the cost knob. Their three fitting options
(how many models a query may ask, whether a state names the answers or only which of them
agree, and whether only the models on the training cost/accuracy frontier may be asked) are
chosen by k-fold cross-validation inside the training file: each candidate is
fitted on k-1 folds, replayed on the held-out one, and scored by its AIQ gain over the single
models of that fold. The test file is never looked at here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.routing.learned import CascadeTable, answer_signature, fit_cascade, replay_table

__all__ = ["LEARNED_WEIGHTS", "Logged", "choose_options", "fit_tables", "logged"]

# The cost knob: accuracy points per dearest model's price; 0 ignores cost, 1000 is cheapest.
LEARNED_WEIGHTS = (0.0, *(round(0.002 * 10 ** (k / 6), 6) for k in range(25)), 1000.0)
OPTION_GRID: dict[str, tuple[Any, ...]] = {
    "depth": (2, 3),
    "by_label": (False, True),
    "pareto": (False, True),
}
_CV_WEIGHTS = LEARNED_WEIGHTS[::2] + (1000.0,)


@dataclass
class Logged:
    """Training rows as arrays: per row and model, answer signature, 0/1 correctness, USD."""

    models: list[str]  # card names
    signatures: list[list[str | None]]
    correct: np.ndarray
    cost: np.ndarray

    def take(self, rows: np.ndarray) -> Logged:
        return Logged(
            self.models, [self.signatures[i] for i in rows], self.correct[rows], self.cost[rows]
        )


def logged(bench: Any, names: dict[str, str]) -> Logged:
    """A RouterBench file's rows, with model columns named by their cards (``names``)."""
    models = list(bench.models)
    return Logged(
        models=[names[m] for m in models],
        signatures=[
            [answer_signature(bench.responses[m][i]) for m in models] for i in range(len(bench))
        ],
        correct=np.array([[bench.scores[m][i] for m in models] for i in range(len(bench))]),
        cost=np.array([[bench.costs[m][i] for m in models] for i in range(len(bench))]),
    )


def fit_tables(
    data: Logged, weights: tuple[float, ...], options: dict[str, Any]
) -> list[CascadeTable]:
    """One routing table per cost weight."""
    return [
        fit_cascade(data.models, data.signatures, data.correct, data.cost, cost_weight=w, **options)
        for w in weights
    ]


def _fold_gain(train: Logged, held: Logged, options: dict[str, Any]) -> float:
    from orchestrator.evals.routing import aiq

    points = [
        replay_table(t, held.models, held.signatures, held.correct, held.cost)
        for t in fit_tables(train, _CV_WEIGHTS, options)
    ]
    singles = list(zip(held.cost.mean(axis=0), held.correct.mean(axis=0), strict=True))
    low, high = min(c for c, _ in singles), max(c for c, _ in singles)
    return aiq(points, low, high, steps=1000) - aiq(singles, low, high, steps=1000)


def choose_options(
    data: Logged, *, folds: int = 5, repeats: int = 2, seed: int = 0
) -> dict[str, Any]:
    """The fitting options with the best mean AIQ gain in repeated k-fold CV inside ``data``."""
    folds = max(2, min(folds, len(data.signatures)))
    rng = np.random.default_rng(seed)
    splits = [np.array_split(rng.permutation(len(data.signatures)), folds) for _ in range(repeats)]
    scores = []
    for values in itertools.product(*OPTION_GRID.values()):
        options = dict(zip(OPTION_GRID, values, strict=True))
        gains = [
            _fold_gain(
                data.take(np.concatenate([p for j, p in enumerate(parts) if j != k])),
                data.take(parts[k]),
                options,
            )
            for parts in splits
            for k in range(folds)
        ]
        scores.append({**options, "cv_aiq_gain": round(float(np.mean(gains)), 4)})
    best = max(scores, key=lambda s: s["cv_aiq_gain"])
    return {
        "options": {k: best[k] for k in OPTION_GRID},
        "folds": folds,
        "repeats": repeats,
        "cv": scores,
    }
