"""``orchestrator runs list | show``: they survive odd stored entries and show a run in full."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli_tools import cli_env, run_cli  # noqa: E402

from orchestrator import Config, Orchestrator, Zoo
from orchestrator.execution.inprocess import InProcessExecutor


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=cli_env(tmp_path))


def _store_odd_entries(tmp_path: Path) -> None:
    """Entries an older version could leave: no string request, a broken plan, junk spent."""
    orch = Orchestrator(
        Config(runs_dir=tmp_path / "runs"),
        zoo=Zoo(),
        executor=InProcessExecutor(),
        checkpoint_path=tmp_path / "store.sqlite",
    )
    with orch:
        orch._graph.update_state(
            orch._config("none-request"), {"request": None, "spent": "junk"}, as_node="plan"
        )
        orch._graph.update_state(
            orch._config("bad-plan"),
            {"request": "hello", "plan": {"bad": 1}, "attempts": [{"step": "s1"}]},
            as_node="plan",
        )


def test_list_and_show_survive_odd_stored_entries(tmp_path):
    _store_odd_entries(tmp_path)
    listed = _cli(tmp_path, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "none-request" in listed.stdout and "bad-plan" in listed.stdout
    rows = {r["run_id"]: r for r in json.loads(_cli(tmp_path, "runs", "list", "--json").stdout)}
    assert rows["none-request"]["request"] == "" and rows["none-request"]["status"] == "unfinished"
    assert rows["bad-plan"]["spent"]["calls"] == 0

    shown = _cli(tmp_path, "runs", "show", "bad-plan")
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert "run bad-plan is stored in a form that cannot be read" in shown.stderr
    resumed = _cli(tmp_path, "runs", "resume", "none-request")
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert "has no request stored" in resumed.stderr
    resumed = _cli(tmp_path, "runs", "resume", "bad-plan")
    assert resumed.returncode == 2 and "cannot be read" in resumed.stderr


def test_show_prints_plan_steps_decisions_answer_and_cost(tmp_path):
    done = _cli(tmp_path, "run", 'Is "I love it" positive or negative?', "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    shown = _cli(tmp_path, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for expected in (
        f"Run {run_id} (ok)",
        "Request: 'Is \"I love it\" positive or negative?'",
        "Plan (planner: embedded)",
        "s1: text-classification",
        "Steps",
        "s1 done",
        "vader-sentiment",
        "label: positive",
        "Router decisions",
        "s1: start vader-sentiment",
        "Answer",
        "Cost",
    ):
        assert expected in out, expected


def test_resume_with_a_bigger_budget_finishes_a_run_the_budget_stopped(tmp_path: Path):
    request = 'Is "I love it" positive or negative?'
    done = _cli(tmp_path, "run", request, "--json", "--max-calls", "0")
    stopped = json.loads(done.stdout)
    assert done.returncode == 1  # nothing ran
    assert stopped["status"] == "budget_exhausted" and "--max-calls" in stopped["message"]
    resumed = _cli(tmp_path, "runs", "resume", stopped["run_id"], "--max-calls", "2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "ok" and "positive" in result["answer"].lower()
    assert result["spent"]["calls"] == 1
