"""``orchestrator pull``: download the weights a card needs, then profile the card."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.errors import UserError

if TYPE_CHECKING:
    from orchestrator.config import Config

__all__ = ["pull_command"]


def pull_command(
    target: Annotated[
        str, typer.Argument(help="a card name, or a Hugging Face model id (owner/name)")
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="download without asking (for scripts)")
    ] = False,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Download only the files a card's model needs from the Hugging Face hub, then profile it.

    The file count and size are shown first and asked to confirm (--yes skips the question;
    without a terminal it is required). HF_ENDPOINT and HF_TOKEN are honoured; the files go to
    the local Hugging Face cache (HF_HOME). Run it again after an interruption: files that
    arrived are kept. Exit status 2 for an unknown name, a refusal or a failed download,
    1 when the card downloaded but could not be profiled.
    """
    from orchestrator.cli.selection import _config_and_zoo
    from orchestrator.execution.pull import plan_pull, pull, size_text

    config, zoo = _config_and_zoo(cards, approve)
    try:
        plan = plan_pull(target, [entry.card for entry in zoo])
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(plan.describe())
    for name, size in sorted(plan.files.items()):
        typer.echo(f"  {name}  {size_text(size)}")
    if plan.missing:
        _confirm(plan.missing_bytes, len(plan.missing), yes)
        try:
            folder = pull(plan)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"downloaded to {folder}")
    else:
        typer.echo("every file is already in the local Hugging Face cache")
    if plan.card is None:
        typer.echo(
            f"no card uses {plan.repo}: draft one with "
            f"orchestrator cards new --from-hub {plan.repo} -o my-cards/<name>.yaml"
        )
        return
    _profile(plan.card.name, config)


def _confirm(size: int, files: int, yes: bool) -> None:
    """Ask before downloading; without a terminal, only --yes lets it go on."""
    from orchestrator.execution.pull import size_text

    if yes:
        return
    if not sys.stdin.isatty():
        typer.echo(
            f"error: not downloading {files} files ({size_text(size)}) without confirmation: "
            "no terminal to ask; add --yes to download",
            err=True,
        )
        raise typer.Exit(2)
    if not typer.confirm(f"download {files} files ({size_text(size)})?", default=True):
        typer.echo("nothing downloaded")
        raise typer.Exit(1)


def _profile(name: str, config: Config) -> None:
    """Reload the zoo (the card is available now) and profile the card, as `profile` does."""
    from orchestrator.cards.approvals import Approvals
    from orchestrator.cards.zoo import Zoo
    from orchestrator.cli.selection import _profile_one
    from orchestrator.execution.pool import WorkerPoolExecutor

    zoo = Zoo.load(config.card_dirs, approvals=Approvals.from_config(config))
    entry = zoo.get(name)
    if not entry.available:
        typer.echo(f"error: {name} is still unavailable: {entry.unavailable}", err=True)
        raise typer.Exit(2)
    if entry.path is None:
        return
    try:
        pool = WorkerPoolExecutor.from_config(config)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    with pool as executor:
        ok = _profile_one(zoo, name, force=False, executor=executor, helpers=zoo)
    if not ok:
        raise typer.Exit(1)
    typer.echo(f"{name} is available")
