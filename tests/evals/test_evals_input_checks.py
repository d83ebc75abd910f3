"""The eval and bench commands check their input: a clear message and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli.main import app


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def write_tools(folder: Path) -> Path:
    nodes = [{"id": "send_sms", "desc": "Send an SMS text message", "domain": ["x"]}]
    path = folder / "tool_desc.json"
    path.write_text(json.dumps({"nodes": nodes}))
    return path


def test_eval_planning_with_a_missing_file(tmp_path):
    result = invoke(
        "eval", "planning", "--tools", str(tmp_path / "nope.json"), "--requests", "x.jsonl"
    )
    assert result.exit_code == 2
    assert f"error: cannot read {tmp_path / 'nope.json'}" in result.output
    tools = write_tools(tmp_path)
    result = invoke("eval", "planning", "--tools", str(tools), "--requests", str(tmp_path / "r"))
    assert result.exit_code == 2 and "error: cannot read" in result.output


def test_eval_planning_with_an_unknown_planner(tmp_path):
    tools = write_tools(tmp_path)
    requests = tmp_path / "dev.jsonl"
    requests.write_text("")
    result = invoke(
        "eval", "planning", "--tools", str(tools), "--requests", str(requests), "--planner", "gpt5"
    )
    assert result.exit_code == 2 and "gpt5" in result.output


def test_eval_routing_on_a_csv_without_the_routerbench_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = invoke("eval", "routing", "--train", str(bad), "--test", str(bad), "--no-knn")
    assert result.exit_code == 2
    assert "not in RouterBench's layout" in result.output
    words = tmp_path / "words.csv"
    words.write_text("prompt,m1,m1|total_cost\nhi,yes,0.1\n")
    result = invoke("eval", "routing", "--train", str(words), "--test", str(words), "--no-knn")
    assert result.exit_code == 2 and "must be numbers" in result.output


def test_bench_selection_needs_at_least_one_card():
    for value in ("0", "-5"):
        result = invoke("bench", "selection", "--cards", value, "--embedder", "hashing")
        assert result.exit_code == 2
        assert f"--cards must be at least 1, got {value}" in result.output
