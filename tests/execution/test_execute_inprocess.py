"""The in-process executor under a call limit: a load over it fails, the call's timeout is cut."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext
from orchestrator.errors import ToolFailed
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.execution.pool import CallLimit

TOOL = """
import time


def load(options):
    time.sleep(float(options.get("load_sleep", 0)))

    def tool(inputs, ctx):
        return {"reply": f"timeout {ctx.timeout_s}"}

    return tool
"""


@pytest.fixture(scope="module")
def tool_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    folder = tmp_path_factory.mktemp("inprocess-tools")
    (folder / "inprocess_timed.py").write_text(TOOL)
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))


def card(name: str, **options: float) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": "Says what timeout it was given.",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "reply", "type": "text"}],
            "backend": {"kind": "python", "entry": "inprocess_timed:load", "options": options},
        }
    )


def test_a_load_longer_than_the_limit_fails_the_call(tool_module: None, tmp_path: Path) -> None:
    executor = InProcessExecutor()
    ctx = CallContext(scratch=tmp_path)
    with pytest.raises(ToolFailed) as failed:
        executor.call(card("slow-in", load_sleep=0.5), {"text": "x"}, ctx, CallLimit(0.2, "more"))
    assert failed.value.reason == "loading took longer than the 0.2 s the budget leaves; more"


def test_the_call_timeout_is_cut_to_what_the_limit_leaves(
    tool_module: None, tmp_path: Path
) -> None:
    executor = InProcessExecutor()
    fast = card("fast-in")
    unlimited = executor.call(fast, {"text": "x"}, CallContext(scratch=tmp_path))
    assert unlimited.outputs["reply"] == "timeout None"
    limited = executor.call(fast, {"text": "x"}, CallContext(scratch=tmp_path), CallLimit(5.0))
    given = float(limited.outputs["reply"].split()[1])
    assert 0 < given <= 5.0
    own = CallContext(scratch=tmp_path, timeout_s=2.0)
    assert executor.call(fast, {"text": "x"}, own, CallLimit(5.0)).outputs["reply"] == "timeout 2.0"
