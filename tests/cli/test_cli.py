"""The command line as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli_tools import cli_env, run_cli  # noqa: E402


def orchestrator(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


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


def test_bad_config_and_output_folders_are_one_line_errors(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (
            "router_options = {cost_weigth = 2}\n",
            {},
            "unknown option 'cost_weigth' of router policy 'default' (did you mean 'cost_weight'?)",
        ),
        ("", {"ORCHESTRATOR_PLANNER": "gpt5"}, "$ORCHESTRATOR_PLANNER: unknown planner 'gpt5'"),
        ("", {"ORCHESTRATOR_RUNS_DIR": str(afile)}, f"cannot open the run store {afile}/"),
    ]
    for toml, extra, expected in cases:
        (tmp_path / "orchestrator.toml").write_text(toml)
        env = cli_env(**{"ORCHESTRATOR_RUNS_DIR": str(tmp_path / "runs"), **extra})
        done = run_cli("run", "Say 'hi' aloud", cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stdout
        assert expected in done.stderr and "Traceback" not in done.stderr
    env = cli_env(ORCHESTRATOR_RUNS_DIR=str(tmp_path / "runs"))
    done = run_cli("run", "Say 'hi' aloud", "--out", str(afile), cwd=tmp_path, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot use {afile} as the output folder" in done.stderr and "--out" in done.stderr


def test_chat_and_demo_refuse_a_bad_router_in_one_line(tmp_path):
    (tmp_path / "orchestrator.toml").write_text('router = "nonsense"\n')
    env = cli_env(ORCHESTRATOR_RUNS_DIR=str(tmp_path / "runs"))
    for args in (("chat",), ("demo", "--out", str(tmp_path / "demo"))):
        done = run_cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stdout
        assert "unknown router policy 'nonsense'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "demo").exists()  # refused before making anything


def test_a_huge_prompt_is_refused_without_being_echoed(tmp_path):
    env = cli_env(ORCHESTRATOR_RUNS_DIR=str(tmp_path / "runs"))
    prompt = 'Is "' + "good " * 10_000 + '" positive?'
    done = run_cli("run", prompt, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "50,015 characters long; the limit is 20,000" in done.stderr
    assert len(done.stdout) + len(done.stderr) < 2_000
    listed = run_cli("runs", "list", "--json", cwd=tmp_path, env=env)
    assert json.loads(listed.stdout) == []  # nothing stored
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["checkpoints.sqlite"]
