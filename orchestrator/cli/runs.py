"""``orchestrator runs list | show ID | resume ID | prune``: the runs kept in the run store.

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

from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.errors import UserError

__all__ = ["runs_app"]

runs_app = typer.Typer(help="List, show, resume and prune stored runs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _orchestrator(  # noqa: ANN202
    cards: list[Path] | None, *, resume: bool = False, approve: list[str] | None = None
):
    from orchestrator.cli.main import _config, _fail, _zoo
    from orchestrator.pipeline.orchestrator import Orchestrator, checkpoints_path
    from orchestrator.pipeline.store import store_exists

    config = _config(cards, approve)
    try:
        if not resume:
            if not store_exists(checkpoints_path(config)):
                return None
            # Listing and showing read the store only: no model is loaded, no worker started.
            from orchestrator.cards.zoo import Zoo
            from orchestrator.execution.inprocess import InProcessExecutor

            return Orchestrator(config, zoo=Zoo(), executor=InProcessExecutor())
        return Orchestrator(config, zoo=_zoo(config))
    except UserError as exc:
        raise _fail(str(exc)) from exc


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
        spent = row.get("spent") or {}
        request = row.get("request")
        text = repr(request[:60]) if isinstance(request, str) else ""
        if row.get("error"):
            text = f"cannot be read: {row['error']}"
        console.print(
            f"{row['run_id']}  {row['status']:<16} ${spent.get('usd', '?')} "
            f"{spent.get('calls', '?')} calls  {text}",
            markup=False,
            highlight=False,
        )


@runs_app.command("show")
def runs_show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One stored run: plan, steps, decisions, answer, spent."""
    from orchestrator.cli.report import print_run

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
        print_run(console, result)


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    cards: CardsOption = None,
    budget_usd: Annotated[str | None, typer.Option(help="new money limit in US dollars")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="new wall-clock limit")] = None,
    max_calls: Annotated[int | None, typer.Option(help="new limit on model calls")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="new limit on tokens")] = None,
    approve: ApproveOption = None,
) -> None:
    """Resume a stored run that did not finish; finished subtasks are not run again.

    Ctrl-C cancels it as it does ``orchestrator run``. A run another process is running or
    resuming is refused; a run whose cards are not loaded says which, and to pass their folder
    with ``--cards``. Any budget option sets new limits (unset ones come from the config; what
    was spent still counts), and a run the budget stopped goes on with the steps it stopped.
    """
    from orchestrator.cli.main import _budget, _config, _ctrl_c_cancels, exit_for
    from orchestrator.cli.report import EventPrinter, print_result

    limits = (budget_usd, max_seconds, max_calls, max_tokens)
    budget = None
    if any(v is not None for v in limits):
        budget = _budget(budget_usd, max_seconds, max_calls, max_tokens, _config(cards))
    with _orchestrator(cards, resume=True, approve=approve) as orch, _ctrl_c_cancels(orch) as stop:
        try:
            printer = None if as_json else EventPrinter(console)
            result = orch.resume(run_id, on_event=printer, cancel=stop, budget=budget)
        except UserError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(console, result, printer.streamed if printer else None)
    exit_for(result)


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[
        str | None, typer.Option(help="delete runs last written longer ago than this: 30d, 12h")
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(help="then delete the oldest runs while the store is over this: 500MB"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask (for scripts)")] = False,
) -> None:
    """Delete old stored runs (checkpoints and their RUNS/<id> folders), then compact the store.

    A run another process is running or resuming is kept. Without ``--yes`` it asks first, and
    with no terminal to ask on it refuses.
    """
    import sys

    from orchestrator.cli.main import _config, _fail
    from orchestrator.pipeline.prune import parse_age, parse_size, prune_runs
    from orchestrator.pipeline.store import checkpoints_path, open_checkpointer, store_exists

    config = _config(None)
    store = checkpoints_path(config)
    try:
        age = parse_age(older_than) if older_than is not None else None
        cap = parse_size(max_size) if max_size is not None else None
        if age is None and cap is None:
            raise UserError("say what to prune: --older-than AGE, --max-size SIZE, or both")
        if not store_exists(store):
            console.print(f"no run store yet ({store})", markup=False)
            return
        saver = open_checkpointer(store)
        try:
            plan = prune_runs(saver, store, config.runs_dir, older_than_s=age, max_bytes=cap,
                              dry_run=True)  # fmt: skip
            if dry_run or not plan.deleted:
                for run_id in plan.deleted:
                    console.print(run_id, markup=False, highlight=False)
                console.print(plan.line(), markup=False)
                return
            if not yes:
                if not sys.stdin.isatty():
                    raise UserError(
                        f"this deletes {len(plan.deleted)} run(s); pass --yes to confirm "
                        "(no terminal to ask on)"
                    )
                typer.confirm(f"delete {len(plan.deleted)} stored run(s)?", abort=True)
            report = prune_runs(saver, store, config.runs_dir, older_than_s=age, max_bytes=cap)
        finally:
            saver.conn.close()
    except UserError as exc:
        raise _fail(str(exc)) from exc
    console.print(report.line(), markup=False)
