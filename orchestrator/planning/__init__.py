"""Planners: turn a request into a plan.

The registry (:data:`PLANNERS`) is explicit; built-ins use it too, and installed packages add to
it through the ``orchestrator.planners`` entry point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import UnknownPlanner
from orchestrator.planning.base import Planner, ToolPlanner
from orchestrator.planning.repair import checked_plan, plan_problems
from orchestrator.planning.toolset import Example, ToolPlan, ToolSet, ToolSpec
from orchestrator.plugins import Registry

if TYPE_CHECKING:
    from orchestrator.config import Config

__all__ = [
    "PLANNERS",
    "Example",
    "Planner",
    "ToolPlan",
    "ToolPlanner",
    "ToolSet",
    "ToolSpec",
    "checked_plan",
    "get_planner",
    "planner_from_config",
    "plan_problems",
    "planner_names",
    "register_planner",
]

PLANNERS: Registry[type] = Registry(
    "orchestrator.planners",
    UnknownPlanner,
    {
        "embedded": "orchestrator.planning.embedded:EmbeddedPlanner",
        "llm": "orchestrator.planning.llm:LlmPlanner",
    },
)
"""Planner classes, built-in and from installed packages (group ``orchestrator.planners``)."""


def register_planner(name: str, planner: str | type) -> None:
    """Register a planner class, or a lazy ``module:Class`` reference, under ``name``."""
    PLANNERS.register(name, planner)


def planner_names() -> list[str]:
    return PLANNERS.names()


def _planner_class(name: str) -> type:
    return PLANNERS.get(name)


def get_planner(name: str, **options: Any) -> Planner:
    """A new planner of the kind registered under ``name``."""
    planner: Planner = _planner_class(name)(**options)
    return planner


def planner_from_config(config: Config) -> Planner:
    """The planner the config asks for.

    ``planner = "auto"`` (the default) is the LLM planner when an LLM endpoint is configured
    (``[llm] base_url`` or ``$ORCHESTRATOR_LLM_BASE_URL``) and the embedded one otherwise; the
    LLM planner falls back to the embedded one for every plan it cannot make valid. Any other
    name is looked up in the registry (``"embedded"`` forces the embedded planner); ``"llm"``
    takes its endpoint from the ``[llm]`` section.
    """
    name = config.planner
    if name == "auto":
        name = "llm" if config.llm.configured else "embedded"
    if name == "llm":
        planner: Planner = _planner_class("llm").from_config(config.llm)  # type: ignore[attr-defined]
        return planner
    return get_planner(name)
