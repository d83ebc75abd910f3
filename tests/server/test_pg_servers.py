"""Two ``orchestrator serve`` processes on one PostgreSQL run store and one shared runs folder.

The PostgreSQL server is Debian's, started by the test (tests/_pg_tools.py). Both servers are
real subprocesses; their plan is a fixed chain of four slow logged steps (tests/_resume_tools.py)
run in-process, so killing server A mid-run ends every part of that run at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from orchestrator.evals.bench_server import free_port

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from _pg_tools import PgServer  # noqa: E402
from _resume_tools import CARD  # noqa: E402
from _server_tools import png_bytes  # noqa: E402

LAUNCH = """
import sys
sys.path.insert(0, {tests!r})
from _resume_tools import ChainPlanner
from orchestrator.plan import Plan
from orchestrator.planning import register_planner

class SlowChain(ChainPlanner):  # every step on the slow-step card, not a built-in LLM
    def plan(self, request, zoo, *, files=()):
        plan = super().plan(request, zoo, files=files)
        steps = [s.model_copy(update={{"cards": ["slow-step"]}}) for s in plan.subtasks]
        return Plan(request=plan.request, subtasks=steps, planner=plan.planner)

register_planner("chain", SlowChain)
from orchestrator.cli import app
app(["serve", "--host", "127.0.0.1", "--port", sys.argv[1]])
"""

CONFIG = """
planner = "chain"
executor = "inprocess"
card_dirs = [{cards!r}]

[approve]
slow-step = true

[budget]
calls = 10

[server]
api_key = "key-one,key-two"

