"""Commands for capability profiles and card import: ``orchestrator profile``, ``cards new``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.errors import CardError, UserError

__all__ = ["cards_new", "profile_command"]


def profile_command(
    card: Annotated[list[str], typer.Argument(help="card names; 'all' for every available card")],
    force: Annotated[
        bool, typer.Option(help="profile again even if the profile is current")
    ] = False,
    cards: Annotated[
        list[Path] | None, typer.Option("--cards", help="extra folder of tool cards (repeatable)")
    ] = None,
) -> None:
    """Run each card's model on its task's aptitude test; write <card>.profile.json next to it."""
    from orchestrator.profile import card_digest, profile_card, read_profile, write_profile
    from orchestrator.zoo import Zoo

    try:
        zoo = Zoo.load(cards or [])
    except CardError as exc:
        typer.echo(f"error: broken tool cards:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    names = [e.card.name for e in zoo if e.available] if card == ["all"] else card
    for name in names:
        try:
            entry = zoo.get(name)
        except KeyError as exc:
            typer.echo(f"error: {exc.args[0]}", err=True)
            raise typer.Exit(2) from exc
        if not entry.available or entry.path is None:
            typer.echo(f"{name}: skipped ({entry.unavailable or 'not loaded from a file'})")
            continue
        current = read_profile(entry.path)
        if not force and current and current.get("card_digest") == card_digest(entry.card):
            typer.echo(f"{name}: profile is current (mean score {current.get('mean_score')})")
            continue
        typer.echo(f"{name}: profiling on the {entry.card.task} aptitude test")
        try:
            record = profile_card(
                entry.card.model_copy(update={"profile": None}), progress=typer.echo
            )
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        path = write_profile(entry.path, record)
        typer.echo(
            f"{name}: mean score {record['mean_score']}, latency {record['latency_s']} s, "
            f"${record['usd_per_call']} per call -> {path}"
        )


def cards_new(
    from_hub: Annotated[
        str | None, typer.Option("--from-hub", help="model id in the local hub cache")
    ] = None,
    from_readme: Annotated[
        Path | None, typer.Option("--from-readme", help="a model card README.md")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the draft here")
    ] = None,
) -> None:
    """Draft a tool card from a Hugging Face model card (offline)."""
    from orchestrator.importers import draft_from_hub, draft_from_readme

    if (from_hub is None) == (from_readme is None):
        typer.echo("error: give exactly one of --from-hub MODEL_ID or --from-readme PATH", err=True)
        raise typer.Exit(2)
    try:
        draft = draft_from_hub(from_hub) if from_hub else draft_from_readme(Path(str(from_readme)))
    except (UserError, CardError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None:
        typer.echo(draft, nl=False)
    else:
        output.write_text(draft, encoding="utf-8")
        typer.echo(f"wrote {output}")
