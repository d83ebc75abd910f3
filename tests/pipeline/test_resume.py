"""Durable runs: a run killed with SIGKILL mid-way resumes without redoing finished subtasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from orchestrator import Config, Orchestrator, Zoo
from orchestrator.cards.approvals import Approvals
from orchestrator.execution.inprocess import InProcessExecutor

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from _resume_tools import CARD, CARD_SHARED_LOG, ChainPlanner  # noqa: E402

RUN_ID = "resume-test-run"

SCRIPT = """
import sys
from decimal import Decimal
from pathlib import Path
sys.path.insert(0, {tests!r})
from _resume_tools import ChainPlanner
from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.execution.inprocess import InProcessExecutor

zoo = Zoo.load([Path({cards!r})], builtin=False)
# In-process, so that SIGKILL ends every part of the run at once (a worker process would
# outlive it and finish its call); the resume below runs through the worker pool.
executor = InProcessExecutor()
with Orchestrator(Config(runs_dir=Path({runs!r}), approve={{"slow-step": True}}), zoo=zoo,
                  planner=ChainPlanner(4), executor=executor, checkpoint_path={db!r}) as orch:
    orch.run("four slow steps", run_id={run_id!r}, budget=Budget(usd=Decimal("1"), calls=10))
"""


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _wait_for(log: Path, line_start: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith(line_start) for line in _lines(log)):
            return
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    raise AssertionError(f"'{line_start}' never appeared in {log}")


def _cli(*args: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_sigkilled_run_resumes_without_redoing_finished_steps(tmp_path):
    log = tmp_path / "runs" / RUN_ID / "executions.log"
    cards = tmp_path / "cards"
    cards.mkdir()

    (cards / "slow.yaml").write_text(CARD.format(sleep=0.6))
    db = tmp_path / "store" / "checkpoints.sqlite"
    script = SCRIPT.format(
        tests=str(TESTS), cards=str(cards), runs=str(tmp_path / "runs"), db=str(db), run_id=RUN_ID
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        _wait_for(log, "start s3", proc)  # s1 and s2 finished, s3 is running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker process, no clean-up
        proc.wait()
    before = _lines(log)
    assert [line.split()[:2] for line in before] == [
        ["start", "s1"],
        ["done", "s1"],
        ["start", "s2"],
        ["done", "s2"],
        ["start", "s3"],
    ]
    tokens = {line.split()[1]: line.split()[2] for line in before if line.startswith("done")}

    env = {
        **os.environ,
        "ORCHESTRATOR_CHECKPOINTS": str(db),
        "ORCHESTRATOR_RUNS_DIR": str(tmp_path / "runs"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    [stored] = _cli("runs", "list", "--json", env=env)
    assert stored["run_id"] == RUN_ID and stored["status"] == "unfinished"
    assert stored["spent"]["calls"] == 2 and Decimal(stored["spent"]["usd"]) == Decimal("0.02")

    # Resumed in this process, by a new orchestrator (the tools log into the run folder, which
    # the sandboxed worker pool would give them only a private copy of).
    zoo = Zoo.load([cards], builtin=False)
    config = Config(runs_dir=tmp_path / "runs")
    with Orchestrator(
        config, zoo=zoo, executor=InProcessExecutor(), planner=ChainPlanner(4), checkpoint_path=db
    ) as orch:
        result = orch.resume(RUN_ID).to_dict()

    after = _lines(log)[len(before) :]
    counts = {
        step: sum(1 for line in before + after if line.startswith(f"done {step} "))
        for step in ("s1", "s2", "s3", "s4")
    }
    assert counts == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}  # nothing finished ran again
    assert [line.split()[:2] for line in after] == [
        ["start", "s3"],
        ["done", "s3"],
        ["start", "s4"],
        ["done", "s4"],
    ]
    assert result["status"] == "ok"
    outputs = {s["step"]: s["outputs"]["text"] for s in result["steps"]}
    assert outputs["s1"] == f"s1:{tokens['s1']}" and outputs["s2"] == f"s2:{tokens['s2']}"
    # the two calls made before the kill are carried over: 4 calls, $0.04 in all
    assert result["spent"]["calls"] == 4
    assert Decimal(result["spent"]["usd"]) == Decimal("0.04")
    assert result["budget_left"]["calls"] == 6

    shown = _cli("runs", "show", RUN_ID, "--json", env=env)
    assert shown["status"] == "ok" and shown["answer"] == result["answer"]


def test_sigkilled_run_resumes_through_the_worker_pool(tmp_path):
    """The same kill and resume, with the resumed steps run by sandboxed worker processes.

    The tools log into a folder the card lets them write to (a worker sees only a private copy
    of the run folder), so the test can count executions across both parts of the run.
    """
    from orchestrator.execution.pool import WorkerPoolExecutor

    shared = tmp_path / "shared"
    shared.mkdir()
    log = shared / "executions.log"
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "slow.yaml").write_text(
        CARD_SHARED_LOG.format(sleep=0.6, log=str(log), log_dir=str(shared))
    )
    db = tmp_path / "store" / "checkpoints.sqlite"
    script = SCRIPT.format(
        tests=str(TESTS), cards=str(cards), runs=str(tmp_path / "runs"), db=str(db), run_id=RUN_ID
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        _wait_for(log, "start s3", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _lines(log)
    assert [line.split()[0] for line in before] == ["start", "done", "start", "done", "start"]
    tokens = {line.split()[1]: line.split()[2] for line in before if line.startswith("done")}

    zoo = Zoo.load([cards], builtin=False)
    approvals = Approvals({"slow-step": True})  # its permission to write the shared log
    executor = WorkerPoolExecutor(max_workers=1, extra_sys_path=[str(TESTS)], approvals=approvals)
    with Orchestrator(
        Config(runs_dir=tmp_path / "runs", approve={"slow-step": True}),
        zoo=zoo,
        executor=executor,
        planner=ChainPlanner(4),
        checkpoint_path=db,
    ) as orch:
        result = orch.resume(RUN_ID).to_dict()

    after = _lines(log)[len(before) :]
    assert [line.split()[:2] for line in after] == [
        ["start", "s3"],
        ["done", "s3"],
        ["start", "s4"],
        ["done", "s4"],
    ]
    counts = {
        step: sum(1 for line in before + after if line.startswith(f"done {step} "))
        for step in ("s1", "s2", "s3", "s4")
    }
    assert counts == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}
    assert result["status"] == "ok"
    outputs = {s["step"]: s["outputs"]["text"] for s in result["steps"]}
    assert outputs["s1"] == f"s1:{tokens['s1']}" and outputs["s2"] == f"s2:{tokens['s2']}"
    assert outputs["s4"].startswith("s4:") and outputs["s4"].split(":")[1] in after[-1]
    assert result["spent"]["calls"] == 4
    assert Decimal(result["spent"]["usd"]) == Decimal("0.04")
    # the resumed steps ran in a worker process, not in this one nor in the killed run
    pids = {int(line.split()[3]) for line in after if line.startswith("done")}
    assert len(pids) == 1 and pids.isdisjoint({os.getpid(), proc.pid})
