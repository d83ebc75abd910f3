"""The planner interface: a request (and attached files) in, a validated plan out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from orchestrator.cards.zoo import Zoo
from orchestrator.plan import Plan
from orchestrator.planning.toolset import ToolPlan, ToolSet

__all__ = ["Planner", "ToolPlanner"]


class Planner(Protocol):
    """Turns a request into a DAG of subtasks over the tasks of ``zoo``."""

    name: str

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """Plan ``request``; raise a UserError subclass saying what to fix when it cannot."""
        ...


class ToolPlanner(Protocol):
    """Plans over a tool set by name (e.g. a benchmark's tools): tools in order, and links."""

    name: str

    def plan_tools(self, request: str, tools: ToolSet) -> ToolPlan:
        """The tools ``request`` needs, in the order they run, and which feeds which."""
        ...
