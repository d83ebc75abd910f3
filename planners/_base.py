"""The planner interface: a request (and attached files) in, a validated plan out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from orchestrator.plan import Plan
from orchestrator.zoo import Zoo

__all__ = ["Planner"]


class Planner(Protocol):
    """Turns a request into a DAG of subtasks over the tasks of ``zoo``."""

    name: str

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """Plan ``request``; raise a UserError subclass saying what to fix when it cannot."""
        ...
