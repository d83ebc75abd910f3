"""The CLI's error messages stay whole in a narrow terminal with no TTY, as on a CI machine.

Each case runs the real ``orchestrator`` command with ``COLUMNS`` set, ``TERM=dumb`` and stdin
from /dev/null, and checks that the message a user must read is on one line of stderr, never
cut mid-sentence by wrapping to the width.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "orchestrator"


def run_narrow(args: list[str], columns: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    env.pop("ORCHESTRATOR_CONFIG", None)
    return subprocess.run(
        [str(EXE), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_holding(text: str, stream: str) -> bool:
    return any(text in line for line in stream.splitlines())


@pytest.mark.parametrize("columns", [80, 40])
def test_a_usage_error_from_an_eval_prints_its_whole_sentence(tmp_path, columns):
    bad = tmp_path / "scores.csv"
    bad.write_text("a,b\n1,2\n")
    args = ["eval", "routing", "--train", str(bad), "--test", str(bad)]
    done = run_narrow(args, columns, tmp_path)
    assert done.returncode == 2
    wanted = (
        f"{bad} is not in RouterBench's layout: it needs a 'prompt' column and, per model, "
        "a '<model>' score column and a '<model>|total_cost' column"
    )
    assert one_line_holding(wanted, done.stderr), done.stderr
    assert "╭" not in done.stderr  # no box drawn around it


@pytest.mark.parametrize("columns", [80, 40])
def test_the_clis_own_errors_are_one_line_each(tmp_path, columns):
    done = run_narrow(["run", "hello", "--budget-usd", "five dollars"], columns, tmp_path)
    assert done.returncode == 2
    assert one_line_holding(
        "error: --budget-usd must be an amount like 0.05, got 'five dollars'", done.stderr
    ), done.stderr
    config = tmp_path / "orchestrator.toml"
    config.write_text("planer = 'embedded'\n")
    done = run_narrow(["cards", "list"], columns, tmp_path)
    assert done.returncode == 2
    assert one_line_holding(
        f"error: {config.name}: planer: Extra inputs are not permitted (did you mean 'planner'?",
        done.stderr,
    ), done.stderr


@pytest.mark.parametrize("columns", [80, 40])
def test_an_unknown_option_names_itself_on_one_line(tmp_path, columns):
    done = run_narrow(["run", "hello", "--max-secs", "5"], columns, tmp_path)
    assert done.returncode == 2
    assert one_line_holding("No such option: --max-secs", done.stderr), done.stderr
