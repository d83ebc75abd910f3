"""The ``orchestrator eval ...`` and ``orchestrator bench ...`` command groups.

Each evaluation or benchmark lives in its own module and registers its command on these apps
when imported; the imports at the end of this file are the registry.
"""

from __future__ import annotations

import typer

__all__ = ["bench_app", "eval_app"]

eval_app = typer.Typer(
    help="Score the orchestrator on public benchmark data (paths given on the command line).",
    no_args_is_help=True,
)
bench_app = typer.Typer(
    help="Measure speed on generated inputs; prints the figures.", no_args_is_help=True
)

# Registered evaluations and benchmarks (each module adds its commands on import).
from orchestrator.evals import bench_executor as _bench_executor  # noqa: E402,F401
from orchestrator.evals import bench_planning as _bench_planning  # noqa: E402,F401
from orchestrator.evals import bench_selection as _bench_selection  # noqa: E402,F401
from orchestrator.evals import bench_server as _bench_server  # noqa: E402,F401
from orchestrator.evals import planning as _planning  # noqa: E402,F401
from orchestrator.evals import routing as _routing  # noqa: E402,F401
from orchestrator.evals import selection as _selection  # noqa: E402,F401
