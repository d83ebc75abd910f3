"""The RouterBench routing evaluation: AIQ, and the command on a small written fixture."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.evals.routing import aiq, frontier, load_bench, replay_cards


def test_aiq_is_the_mean_height_of_the_non_decreasing_hull():
    assert aiq([(1.0, 0.6)], 1.0, 3.0) == pytest.approx(0.6)
    assert aiq([(1.0, 0.5), (3.0, 0.9)], 1.0, 3.0) == pytest.approx(0.7, abs=1e-3)
    # a point under the hull does not count; a dearer, worse point does not pull it down
    pts = [(1.0, 0.5), (2.0, 0.55), (3.0, 0.9), (3.5, 0.6)]
    assert frontier(pts, 2.0) == pytest.approx(0.7)
    assert frontier(pts, 3.5) == pytest.approx(0.9)
    # accuracy is 0 left of the policy's cheapest point
    assert aiq([(2.0, 1.0)], 1.0, 3.0) == pytest.approx(0.5, abs=1e-3)


MODELS = ("m-cheap", "m-mid", "m-strong")
ROWS = [  # prompt, answers, scores
    ("Q1?\nA) x\nB) y", ("['A']", "['A']", "['A']"), (1, 1, 1)),
    ("Q2?\nA) x\nB) y", ("['A']", "['B']", "['B']"), (0, 1, 1)),
    ("Q3?\nA) x\nB) y", ("['B']", "['B']", "['A']"), (1, 1, 0)),
    ("Q4?\nA) x\nB) y", ("['A']", "['B']", "['A']"), (1, 0, 1)),
]
COST = {"m-cheap": 0.0001, "m-mid": 0.0003, "m-strong": 0.004}


def write(path):
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["", "sample_id", "prompt", "eval_name", *MODELS, "oracle_model_to_route_to"]
            + [f"{m}|model_response" for m in MODELS]
            + [f"{m}|total_cost" for m in MODELS]
        )
        for i, (prompt, answers, scores) in enumerate(ROWS):
            out.writerow(
                [i, f"t.{i}", prompt, "t", *scores, "m-cheap", *answers] + [COST[m] for m in MODELS]
            )
    return path


def test_replay_cards_take_price_and_quality_from_train(tmp_path):
    train = load_bench(write(tmp_path / "t_train.csv"))
    cards = {c.name: c for c in replay_cards(train, tmp_path / "t_test.csv")}
    assert cards["m-strong"].strength == 0.75 and cards["m-mid"].strength == 0.75
    assert str(cards["m-cheap"].cost.usd_per_call) == "0.00010000"


def test_eval_routing_prints_one_json_object(tmp_path):
    train = write(tmp_path / "t_train.csv")
    test = write(tmp_path / "t_test.csv")
    out = CliRunner().invoke(
        app, ["eval", "routing", "--train", str(train), "--test", str(test), "--json", "--no-knn"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["n"] == 4
    assert report["best_single"]["model"] in ("m-cheap", "m-strong")
    assert report["oracle"] == {"accuracy": 1.0, "cost": pytest.approx(0.00015)}
    assert len(report["points"]) == len(report["router"]) > 5
    assert 0 < report["aiq"] <= 1 and 0 < report["single_aiq"] <= 1
    assert {"start", "accept"} <= set(report["router_actions"])
    # the cheapest setting asks one model per query; the strongest pays for more
    assert report["router"][-1]["calls_per_query"] == 1
    assert report["router"][0]["cost"] >= report["router"][-1]["cost"]
    # the swept policy is the learned one, its options chosen by CV inside the train file,
    # with the default policy's sweep beside it
    assert report["policy"] == "learned"
    assert report["learned"]["options"].keys() == {"depth", "by_label", "pareto"}
    assert len(report["learned"]["cv"]) == 8
    assert 0 < report["default_policy"]["aiq"] <= 1


def test_learned_tables_are_fitted_on_train_only(tmp_path):
    from orchestrator.evals.routing_learned import (
        LEARNED_WEIGHTS,
        choose_options,
        fit_tables,
        logged,
    )
    from orchestrator.routing.learned import replay_table

    train = load_bench(write(tmp_path / "t_train.csv"))
    data = logged(train, {m: m for m in train.models})
    assert data.signatures[1] == ["A", "B", "B"]
    choice = choose_options(data, folds=2, repeats=1)
    assert set(choice["options"]) == {"depth", "by_label", "pareto"}
    assert all(-1 <= row["cv_aiq_gain"] <= 1 for row in choice["cv"])
    # four rows: let every state be expanded
    tables = fit_tables(data, LEARNED_WEIGHTS, {"depth": 3, "min_support": 1})
    # ignoring cost, the table asks more models and gets more right than the cheapest setting
    free = replay_table(tables[0], data.models, data.signatures, data.correct, data.cost)
    dear = replay_table(tables[-1], data.models, data.signatures, data.correct, data.cost)
    assert free[0] > dear[0] and free[1] > dear[1] == 0.75
    # at the highest cost weight it starts with the cheapest model and stops there
    assert tables[-1].actions["#"] == ["ask", "m-cheap"]
    assert tables[-1].actions["m-cheap#0"] == ["accept", "m-cheap"]


def test_knn_embeds_the_query_after_its_few_shot_examples():
    from orchestrator.evals.routing import query_text

    prompt = "['Q: 1+1?\\nA) 2\\nAnswer:\\nA\\n\\nQ: 2+3?\\nA) 5\\nB) 6\\nAnswer:']"
    assert query_text(prompt) == "Q: 2+3?\nA) 5\nB) 6\nAnswer:"
    assert query_text("Write a function to add two numbers.") == (
        "Write a function to add two numbers."
    )
