"""A tiny tool for ``orchestrator bench executor``, loaded inside sandboxed workers.

Its text input is ``"echo"``, ``"sleep S"`` (I/O-bound: waits S seconds) or ``"spin N"``
(CPU-bound: N iterations of pure-Python arithmetic).
"""

from __future__ import annotations

import time
from typing import Any


def load(options: dict[str, Any]) -> Any:
    """The bench tool (no model to load)."""
    return tool


def spin(iterations: int) -> int:
    """Pure-Python work that holds one core."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def tool(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Run the command named by the text input."""
    command, _, argument = str(inputs["text"]).partition(" ")
    if command == "sleep":
        time.sleep(float(argument))
    elif command == "spin":
        return {"text": str(spin(int(argument)))}
    return {"text": command}
