"""``orchestrator runs list | show ID | resume ID``: the runs kept in the run store.

Every run is stored by a LangGraph SQLite checkpointer (``checkpoints.sqlite`` in the runs
folder, or ``$ORCHESTRATOR_CHECKPOINTS``) under its run id, step by step, so a run whose process
died can be resumed: finished subtasks are not run again and what was spent is carried over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import UserError

__all__ = ["runs_app"]

runs_app = typer.Typer(help="List, show and resume stored runs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

CardsOption = Annotated[
    list[Path] | None, typer.Option("--cards", help="extra folder of tool cards (repeatable)")
]


def _orchestrator(cards: list[Path] | None, *, resume: bool = False):  # noqa: ANN202
    from orchestrator.cli import _config, _zoo
    from orchestrator.run import Orchestrator, checkpoints_path

    config = _config(cards)
    if not resume:
        if not checkpoints_path(config).exists():
            return None
        # Listing and showing read the store only: no model is loaded, no worker started.
        from orchestrator.execute_inprocess import InProcessExecutor
        from orchestrator.zoo import Zoo

        return Orchestrator(config, zoo=Zoo(), executor=InProcessExecutor())
    return Orchestrator(config, zoo=_zoo(config))


@runs_app.command("list")
def runs_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every stored run: id, status (``unfinished`` if it did not end), what it spent."""
    orch = _orchestrator(None)
    rows = orch.runs() if orch else []
    if orch:
        orch.close()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no stored runs")
    for row in rows:
        spent = row["spent"]
        console.print(
            f"{row['run_id']}  {row['status']:<16} ${spent['usd']} {spent['calls']} calls  "
            f"{row['request'][:60]!r}",
            markup=False,
            highlight=False,
        )


@runs_app.command("show")
def runs_show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One stored run: plan, steps, decisions, answer, spent."""
    from orchestrator.report import print_result

    orch = _orchestrator(None)
    if orch is None:
        err.print("error: no run store yet", markup=False)
        raise typer.Exit(2)
    try:
        result = orch.show(run_id)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    finally:
        orch.close()
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        console.print(f"run {run_id}: {result.status}", markup=False)
        print_result(console, result)


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    cards: CardsOption = None,
) -> None:
    """Resume a stored run that did not finish; finished subtasks are not run again."""
    from orchestrator.report import print_result

    with _orchestrator(cards, resume=True) as orch:
        try:
            result = orch.resume(run_id)
        except UserError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(console, result)
    if result.status == "failed":
        raise typer.Exit(1)
