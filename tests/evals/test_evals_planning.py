"""``orchestrator eval planning`` on a tiny TaskBench-format tool set written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.evals.planning import evaluate_planning, set_f1
from orchestrator.planning import get_planner
from orchestrator.planning.toolset import ToolSet, load_examples

TOOLS = {
    "search_train": "Search for train tickets between two cities on a date",
    "train_ticket_booking": "Book a train ticket for a passenger",
    "weather_query": "Query the weather forecast of a city",
    "send_sms": "Send an SMS text message to a phone number",
    "clock_alarm_set": "Set an alarm clock for a time",
    "clock_alarm_cancel": "Cancel an alarm clock",
}
CITIES = ["Paris", "Lyon", "Rome", "Oslo", "Bergen", "Milan", "Porto", "Turin"]


def _requests() -> list[dict]:
    rows = []
    for i, (a, b) in enumerate(zip(CITIES, CITIES[1:] + CITIES[:1], strict=True)):
        rows.append(
            (
                f"Book me a train from {a} to {b} on day {i + 1}",
                ["search_train", "train_ticket_booking"],
            )
        )
        rows.append(
            (
                f"Check the weather in {a} and text it to 555-01{i:02d}",
                ["weather_query", "send_sms"],
            )
        )
        rows.append(
            (
                f"Cancel my {i + 5} am alarm and set a new alarm for {i + 6} am",
                ["clock_alarm_cancel", "clock_alarm_set"],
            )
        )
    return [
        {
            "id": str(n),
            "user_request": request,
            "task_steps": [f"Step {k + 1} Call {t} to do it" for k, t in enumerate(tools)],
            "task_nodes": [{"task": t} for t in tools],
            "task_links": [
                {"source": s, "target": t} for s, t in zip(tools, tools[1:], strict=False)
            ],
            "n_tools": len(tools),
            "type": "chain",
        }
        for n, (request, tools) in enumerate(rows)
    ]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    nodes = [{"id": name, "desc": desc, "domain": ["x"]} for name, desc in TOOLS.items()]
    links = [
        {"source": "search_train", "target": "train_ticket_booking"},
        {"source": "weather_query", "target": "send_sms"},
        {"source": "clock_alarm_cancel", "target": "clock_alarm_set"},
    ]
    (tmp_path / "tool_desc.json").write_text(json.dumps({"nodes": nodes}))
    (tmp_path / "graph_desc.json").write_text(json.dumps({"nodes": nodes, "links": links}))
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in _requests()) + "\n")
    return tmp_path


def test_set_f1():
    assert set_f1({"a", "b"}, {"a", "b"}) == 1.0
    assert set_f1({"a"}, {"a", "b"}) == pytest.approx(2 / 3)
    assert set_f1({"c"}, {"a"}) == 0.0
    assert set_f1(set(), set()) == 1.0


def test_cli_prints_the_scores_as_json(data: Path):
    result = CliRunner().invoke(
        app,
        [
            "eval", "planning",
            "--tools", str(data / "tool_desc.json"),
            "--graph", str(data / "graph_desc.json"),
            "--requests", str(data / "dev.jsonl"),
            "--planner", "embedded",
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    score = json.loads(result.output)
    assert score["n"] == 24 and score["folds"] == 5 and score["planner"] == "embedded"
    # the implicit search before a booking is learned from the other folds' examples
    assert score["node_f1"] >= 0.95 and score["link_f1"] >= 0.9 and score["accuracy"] >= 0.9
    assert 0 < score["seconds_per_request"] < 0.5


def test_each_fold_learns_only_from_the_others(data: Path):
    tools = ToolSet.from_taskbench(data / "tool_desc.json", data / "graph_desc.json")
    examples = load_examples(data / "dev.jsonl")
    seen: list[list[str]] = []

    class Spy:
        """A planner that records which examples it was given, and answers from them."""

        name = "spy"

        def plan_tools(self, request, tool_set):
            seen.append([e.request for e in tool_set.examples])
            assert request not in seen[-1]
            return get_planner("embedded").plan_tools(request, tool_set)

    score = evaluate_planning(tools, examples, Spy(), folds=3, limit=6)
    assert score.n == 6 and len(seen) == 6
    assert all(len(s) == 16 for s in seen)  # 2 of 3 folds of 24


def test_limit_and_bad_folds(data: Path):
    tools = ToolSet.from_taskbench(data / "tool_desc.json", data / "graph_desc.json")
    examples = load_examples(data / "dev.jsonl")
    assert evaluate_planning(tools, examples, get_planner("embedded"), limit=5).n == 5
    with pytest.raises(Exception, match="at least 2"):
        evaluate_planning(tools, examples, get_planner("embedded"), folds=1)


# -- the held-out split and zero-shot planning --------------------------------------------------


def test_the_held_out_fifth_is_fixed_by_the_request_text(data: Path):
    from orchestrator.evals.planning import is_held_out, split_examples

    examples = load_examples(data / "dev.jsonl")
    held = [e.request for e in examples if is_held_out(e)]
    # The same requests whatever the order of the file.
    assert [e.request for e in reversed(examples) if is_held_out(e)] == held[::-1]
    learn, score = split_examples(examples, "dev")
    assert learn == score and not {e.request for e in score} & set(held)
    learn, score = split_examples(examples, "holdout")
    assert [e.request for e in score] == held
    assert not {e.request for e in learn} & set(held)
    assert len(learn) + len(score) == len(examples)
    learn, score = split_examples(examples, "all")
    assert learn == score == examples
    with pytest.raises(Exception, match="all, dev or holdout"):
        split_examples(examples, "test")


def test_the_held_out_share_is_about_a_fifth():
    from orchestrator.evals.planning import is_held_out
    from orchestrator.planning.toolset import Example

    examples = [Example(f"request number {i}", ("a",)) for i in range(2000)]
    share = sum(map(is_held_out, examples)) / len(examples)
    assert 0.17 < share < 0.23


def test_zero_shot_plans_from_descriptions_and_the_graph_alone(data: Path):
    from orchestrator.embed import HashingEmbedder
    from orchestrator.evals.planning import evaluate_fixed
    from orchestrator.planning.embedded import EmbeddedPlanner

    tools = ToolSet.from_taskbench(data / "tool_desc.json", data / "graph_desc.json")
    examples = load_examples(data / "dev.jsonl")
    given: list[int] = []

    class Spy(EmbeddedPlanner):
        def plan_tools(self, request, tool_set):
            given.append(len(tool_set.examples))
            return super().plan_tools(request, tool_set)

    planner = Spy(embedder=HashingEmbedder())  # no model weights: a hashing embedder
    score = evaluate_fixed(tools, [], examples, planner, limit=None)
    assert score.n == 24 and set(given) == {0}  # no worked example from any fold
    # Two clauses, two tools, in the graph's order; "Book me a train" names only the booking
    # (the search before it is what examples teach: cross-validated, it is found).
    plan = planner.plan_tools("Cancel my 5 am alarm and set a new alarm for 6 am", tools)
    assert plan.links == [("clock_alarm_cancel", "clock_alarm_set")]
    plan = planner.plan_tools("Check the weather in Oslo and text it to 555-0100", tools)
    assert plan.nodes == ["weather_query", "send_sms"]
    assert planner.plan_tools("Book me a train from Oslo to Rome", tools).nodes == [
        "train_ticket_booking"
    ]
    assert score.node_f1 == pytest.approx((16 + 8 * 2 / 3) / 24)


def test_cli_zero_shot_and_holdout_flags(data: Path, monkeypatch):
    from orchestrator.embed import HashingEmbedder

    monkeypatch.setattr("orchestrator.embed.default_embedder", lambda: HashingEmbedder())
    base = [
        "eval", "planning",
        "--tools", str(data / "tool_desc.json"),
        "--graph", str(data / "graph_desc.json"),
        "--requests", str(data / "dev.jsonl"),
        "--json",
    ]  # fmt: skip
    zero = CliRunner().invoke(app, [*base, "--zero-shot", "--split", "dev"])
    assert zero.exit_code == 0, zero.output
    score = json.loads(zero.output)
    assert score["folds"] == 0 and score["n"] < 24  # the held-out part is not scored
    held = CliRunner().invoke(app, [*base, "--split", "holdout"])
    assert held.exit_code == 0, held.output
    assert json.loads(held.output)["n"] == 24 - score["n"]
    bad = CliRunner().invoke(app, [*base, "--split", "test"])
    assert bad.exit_code == 2 and "all, dev or holdout" in bad.output
