"""Replay cards over a tiny recorded-answers file, and a one-step planner, for router tests."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator import Zoo
from orchestrator.evals.routing import replay_card
from orchestrator.plan import Plan, Subtask, TextArg


def write_records(
    path: Path,
    models: Sequence[str],
    records: Mapping[str, Sequence[str]],
    prices: Mapping[str, float],
) -> Path:
    """A RouterBench-shaped CSV: per prompt, each model's answer and cost (all marked right)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["sample_id", "prompt", *models]
            + [f"{m}|model_response" for m in models]
            + [f"{m}|total_cost" for m in models]
        )
        for i, (prompt, answers) in enumerate(records.items()):
            ones = [1] * len(models)
            writer.writerow([i, prompt, *ones, *answers, *(prices[m] for m in models)])
    return path


def replay_zoo(
    records: Path,
    models: Sequence[str],
    prices: Mapping[str, float],
    strength: Mapping[str, float],
) -> Zoo:
    """One replay card per model, answering from ``records``."""
    cards = [replay_card(m, m, records, str(prices[m]), strength[m]) for m in models]
    return Zoo.from_cards(cards)


class OneStep:
    """Plans every request as one text-generation step."""

    name = "one-step"

    def plan(self, request, zoo, *, files=()):
        step = Subtask(
            id="s1",
            task="text-generation",
            instruction=request,
            args={"text": TextArg(value=request)},
        )
        return Plan(request=request, subtasks=[step])
