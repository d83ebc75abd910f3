"""Execution: run a card's model on its inputs, in warm sandboxed workers.

The executors are registered in :data:`EXECUTORS` (``pool``, the default: sandboxed warm
workers; ``inprocess``: no sandbox, for tests and debugging; ``ray``: a Ray cluster); the
config's ``executor`` names one, and installed packages add theirs through the
``orchestrator.executors`` entry point group. An executor class with a ``from_config(config)``
classmethod is built by it, any other is called without arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.errors import UnknownExecutor
from orchestrator.plugins import Registry

if TYPE_CHECKING:
    from orchestrator.config import Config
    from orchestrator.execution.pool import Executor

__all__ = ["EXECUTORS", "executor_from_config", "register_executor"]

EXECUTORS: Registry[Any] = Registry(
    "orchestrator.executors",
    UnknownExecutor,
    {
        "pool": "orchestrator.execution.pool:WorkerPoolExecutor",
        "inprocess": "orchestrator.execution.inprocess:InProcessExecutor",
        "ray": "orchestrator.execution.ray_executor:RayExecutor",
    },
)
"""Executor classes, built-in and from installed packages (group ``orchestrator.executors``)."""


def register_executor(name: str, executor: str | type) -> None:
    """Register an executor class (or factory), or a lazy ``module:Class``, under ``name``."""
    EXECUTORS.register(name, executor)


def executor_from_config(config: Config) -> Executor:
    """The executor the config's ``executor`` names, built from the config."""
    found = EXECUTORS.get(config.executor)
    from_config = getattr(found, "from_config", None)
    executor: Executor = from_config(config) if from_config is not None else found()
    return executor
