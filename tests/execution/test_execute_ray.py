"""The Ray executor backend, on a local Ray cluster started by the test (the `ray` extra)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext
from orchestrator.errors import ToolFailed

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")

from orchestrator.execution.ray_executor import RayExecutor  # noqa: E402

TESTS_DIR = str(Path(__file__).resolve().parents[1])


def card(name: str) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": "A test tool that echoes its text input back.",
            "inputs": [
                {"name": "text", "type": "text"},
                {"name": "image", "type": "image", "optional": True},
            ],
            "outputs": [
                {"name": "reply", "type": "text"},
                {"name": "info", "type": "json"},
                {"name": "picture", "type": "image", "optional": True},
            ],
            "backend": {"kind": "python", "entry": "_exec_tools:load"},
            "cost": {"latency_s": 0.01, "load_s": 0.1},
        }
    )


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor(extra_sys_path=[TESTS_DIR]) as pool:
            yield pool
    finally:
        ray.shutdown()


def call(pool: RayExecutor, c: ToolCard, text: str, ctx: CallContext, **more: Any):
    return pool.call(c, {"text": text, **more}, ctx)


def test_round_trip_with_files_and_warm_reuse(executor: RayExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=60)
    (tmp_path / "in.png").write_text("png bytes")
    c = card("ray-echo")
    assert not executor.is_warm(c)
    first = call(executor, c, "read-image", ctx, image=str(tmp_path / "in.png"))
    assert first.outputs["reply"] == "png bytes" and first.load_seconds > 0
    assert executor.is_warm(c)
    second = call(executor, c, "scratch-file", ctx)
    assert second.load_seconds == 0
    assert second.outputs["info"]["worker"] == first.outputs["info"]["worker"]
    picture = Path(second.outputs["picture"])
    assert picture.parent == ctx.scratch and picture.read_bytes() == b"\x89PNG fake"


def test_failures_are_tool_failed(executor: RayExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path, timeout_s=2)
    c = card("ray-fail")
    with pytest.raises(ToolFailed, match="ValueError: broken on purpose"):
        call(executor, c, "raise broken on purpose", ctx)
    with pytest.raises(ToolFailed, match="timed out after 2 s"):
        call(executor, c, "sleep 30", ctx)
    assert call(executor, c, "echo", ctx).outputs["reply"] == "echo"


def test_independent_calls_run_in_parallel(executor: RayExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path, timeout_s=60)
    cards = [card(f"ray-par-{i}") for i in range(3)]
    for c in cards:
        call(executor, c, "echo", ctx)
    threads = [threading.Thread(target=call, args=(executor, c, "sleep 1", ctx)) for c in cards]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1.0 <= time.monotonic() - started < 2.5
