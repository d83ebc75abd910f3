"""The command line as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys


def orchestrator(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_run_json_is_machine_readable(tmp_path):
    done = orchestrator(
        "run",
        'Which language is "Das ist ein schönes Haus" in?',
        "--json",
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    [step] = result["steps"]
    assert step["card"] == "lingua-langid" and step["outputs"]["label"] == "German"
    assert result["plan"]["subtasks"][0]["task"] == "text-classification"
    assert int(result["spent"]["calls"]) == 1


def test_run_prints_plan_choice_outputs_and_cost(tmp_path):
    done = orchestrator("run", 'Is "I adore this" positive or negative?', "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        "Plan",
        "Selection",
        "vader-sentiment",
        "relevance",
        "Answer",
        "positive",
        "Cost",
    ):
        assert expected in out


def test_empty_prompt_exits_2_without_traceback():
    done = orchestrator("run", "")
    assert done.returncode == 2
    assert "empty" in done.stderr and "Traceback" not in done.stderr


def test_bad_budget_is_a_clear_error():
    done = orchestrator("run", "Say 'hi' aloud", "--budget-usd", "lots")
    assert done.returncode == 2
    assert "--budget-usd" in done.stderr and "Traceback" not in done.stderr


def test_broken_user_card_folder_is_reported(tmp_path):
    (tmp_path / "x.yaml").write_text("name: x\ntask: text-generation\n")
    done = orchestrator("cards", "list", "--cards", str(tmp_path))
    assert done.returncode == 2
    assert "x.yaml" in done.stderr and "description" in done.stderr
