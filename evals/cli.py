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
