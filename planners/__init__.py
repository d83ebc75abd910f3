"""Planners: turn a request into a plan. The registry is explicit; built-ins use it too."""

from __future__ import annotations

import importlib
from typing import Any

from planners._base import Planner

__all__ = ["Planner", "UnknownPlanner", "get_planner", "planner_names", "register_planner"]

_REGISTRY: dict[str, str | type] = {
    "embedded": "planners.embedded:EmbeddedPlanner",
}


class UnknownPlanner(KeyError):
    """No planner is registered under this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown planner '{name}'; known: {', '.join(sorted(_REGISTRY))}")


def register_planner(name: str, planner: str | type) -> None:
    """Register a planner class, or a lazy ``module:Class`` reference, under ``name``."""
    _REGISTRY[name] = planner


def planner_names() -> list[str]:
    return sorted(_REGISTRY)


def get_planner(name: str, **options: Any) -> Planner:
    """A new planner of the kind registered under ``name``."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise UnknownPlanner(name) from None
    if isinstance(entry, str):
        module_name, _, class_name = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), class_name)
        _REGISTRY[name] = entry
    planner: Planner = entry(**options)
    return planner
