"""``orchestrator eval planning`` on a tiny TaskBench-format tool set written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.planning import evaluate_planning, set_f1
from orchestrator.cli import app
from planners import get_planner
from planners.toolset import ToolSet, load_examples

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