[store]
url = {url!r}
"""

ONE = {"Authorization": "Bearer key-one"}
TWO = {"Authorization": "Bearer key-two"}


class Server:
    """``orchestrator serve`` in its own process group (so that a kill ends all of it)."""

    def __init__(self, folder: Path, config: Path, runs: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / "server.log"
        env = {
            **os.environ,
            "ORCHESTRATOR_CONFIG": str(config),
            "ORCHESTRATOR_RUNS_DIR": str(runs),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCH.format(tests=str(TESTS)), str(port)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def pg():
    server = PgServer().start()
    yield server
    server.stop()


@pytest.fixture
def two_servers(pg, tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "slow.yaml").write_text(CARD.format(sleep=0.8))
    config = tmp_path / "orchestrator.toml"
    config.write_text(CONFIG.format(cards=str(cards), url=pg.database()))
    runs = tmp_path / "shared-runs"  # the folder both servers share (file contents)
    a = Server(tmp_path / "a", config, runs)
    try:
        b = Server(tmp_path / "b", config, runs)
    except BaseException:
        a.stop()
        raise
    yield a, b, runs
    a.stop()
    b.stop()


def _ask(server: Server, text: str, **extra: object) -> httpx.Response:
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=ONE, timeout=120)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_run_and_an_upload_made_on_one_server_are_seen_through_the_other(two_servers):
    a, b, _runs = two_servers
    answer = _ask(a, "four slow steps")
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["orchestrator"]["run_id"]

    listed = httpx.get(f"{b.url}/v1/runs", headers=ONE, timeout=30)
    assert listed.status_code == 200, listed.text
    [row] = [r for r in listed.json()["data"] if r["run_id"] == run_id]
    assert row["status"] == "ok" and row["spent"]["calls"] == 4
    assert Decimal(str(row["spent"]["usd"])) == Decimal("0.04")
    shown = httpx.get(f"{b.url}/v1/runs/{run_id}", headers=ONE, timeout=30).json()
    assert shown["status"] == "ok"
    assert [(s["step"], s["card"]) for s in shown["steps"]] == [
        ("s1", "slow-step"), ("s2", "slow-step"), ("s3", "slow-step"), ("s4", "slow-step"),
    ]  # fmt: skip
    # another client sees neither the run nor it in the list
    assert httpx.get(f"{b.url}/v1/runs/{run_id}", headers=TWO, timeout=30).status_code == 404
    assert httpx.get(f"{b.url}/v1/runs", headers=TWO, timeout=30).json()["data"] == []

    image = png_bytes()
    up = httpx.post(
        f"{a.url}/v1/files", files={"file": ("box.png", image)}, headers=ONE, timeout=30
    )
    assert up.status_code == 200, up.text
    file_id = up.json()["id"]
    info = httpx.get(f"{b.url}/v1/files/{file_id}", headers=ONE, timeout=30)
    assert info.status_code == 200 and info.json()["bytes"] == len(image)
    content = httpx.get(f"{b.url}/v1/files/{file_id}/content", headers=ONE, timeout=30)
    assert content.content == image
    assert httpx.get(f"{b.url}/v1/files/{file_id}", headers=TWO, timeout=30).status_code == 404
    # used by id in a request to B: B finds A's upload and runs
    parts = [
        {"type": "text", "text": "four slow steps, with this picture"},
        {"type": "file", "file": {"file_id": file_id}},
    ]
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": parts}]}
    used = httpx.post(f"{b.url}/v1/chat/completions", json=body, headers=ONE, timeout=120)
    assert used.status_code == 200, used.text
    assert used.json()["orchestrator"]["status"] == "ok"


def test_a_run_cut_short_by_killing_its_server_is_resumed_through_the_other(two_servers):
    a, b, runs = two_servers
    threading.Thread(target=lambda: _swallow(_ask, a, "four slow steps"), daemon=True).start()
    run_id = _wait_for_run(b)
    log = runs / run_id / "executions.log"
    deadline = time.monotonic() + 60
    while not any(line.startswith("start s3") for line in _lines(log)):
        assert time.monotonic() < deadline, f"s3 never started:\n{a.log.read_text()[-2000:]}"
        time.sleep(0.02)
    a.kill()  # s1 and s2 finished, s3 is running: no clean-up of any kind
    before = _lines(log)
    assert [line.split()[:2] for line in before] == [
        ["start", "s1"], ["done", "s1"], ["start", "s2"], ["done", "s2"], ["start", "s3"],
    ]  # fmt: skip

    shown = httpx.get(f"{b.url}/v1/runs/{run_id}", headers=ONE, timeout=30).json()
    assert shown["status"] == "unfinished"
    assert {s["step"]: s["status"] for s in shown["steps"]}["s2"] == "done"

    resumed = httpx.post(f"{b.url}/v1/runs/{run_id}/resume", headers=ONE, timeout=120)
    assert resumed.status_code == 200, resumed.text
    result = resumed.json()
    assert result["status"] == "ok" and result["spent"]["calls"] == 4
    assert Decimal(str(result["spent"]["usd"])) == Decimal("0.04")  # the two before the kill too
    after = _lines(log)[len(before) :]
    assert [line.split()[:2] for line in after] == [
        ["start", "s3"], ["done", "s3"], ["start", "s4"], ["done", "s4"],
    ]  # fmt: skip
    done = [line.split()[1] for line in before + after if line.startswith("done")]
    assert done == ["s1", "s2", "s3", "s4"]  # no finished step ran again
    assert {int(line.split()[3]) for line in after if line.startswith("done")} == {b.proc.pid}
    again = httpx.get(f"{b.url}/v1/runs", headers=ONE, timeout=30).json()["data"]
    assert [r["status"] for r in again if r["run_id"] == run_id] == ["ok"]


def _swallow(call, *args) -> None:
    try:
        call(*args)
    except httpx.TransportError:
        pass  # the server is killed under this request


def _wait_for_run(server: Server) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = httpx.get(f"{server.url}/v1/runs", headers=ONE, timeout=30).json()["data"]
        if rows:
            return str(rows[0]["run_id"])
        time.sleep(0.1)
    raise AssertionError("the run started on A never showed on B")
