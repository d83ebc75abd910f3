"""``orchestrator eval planning``: tool-level planning scored on TaskBench-format data (UltraTool).

Each request is planned over the tool set read from ``tool_desc.json`` + ``graph_desc.json``;
predicted tool names and (source, target) links are compared with the gold ``task_nodes`` and
``task_links``. Planners that learn from examples see only the other folds (k-fold
cross-validation), so every figure is on requests the planner did not learn from. A planner with
``prepare_tools(tools)`` learns there, timed apart (``seconds_learning_per_fold``) from
``seconds_per_request``.

Metrics (as GNN4TaskPlan's evaluate.py): node_f1 / link_f1 = mean over requests of the set F1 of
tool names / links; accuracy = share of requests whose node F1 is 1.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.errors import UserError
from orchestrator.evals.apps import eval_app
from orchestrator.planning.toolset import Example, ToolSet, load_examples

__all__ = [
    "PlanningScore",
    "evaluate_fixed",
    "evaluate_planning",
    "is_held_out",
    "set_f1",
    "split_examples",
]

# Notes an LLM planner writes about its path (orchestrator.planning.llm); counted over the requests.
_PATH_NOTES = frozenset({"valid", "invalid", "repaired", "fallback", "retry", "unreachable"})


@dataclass
class PlanningScore:
    n: int
    node_f1: float
    link_f1: float
    accuracy: float
    seconds_per_request: float
    seconds_learning_per_fold: float
    folds: int
    planner: str
    notes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "node_f1": round(self.node_f1, 4),
            "link_f1": round(self.link_f1, 4),
            "accuracy": round(self.accuracy, 4),
            "seconds_per_request": round(self.seconds_per_request, 4),
            "seconds_learning_per_fold": round(self.seconds_learning_per_fold, 3),
            "folds": self.folds,
            "planner": self.planner,
            "notes": self.notes,
        }


def set_f1(predicted: set, gold: set) -> float:
    """F1 of two sets; two empty sets agree fully."""
    if not predicted and not gold:
        return 1.0
    hits = len(predicted & gold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


HOLDOUT_SHARE = 5  # one request in five (by a hash of its text) is held out


def is_held_out(example: Example) -> bool:
    """Whether ``example`` is in the fixed held-out fifth (by a hash of its request).

    The same requests are held out whatever the file's order, and never looked at in tuning.
    """
    digest = hashlib.sha256(example.request.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % HOLDOUT_SHARE == 0


def split_examples(examples: list[Example], split: str) -> tuple[list[Example], list[Example]]:
    """(examples to learn from, requests to score) for ``split``.

    ``all``: every request, cross-validated. ``dev``: the requests not held out,
    cross-validated. ``holdout``: learn from the dev part, score the held-out part.
    """
    dev = [e for e in examples if not is_held_out(e)]
    if split == "all":
        return examples, examples
    if split == "dev":
        return dev, dev
    if split == "holdout":
        return dev, [e for e in examples if is_held_out(e)]
    raise typer.BadParameter(f"--split must be all, dev or holdout, not {split!r}")


def evaluate_fixed(
    tools: ToolSet, train: list[Example], test: list[Example], planner: Any, *, limit: int | None
) -> PlanningScore:
    """Learn from ``train`` (nothing when it is empty: zero-shot) and score ``test``."""
    fold_tools = tools.with_examples(train)
    learning = 0.0
    prepare = getattr(planner, "prepare_tools", None)
    if prepare is not None:
        start = time.perf_counter()
        prepare(fold_tools)
        learning = time.perf_counter() - start
    node_scores, link_scores, notes = [], [], {}
    seconds = 0.0
    for example in test[:limit]:
        start = time.perf_counter()
        plan = planner.plan_tools(example.request, fold_tools)
        seconds += time.perf_counter() - start
        node_scores.append(set_f1(set(plan.nodes), set(example.tools)))
        link_scores.append(set_f1(set(plan.links), set(example.links)))
        _count_notes(plan.notes, notes)
    n = len(node_scores)
    if n == 0:
        raise typer.BadParameter("no requests to evaluate")
    return PlanningScore(
        n=n,
        node_f1=sum(node_scores) / n,
        link_f1=sum(link_scores) / n,
        accuracy=sum(s >= 0.99 for s in node_scores) / n,
        seconds_per_request=seconds / n,
        seconds_learning_per_fold=learning,
        folds=0,
        planner=planner.name,
        notes=notes,
    )


def _count_notes(plan_notes: list[str], notes: dict[str, int]) -> None:
    for note in plan_notes:
        key = note.split(":", 1)[0]
        if key in _PATH_NOTES:
            notes[key] = notes.get(key, 0) + 1


def evaluate_planning(
    tools: ToolSet,
    requests: list[Example],
    planner: Any,
    *,
    folds: int = 5,
    limit: int | None = None,
) -> PlanningScore:
    """Plan every request (or the first ``limit`` of each fold) with examples from other folds."""
    if folds < 2:
        raise typer.BadParameter("--folds must be at least 2 (the planner must not see the test)")
    node_scores: list[float] = []
    link_scores: list[float] = []
    notes: dict[str, int] = {}
    seconds = 0.0
    learning = 0.0
    per_fold = None if limit is None else max(1, -(-limit // folds))
    for fold in range(folds):
        test = [e for i, e in enumerate(requests) if i % folds == fold][:per_fold]
        train = [e for i, e in enumerate(requests) if i % folds != fold]
        fold_tools = tools.with_examples(train)
        prepare = getattr(planner, "prepare_tools", None)
        if prepare is not None and test:
            start = time.perf_counter()
            prepare(fold_tools)  # learning from the fold's examples, timed apart from planning
            learning += time.perf_counter() - start
        for example in test:
            if limit is not None and len(node_scores) >= limit:
                break
            start = time.perf_counter()
            plan = planner.plan_tools(example.request, fold_tools)
            seconds += time.perf_counter() - start
            node_scores.append(set_f1(set(plan.nodes), set(example.tools)))
            link_scores.append(set_f1(set(plan.links), set(example.links)))
            for note in plan.notes:
                key = note.split(":", 1)[0]
                if key in _PATH_NOTES:
                    notes[key] = notes.get(key, 0) + 1
    n = len(node_scores)
    if n == 0:
        raise typer.BadParameter("no requests to evaluate")
    return PlanningScore(
        n=n,
        node_f1=sum(node_scores) / n,
        link_f1=sum(link_scores) / n,
        accuracy=sum(s >= 0.99 for s in node_scores) / n,
        seconds_per_request=seconds / n,
        seconds_learning_per_fold=learning / folds,
        folds=folds,
        planner=planner.name,
        notes=notes,
    )


@eval_app.command("planning")
def planning(
    tools: Annotated[Path, typer.Option(help="tool_desc.json (TaskBench format)")],
    requests: Annotated[Path, typer.Option(help="requests with gold plans (JSON lines)")],
    graph: Annotated[Path | None, typer.Option(help="graph_desc.json (the tool graph)")] = None,
    planner: Annotated[
        str, typer.Option(help="a registered planner, or 'config': the one the config picks")
    ] = "embedded",
    folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    limit: Annotated[int | None, typer.Option(help="plan at most this many requests")] = None,
    split: Annotated[
        str,
        typer.Option(
            help="all: cross-validate every request; dev: cross-validate the requests not held "
            "out (a fixed hash-chosen fifth); holdout: learn from dev, score the held-out part"
        ),
    ] = "all",
    zero_shot: Annotated[
        bool,
        typer.Option(
            "--zero-shot",
            help="plan from the tool descriptions and graph alone: no worked examples",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score a planner's tool choice and links on TaskBench-format requests."""
    from orchestrator.config import Config
    from orchestrator.planning import get_planner, planner_from_config

    try:
        tool_set = ToolSet.from_taskbench(tools, graph)
        examples = load_examples(requests)
        if planner == "config":
            chosen = planner_from_config(Config.load())
        else:
            chosen = get_planner(planner)
    except (UserError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from exc
    train, test = split_examples(examples, split)
    if zero_shot:
        score = evaluate_fixed(tool_set, [], test, chosen, limit=limit)
    elif split == "holdout":
        score = evaluate_fixed(tool_set, train, test, chosen, limit=limit)
    else:
        score = evaluate_planning(tool_set, test, chosen, folds=folds, limit=limit)
    if as_json:
        typer.echo(json.dumps(score.to_json()))
        return
    for key, value in score.to_json().items():
        typer.echo(f"{key}: {value}")
