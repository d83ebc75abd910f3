"""The worker-pool executor, with real worker processes running tests/_exec_tools.py."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, Usage
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import (
    CallLimit,
    CallOutcome,
    WorkerPoolExecutor,
    default_timeout_s,
)

TESTS_DIR = str(Path(__file__).resolve().parents[1])


def make_card(
    name: str,
    *,
    description: str = "A test tool that echoes its text input back.",
    options: dict[str, Any] | None = None,
    entry: str = "_exec_tools:load",
) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": description,
            "inputs": [
                {"name": "text", "type": "text"},
                {"name": "image", "type": "image", "optional": True},
            ],
            "outputs": [
                {"name": "reply", "type": "text"},
                {"name": "info", "type": "json"},
                {"name": "picture", "type": "image", "optional": True},
            ],
            "backend": {"kind": "python", "entry": entry, "options": options or {}},
            "cost": {"latency_s": 0.01, "load_s": 0.1},
        }
    )


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def marked_processes(marker: str) -> list[int]:
    """Processes (seen from here) whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def host_pid(pool: WorkerPoolExecutor, card: ToolCard) -> int:
    pid = pool.worker_pid(card)
    assert pid is not None
    return pid


def wait_gone(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


@pytest.fixture
def executor():
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR]) as pool:
        yield pool


@pytest.fixture
def ctx(tmp_path: Path) -> CallContext:
    return CallContext(scratch=tmp_path / "scratch", timeout_s=20)


def call(pool: WorkerPoolExecutor, card: ToolCard, text: str, ctx: CallContext) -> CallOutcome:
    return pool.call(card, {"text": text}, ctx)


def test_echo_round_trip(executor: WorkerPoolExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path / "scratch", max_tokens=12, timeout_s=20)
    outcome = call(executor, make_card("echo"), "echo héllo", ctx)
    assert outcome.outputs["reply"] == "echo héllo"
    info = outcome.outputs["info"]
    assert info["pid"] != os.getpid()
    assert info["scratch"] != str(tmp_path / "scratch")  # the sandbox's own scratch, copied out
    assert info["max_tokens"] == 12 and info["timeout_s"] == 20
    assert info["offline"] == "1"
    assert "picture" not in outcome.outputs
    assert outcome.load_seconds > 0 and 0 < outcome.seconds < 5
    assert outcome.usage == Usage()


