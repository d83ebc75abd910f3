"""Ctrl-C on ``orchestrator run``: a real SIGINT to a real subprocess, then ``runs`` commands.

The request has two independent steps: a summary on a test card whose first call takes a minute,
and a language label from the offline lingua-langid card, which finishes early.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli_tools import cli_env, run_cli  # noqa: E402
from _run_tools import calls, write_cards  # noqa: E402

REQUEST = (
    'Summarize "The storm hit the coast at dawn. Thousands lost power." and tell me which '
    'language "Guten Morgen, wie geht es dir" is in'
)
SUMMARY = (
    "Summary of 'The storm hit the coast at dawn. Thousands lost power.': "
    "The storm hit the coast at dawn."
)


def cards_args(cards: Path) -> list[str]:
    """The test cards' folder, and the approval of their permission to write the shared log."""
    return ["--cards", str(cards), "--approve", "sum-steady"]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=cli_env(tmp_path))


def _wait(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_twice_cancels_keeps_the_finished_step_and_resume_finishes(tmp_path):
    shared = tmp_path / "shared"
    cards = write_cards(tmp_path / "cards", shared, labeller=False, first_sleep=60)
    out = tmp_path / "run.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", REQUEST, *cards_args(cards)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=cli_env(tmp_path),
        )
    try:
        lingua_done = lambda: any(  # noqa: E731
            line.strip().startswith("ok ") and "lingua-langid" in line
            for line in out.read_text().splitlines()
        )
        _wait(lambda: "sum-steady start" in calls(shared) and lingua_done(), proc, "s2 finished")

        # While it runs: the run is listed as unfinished, and a resume elsewhere is refused.
        listed = _cli(tmp_path, "runs", "list", "--json")
        [row] = json.loads(listed.stdout)
        run_id = row["run_id"]
        assert row["status"] == "unfinished"
        busy = _cli(tmp_path, "runs", "resume", run_id, *cards_args(cards))
        assert busy.returncode == 2
        assert f"run {run_id} is in progress in another process (pid {proc.pid})" in busy.stderr

        proc.send_signal(signal.SIGINT)
        _wait(lambda: "Cancelling" in out.read_text(), proc, "the cancel message", 30)
        time.sleep(1.0)
        assert proc.poll() is None  # the first Ctrl-C lets the running step go on
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # the second stops it now
        rc = proc.wait(timeout=30)
        assert time.monotonic() - started < 20  # not the minute the step would take
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert rc == 130, text
    assert "Traceback" not in text
    assert "(cancelled)" in text and "finished: s2" in text
    assert f"orchestrator runs resume {run_id}" in text
    assert "Language: German" in text  # the finished step's answer is kept and shown
    assert calls(shared) == ["sum-steady start"]

    shown = json.loads(_cli(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "unfinished"
    by_card = {s["card"]: s for s in shown["steps"]}
    assert by_card["lingua-langid"]["status"] == "done"
    assert by_card["lingua-langid"]["outputs"]["label"] == "German"
    # The summary call the second Ctrl-C stopped was made: it counts, as the printed cost said.
    assert "| 2 calls |" in text
    assert shown["spent"]["calls"] == 2
    shown_text = _cli(tmp_path, "runs", "show", run_id).stdout
    for expected in ("Plan", "Steps", "lingua-langid", "label: German", "Router decisions"):
        assert expected in shown_text

    resumed = _cli(tmp_path, "runs", "resume", run_id, *cards_args(cards), "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "ok"
    assert SUMMARY in result["answer"]
    assert "Language of 'Guten Morgen, wie geht es dir': German." in result["answer"]
    # The stopped call and lingua's carried over (lingua's not made again), and the new summary.
    assert result["spent"]["calls"] == 3
    assert calls(shared) == ["sum-steady start", "sum-steady start", "sum-steady done"]
    [row] = json.loads(_cli(tmp_path, "runs", "list", "--json").stdout)
    assert row["status"] == "ok" and row["spent"]["calls"] == 3


def test_one_ctrl_c_lets_the_running_step_finish_and_keeps_it(tmp_path):
    shared = tmp_path / "shared"
    cards = write_cards(tmp_path / "cards", shared, labeller=False, first_sleep=4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", REQUEST, *cards_args(cards), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=cli_env(tmp_path),
    )
    try:
        _wait(lambda: "sum-steady start" in calls(shared), proc, "the summary started")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Cancelling" in stderr and "Traceback" not in stderr
    result = json.loads(stdout)
    assert result["status"] == "cancelled"
    summary = next(s for s in result["steps"] if s["card"] == "sum-steady")
    assert summary["status"] == "done"
    assert summary["outputs"]["summary"] == "The storm hit the coast at dawn."
    assert calls(shared) == ["sum-steady start", "sum-steady done"]

    # Without the card folder the resume names the card and the option that adds it.
    missing = _cli(tmp_path, "runs", "resume", result["run_id"])
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "sum-steady" in missing.stderr and "--cards DIR" in missing.stderr
    resumed = _cli(tmp_path, "runs", "resume", result["run_id"], *cards_args(cards), "--json")
    resumed = json.loads(resumed.stdout)
    assert resumed["status"] == "ok"
    assert SUMMARY in resumed["answer"]
    assert calls(shared) == ["sum-steady start", "sum-steady done"]  # not run again
