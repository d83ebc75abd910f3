"""The ``orchestrator eval ...`` and ``orchestrator bench ...`` command groups, filled.

Each evaluation or benchmark lives in its own module and adds its command to an app of
:mod:`orchestrator.evals.apps` when imported; the imports below are the registry.
"""

from __future__ import annotations

from orchestrator.evals import bench_executor as _bench_executor  # noqa: F401
from orchestrator.evals import bench_planning as _bench_planning  # noqa: F401
from orchestrator.evals import bench_selection as _bench_selection  # noqa: F401
from orchestrator.evals import bench_server as _bench_server  # noqa: F401
from orchestrator.evals import planning as _planning  # noqa: F401
from orchestrator.evals import routing as _routing  # noqa: F401
from orchestrator.evals import selection as _selection  # noqa: F401
from orchestrator.evals.apps import bench_app, eval_app

__all__ = ["bench_app", "eval_app"]
