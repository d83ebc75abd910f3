"""The ``orchestrator eval ...`` and ``orchestrator bench ...`` command groups, still empty.

Each evaluation or benchmark module adds its command to one of these when imported;
:mod:`orchestrator.evals.cli` imports them all.
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
