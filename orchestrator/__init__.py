"""Compose models as tools within a hard budget.

Plan a request, select a model per subtask by measured capability, run them in worker
processes, route their results, and answer.
"""

from typing import TYPE_CHECKING, Any

from orchestrator.budget import Budget
from orchestrator.cards import ToolCard, load_card
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import (
    BudgetExceeded,
    CardError,
    ConfigError,
    NoCapableTool,
    PlanError,
    RunFailure,
    ToolFailed,
    UserError,
)
from orchestrator.plan import Plan, Subtask

__all__ = [
    "Budget",
    "BudgetExceeded",
    "CardError",
    "Config",
    "ConfigError",
    "NoCapableTool",
    "Orchestrator",
    "Plan",
    "PlanError",
    "RunFailure",
    "RunResult",
    "StepRecord",
    "Subtask",
    "ToolCard",
    "ToolFailed",
    "UserError",
    "Zoo",
    "load_card",
]

if TYPE_CHECKING:
    from orchestrator.pipeline.orchestrator import Orchestrator, RunResult, StepRecord

_LAZY = {"Orchestrator", "RunResult", "StepRecord"}


def __getattr__(name: str) -> Any:
    # The run module pulls in LangGraph; worker processes import this package and never need it.
    if name in _LAZY:
        from orchestrator.pipeline import orchestrator as run

        return getattr(run, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