def test_same_card_reuses_the_warm_worker(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    card = make_card("warm")
    first = call(executor, card, "echo 1", ctx)
    second = call(executor, make_card("warm"), "echo 2", ctx)
    assert first.load_seconds > 0
    assert second.load_seconds == 0
    assert second.outputs["info"]["worker"] == first.outputs["info"]["worker"]
    assert second.seconds < 0.5


def test_a_worker_outlives_the_thread_that_started_it(
    executor: WorkerPoolExecutor, ctx: CallContext
) -> None:
    # The graph calls tools from threads that come and go; a warm worker must stay warm.
    card = make_card("thread-started")
    first: list[CallOutcome] = []
    thread = threading.Thread(target=lambda: first.append(call(executor, card, "echo 1", ctx)))
    thread.start()
    thread.join()
    time.sleep(0.5)
    second = call(executor, card, "echo 2", ctx)
    assert first[0].load_seconds > 0
    assert second.load_seconds == 0
    assert second.outputs["info"]["worker"] == first[0].outputs["info"]["worker"]


def test_usage_is_reported(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    outcome = call(executor, make_card("counter"), "tokens", ctx)
    assert outcome.usage == Usage(input_tokens=7, output_tokens=3)


def test_tool_that_raises_leaves_the_worker_usable(
    executor: WorkerPoolExecutor, ctx: CallContext
) -> None:
    card = make_card("raiser")
    pid = call(executor, card, "echo", ctx).outputs["info"]["worker"]
    with pytest.raises(ToolFailed) as failed:
        call(executor, card, "raise the input is upside down", ctx)
    assert failed.value.card == "raiser"
    assert "ValueError: the input is upside down" in failed.value.reason
    assert "Traceback" in failed.value.detail and "_exec_tools.py" in failed.value.detail
    after = call(executor, card, "echo again", ctx)
    assert after.outputs["info"]["worker"] == pid and after.load_seconds == 0


def test_crashed_worker_is_replaced(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    card = make_card("crasher")
    worker = call(executor, card, "echo", ctx).outputs["info"]["worker"]
    pid = host_pid(executor, card)
    with pytest.raises(ToolFailed) as failed:
        call(executor, card, "exit 3", ctx)
    assert "exited with code 3" in failed.value.reason
    assert not alive(pid)
    after = call(executor, card, "echo", ctx)
    assert after.outputs["info"]["worker"] != worker and after.load_seconds > 0


def test_worker_killed_by_a_signal_names_it(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    with pytest.raises(ToolFailed) as failed:
        call(executor, make_card("signalled"), "signal SIGTERM", ctx)
    assert "signal SIGTERM (15)" in failed.value.reason


def test_worker_that_died_while_idle_is_restarted(
    executor: WorkerPoolExecutor, ctx: CallContext
) -> None:
    card = make_card("idle-death")
    worker = call(executor, card, "echo", ctx).outputs["info"]["worker"]
    pid = host_pid(executor, card)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    after = call(executor, card, "echo", ctx)
    assert after.outputs["info"]["worker"] != worker and after.load_seconds > 0


def test_timeout_kills_the_worker_and_its_children(
    executor: WorkerPoolExecutor, tmp_path: Path
) -> None:
    card = make_card("hanger")
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=1.0)
    worker = call(executor, card, "echo", ctx).outputs["info"]["worker"]
    pid = host_pid(executor, card)
    marker = f"hang-marker-{os.getpid()}-{time.monotonic_ns()}"
    started = time.monotonic()
    with pytest.raises(ToolFailed) as failed:
        call(executor, card, f"hang 60 {marker}", ctx)
    elapsed = time.monotonic() - started
    assert "timed out after 1 s" in failed.value.reason
    assert 1.0 <= elapsed < 2.5
    deadline = time.monotonic() + 1.0
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not marked_processes(marker), "the tool's subprocess survived the timeout"
    assert not alive(pid)
    assert call(executor, card, "echo", ctx).outputs["info"]["worker"] != worker


def test_junk_on_stdout_does_not_break_the_protocol(
    executor: WorkerPoolExecutor, ctx: CallContext
) -> None:
    card = make_card("noisy", options={"load_print": True})
    for _ in range(2):
        outcome = call(executor, card, "junk", ctx)
        assert outcome.outputs["reply"] == "junk"


@pytest.mark.parametrize(
    ("command", "output", "words"),
    [
        ("wrong-type", "reply", "must be text (str), got int"),
        ("missing", "reply", "is missing"),
        ("not-json", "info", "not JSON-serializable"),
        ("outside-file", "picture", "outside the scratch folder"),
    ],
)
def test_outputs_that_do_not_match_the_card_fail(
    executor: WorkerPoolExecutor, ctx: CallContext, command: str, output: str, words: str
) -> None:
    card = make_card("sloppy")
    with pytest.raises(ToolFailed) as failed:
        call(executor, card, command, ctx)
    assert f"output '{output}'" in failed.value.reason and words in failed.value.reason
    assert call(executor, card, "echo", ctx).load_seconds == 0


def test_file_output_inside_scratch(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    outcome = call(executor, make_card("painter"), "scratch-file", ctx)
    picture = Path(outcome.outputs["picture"])
    assert picture.is_absolute() and picture.is_file()
    assert picture.parent == Path(ctx.scratch).resolve()


def test_file_inputs_become_absolute_paths(
    executor: WorkerPoolExecutor, ctx: CallContext, tmp_path: Path, monkeypatch: Any
) -> None:
    card = make_card("looker")
    (tmp_path / "in.png").write_bytes(b"png")
    monkeypatch.chdir(tmp_path)
    outcome = executor.call(card, {"text": "read-image", "image": "in.png"}, ctx)
    seen = outcome.outputs["info"]["inputs"]["image"]
    assert os.path.isabs(seen) and seen.endswith("in.png")  # a copy inside the sandbox
    assert outcome.outputs["reply"] == "png"
    with pytest.raises(ToolFailed, match="input 'image' file does not exist"):
        executor.call(card, {"text": "echo", "image": "absent.png"}, ctx)
    with pytest.raises(ToolFailed, match="required input 'text' is missing"):
        executor.call(card, {"image": "in.png"}, ctx)


def test_different_cards_run_in_parallel(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    cards = [make_card("slow-a"), make_card("slow-b")]
    for card in cards:
        call(executor, card, "echo warm", ctx)
    results: list[CallOutcome] = []

    def run(card: ToolCard) -> None:
        results.append(call(executor, card, "sleep 1", ctx))

    threads = [threading.Thread(target=run, args=(card,)) for card in cards]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert len(results) == 2
    assert 1.0 <= elapsed < 1.8


def test_calls_to_one_worker_are_serialized(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    card = make_card("one-at-a-time")
    call(executor, card, "echo warm", ctx)
    replies: list[str] = []

    def run(text: str) -> None:
        replies.append(call(executor, card, text, ctx).outputs["reply"])

    threads = [threading.Thread(target=run, args=(f"sleep 0.{i}",)) for i in (3, 4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == ["sleep 0.3", "sleep 0.4"]
    assert time.monotonic() - started >= 0.7


def test_edited_card_gets_a_new_worker(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    first = call(executor, make_card("edited"), "echo", ctx).outputs["info"]["worker"]
    old = host_pid(executor, make_card("edited"))
    edited = make_card("edited", description="The same test tool, described differently.")
    outcome = call(executor, edited, "echo", ctx)
    assert outcome.outputs["info"]["worker"] != first and outcome.load_seconds > 0
    assert wait_gone(old), "the worker of the old card version was not stopped"


def test_least_recently_used_idle_worker_is_evicted(ctx: CallContext) -> None:
    with WorkerPoolExecutor(max_workers=2, extra_sys_path=[TESTS_DIR]) as pool:
        a, b, c = make_card("lru-a"), make_card("lru-b"), make_card("lru-c")
        worker_a = call(pool, a, "echo", ctx).outputs["info"]["worker"]
        pid_a = host_pid(pool, a)
        call(pool, b, "echo", ctx)
        pid_b = host_pid(pool, b)
        call(pool, a, "echo", ctx)  # b is now the least recently used
        call(pool, c, "echo", ctx)
        pid_c = host_pid(pool, c)
        assert wait_gone(pid_b)
        assert alive(pid_a) and alive(pid_c)
        again = call(pool, a, "echo", ctx)
        assert again.load_seconds == 0 and again.outputs["info"]["worker"] == worker_a


def test_close_stops_every_worker(ctx: CallContext) -> None:
    pool = WorkerPoolExecutor(extra_sys_path=[TESTS_DIR])
    cards = [make_card(f"closing-{i}") for i in (1, 2)]
    for card in cards:
        call(pool, card, "echo", ctx)
    pids = [host_pid(pool, card) for card in cards]
    assert all(alive(pid) for pid in pids)
    pool.close()
    assert not any(alive(pid) for pid in pids)
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        call(pool, make_card("closing-1"), "echo", ctx)


def _sleeping_call(
    pool: WorkerPoolExecutor, card: ToolCard, ctx: CallContext
) -> tuple[threading.Thread, list[ToolFailed]]:
    """A 30 s call on a thread of its own; the list gets its failure."""
    failures: list[ToolFailed] = []

    def run() -> None:
        try:
            call(pool, card, "sleep 30", ctx)
        except ToolFailed as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failures


def test_close_during_a_call_fails_that_call(ctx: CallContext) -> None:
    pool = WorkerPoolExecutor(extra_sys_path=[TESTS_DIR])
    card = make_card("interrupted")
    call(pool, card, "echo", ctx)
    pid = host_pid(pool, card)
    thread, failures = _sleeping_call(pool, card, ctx)
    time.sleep(0.3)
    pool.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(failures) == 1 and "SIGKILL" in failures[0].reason
    assert not alive(pid)


def test_stop_running_fails_the_call_in_flight_and_the_pool_goes_on(ctx: CallContext) -> None:
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR]) as pool:
        card, idle = make_card("stuck"), make_card("idle")
        call(pool, idle, "echo", ctx)
        idle_pid = host_pid(pool, idle)
        thread, failures = _sleeping_call(pool, card, ctx)
        deadline = time.monotonic() + 60
        while pool.worker_pid(card) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert pool.stop_running() == 1
        thread.join(timeout=5)
        assert not thread.is_alive() and len(failures) == 1
        assert alive(idle_pid)  # the idle worker was left alone
        assert call(pool, card, "echo", ctx).outputs  # a new worker serves the next call


def test_load_error_is_reported(executor: WorkerPoolExecutor, ctx: CallContext) -> None:
    card = make_card("broken", options={"load_error": "weights not found in the folder"})
    with pytest.raises(ToolFailed) as failed:
        call(executor, card, "echo", ctx)
    assert failed.value.reason == "failed to load: RuntimeError: weights not found in the folder"
    assert "Traceback" in failed.value.detail
    missing = make_card("no-module", entry="no_such_module_here:load")
    with pytest.raises(ToolFailed, match="ModuleNotFoundError"):
        call(executor, missing, "echo", ctx)


def test_slow_load_times_out(ctx: CallContext) -> None:
    card = make_card("sluggish", options={"load_sleep": 30})
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], start_timeout_s=1.5) as pool:
        started = time.monotonic()
        with pytest.raises(ToolFailed, match="loading took longer than 1.5 s"):
            call(pool, card, "echo", ctx)
        assert time.monotonic() - started < 3.5


def test_result_too_large_fails_cleanly(ctx: CallContext) -> None:
    card = make_card("verbose")
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], max_result_bytes=20_000) as pool:
        assert call(pool, card, "big 1000", ctx).outputs["reply"] == "x" * 1000
        with pytest.raises(ToolFailed, match="larger than 20000 bytes"):
            call(pool, card, "big 100000", ctx)
        assert call(pool, card, "big 10", ctx).load_seconds > 0


class _ScriptedWorker(WorkerPoolExecutor):
    """A pool whose worker command is a tiny script that answers the card line with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(start_timeout_s=10)
        self.reply = reply

    def worker_command(self, card: ToolCard) -> list[str]:
        script = (
            "import sys; sys.stdin.readline(); "
            f"sys.stdout.buffer.write({self.reply!r}); sys.stdout.flush(); "
        )
        if self.reply:
            script += "sys.stdin.read()"  # stay alive: the parent must not wait for the end
        return [sys.executable, "-c", script]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"\xff\xfe not utf-8\n", "unreadable reply (UnicodeDecodeError)"),
        (b"{not json\n", "unreadable reply (JSONDecodeError)"),
        (b"[1, 2]\n", "not a JSON object"),
        (b"", "closed its protocol pipe while loading"),
    ],
)
def test_garbled_worker_replies_fail_cleanly(ctx: CallContext, reply: bytes, words: str) -> None:
    with _ScriptedWorker(reply) as pool, pytest.raises(ToolFailed) as failed:
        call(pool, make_card("garbled"), "echo", ctx)
    assert words in failed.value.reason


def test_worker_environment(tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path)
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], env={"EXEC_TEST_MARKER": "m1"}) as pool:
        info = call(pool, make_card("environ"), "echo", ctx).outputs["info"]
    assert info["marker"] == "m1" and info["offline"] == "1"


def test_default_timeout_grows_with_expected_latency() -> None:
    assert default_timeout_s(make_card("fast")) == pytest.approx(30.2)


def test_a_call_limit_stops_a_slow_load_in_time(ctx: CallContext) -> None:
    card = make_card("limited-loader", options={"load_sleep": 30})
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR]) as pool:
        started = time.monotonic()
        with pytest.raises(ToolFailed) as failed:
            pool.call(card, {"text": "echo"}, ctx, limit=CallLimit(1.0, "raise it"))
        assert time.monotonic() - started <= 1.0  # the whole call, start-up and kill included
        assert failed.value.reason.startswith("loading took longer than the")
        assert failed.value.reason.endswith("s the budget leaves; worker killed; raise it")


def test_a_call_limit_cuts_the_call_timeout(executor: WorkerPoolExecutor, tmp_path: Path) -> None:
    card = make_card("limited-caller")
    ctx = CallContext(scratch=tmp_path / "scratch")  # no timeout: the card's default, 30.2 s
    outcome = executor.call(card, {"text": "echo"}, ctx, limit=CallLimit(10.0))
    assert 0 < outcome.outputs["info"]["timeout_s"] <= 10.0  # the tool is told the cut timeout
    assert outcome.seconds + outcome.load_seconds <= 10.0
    started = time.monotonic()
    with pytest.raises(ToolFailed, match="the call took longer than the .* budget leaves"):
        executor.call(card, {"text": "sleep 10"}, ctx, limit=CallLimit(1.5))
    assert time.monotonic() - started <= 1.5


def test_waiting_for_a_busy_worker_counts_against_the_limit(
    executor: WorkerPoolExecutor, ctx: CallContext
) -> None:
    card = make_card("busy")
    call(executor, card, "echo", ctx)  # warm
    first = threading.Thread(target=call, args=(executor, card, "sleep 3", ctx))
    first.start()
    time.sleep(0.5)  # the first call holds the worker for 3 s
    started = time.monotonic()
    with pytest.raises(ToolFailed) as failed:
        executor.call(card, {"text": "echo"}, ctx, limit=CallLimit(1.0, "raise it"))
    assert time.monotonic() - started <= 1.0
    assert failed.value.reason.startswith("waiting for a free worker took the")
    first.join()
