"""Tools and a planner for tests/pipeline/test_resume.py (run in a subprocess that gets SIGKILLed).

Each call appends ``start <text>`` to ``executions.log`` in the run folder (the only folder a
tool may write to by default), sleeps, then appends ``done <text> <token> <pid>`` and returns
the token in its output, so the test can count executions (and see which process ran them) and
check that a finished step's output survives a resume unchanged. With the ``log`` option
(:data:`CARD_SHARED_LOG`) the log is that file instead, in a folder the card's permissions let
a sandboxed worker write to: the worker pool gives a tool only a private copy of the run folder.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.plan import Plan, Subtask, TextArg

CARD = """
name: slow-step
task: text-generation
description: A slow test step that logs each execution of a subtask.
inputs: [{{name: text, type: text}}]
outputs: [{{name: text, type: text}}]
backend: {{kind: python, entry: "_resume_tools:load", options: {{sleep: {sleep}}}}}
cost: {{usd_per_call: "0.01", latency_s: 0.5, load_s: 0}}
"""

CARD_SHARED_LOG = """
name: slow-step
task: text-generation
description: A slow test step that logs each execution of a subtask.
inputs: [{{name: text, type: text}}]
outputs: [{{name: text, type: text}}]
backend: {{kind: python, entry: "_resume_tools:load", options: {{sleep: {sleep}, log: "{log}"}}}}
cost: {{usd_per_call: "0.01", latency_s: 0.5, load_s: 0}}
permissions: {{write: ["{log_dir}"]}}
"""


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load(options: dict[str, Any]) -> Any:
    def tool(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        text = str(inputs["text"])
        log = str(options.get("log") or ctx.scratch / "executions.log")
        _append(log, f"start {text}")
        time.sleep(float(options["sleep"]))
        token = uuid.uuid4().hex[:8]
        _append(log, f"done {text} {token} {os.getpid()}")
        return {"text": f"{text}:{token}"}

    return tool


class ChainPlanner:
    """A fixed plan of ``steps`` subtasks, each depending on the one before."""

    name = "chain"

    def __init__(self, steps: int = 4) -> None:
        self.steps = steps

    def plan(self, request: str, zoo: Any, *, files: Any = ()) -> Plan:
        subtasks = [
            Subtask(
                id=f"s{i}",
                task="text-generation",
                instruction=f"step s{i}",
                deps=[f"s{i - 1}"] if i > 1 else [],
                args={"text": TextArg(value=f"s{i}")},
            )
            for i in range(1, self.steps + 1)
        ]
        return Plan(request=request, subtasks=subtasks, planner=self.name)
