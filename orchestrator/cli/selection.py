"""Commands for capability profiles, card import and the selection encoder.

``orchestrator profile``, ``orchestrator cards new`` and ``orchestrator cards tune-encoder``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.errors import CardError, UserError

if TYPE_CHECKING:
    from orchestrator.cards.zoo import Zoo
    from orchestrator.config import Config
    from orchestrator.execution.pool import Executor

__all__ = ["cards_new", "cards_tune_encoder", "profile_command"]


def profile_command(
    card: Annotated[list[str], typer.Argument(help="card names; 'all' for every available card")],
    force: Annotated[
        bool, typer.Option(help="profile again even if the profile is current")
    ] = False,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Run each card's model on its task's aptitude test; write <card>.profile.json next to it.

    Cards come from the built-ins, the config's card_dirs, $ORCHESTRATOR_CARDS and --cards.
    The models run in sandboxed workers, as in a run, with the cards' timeouts. Exit status 1
    when a card could not be profiled, 2 for an unknown or unavailable card or a bad config.
    """
    from orchestrator.execution.pool import WorkerPoolExecutor

    config, zoo = _config_and_zoo(cards, approve)
    names = [e.card.name for e in zoo if e.available] if card == ["all"] else card
    for name in names:
        if name not in zoo:
            known = ", ".join(sorted(e.card.name for e in zoo))
            typer.echo(
                f"error: no card named '{name}' (add its folder with --cards DIR or to "
                f"card_dirs in orchestrator.toml); known cards: {known}",
                err=True,
            )
            raise typer.Exit(2)
        entry = zoo.get(name)
        if not entry.available or entry.path is None:
            why = entry.unavailable or "it was not loaded from a file"
            typer.echo(
                f"error: {name} cannot be profiled here: {why}. Make it available "
                f"(see: orchestrator cards show {name}) and run the command again.",
                err=True,
            )
            raise typer.Exit(2)
    try:
        pool = WorkerPoolExecutor.from_config(config)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    failed = 0
    with pool as executor:
        for name in names:
            failed += not _profile_one(zoo, name, force=force, executor=executor, helpers=zoo)
    if failed:
        raise typer.Exit(1)


def _profile_one(zoo: Zoo, name: str, *, force: bool, executor: Executor, helpers: Zoo) -> bool:
    """Profile one available card and write its profile; False when it could not be profiled."""
    from orchestrator.cards import card_digest
    from orchestrator.cards.probes.aptitude import probes_digest, probes_for
    from orchestrator.cards.profile import read_profile, write_profile
    from orchestrator.execution.profiling import profile_card

    entry = zoo.get(name)
    assert entry.path is not None
    current = read_profile(entry.path)
    try:
        probes = probes_for(entry.card, entry.path)
    except UserError as exc:
        typer.echo(f"error: {name}: {exc}", err=True)
        return False
    fresh = current and current.get("card_digest") == card_digest(entry.card)
    if not force and fresh and current.get("probes_digest") in (None, probes_digest(probes)):
        typer.echo(f"{name}: profile is current (mean score {current.get('mean_score')})")
        return True
    typer.echo(f"{name}: profiling on the {entry.card.task} aptitude test ({len(probes)} probes)")
    try:
        record = profile_card(
            entry.card.model_copy(update={"profile": None}),
            probes,
            executor=executor,
            helpers=helpers,
            progress=typer.echo,
        )
    except UserError as exc:
        typer.echo(f"error: {name}: {exc}", err=True)
        return False
    probes = record["probes"]
    if probes and record["failed"] == len(probes):
        reason = probes[0].get("error", "")
        typer.echo(
            f"error: {name} failed every probe, so no profile was written; first failure: {reason}",
            err=True,
        )
        return False
    path = write_profile(entry.path, record)
    note = f" ({record['failed']} of {len(probes)} probes failed)" if record["failed"] else ""
    typer.echo(
        f"{name}: mean score {record['mean_score']}{note}, latency {record['latency_s']} s, "
        f"${record['usd_per_call']} per call -> {path}"
    )
    return True


def cards_new(
    from_hub: Annotated[
        str | None, typer.Option("--from-hub", help="model id in the local hub cache")
    ] = None,
    from_readme: Annotated[
        Path | None, typer.Option("--from-readme", help="a model card README.md")
    ] = None,
    model_id: Annotated[
        str | None,
        typer.Option("--model-id", help="the model's hub id (with --from-readme, if not in it)"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the draft here")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite the --output file")] = False,
    from_mcp: Annotated[
        str | None, typer.Option("--from-mcp", help='"COMMAND ARGS" starting an MCP server')
    ] = None,
    from_mcp_url: Annotated[
        str | None, typer.Option("--from-mcp-url", help="an MCP server's streamable HTTP URL")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="folder for the MCP tools' cards")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="NAME=ENV_VAR, an HTTP header (MCP)")
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="card name prefix (MCP)")] = "",
    usd_per_call: Annotated[str, typer.Option("--usd-per-call", help="price (MCP)")] = "0",
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per call (MCP)")] = 30.0,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="with --from-hub: a hosted hf-inference card on this Inference Provider "
            "(task from the Hub API)",
        ),
    ] = None,
) -> None:
    """Draft a tool card from a Hugging Face model card (offline), or one per MCP tool.

    With --provider, a card calling the model on that Inference Provider instead (asks the
    Hub for the model's task). With --output, a probe file to fill in is drafted beside it
    (<card>.probes.yaml). With --from-mcp or --from-mcp-url, the server's tools are listed and
    a card per tool is written into --out (default: the current folder).
    """
    from orchestrator.cards.importers import draft_from_hub, draft_from_readme

    if from_mcp is not None or from_mcp_url is not None:
        from orchestrator.cli.mcp_cards import import_mcp_cards

        try:
            import_mcp_cards(
                from_mcp, from_mcp_url, out, headers=header or [], prefix=prefix,
                usd_per_call=usd_per_call, timeout_s=timeout, force=force,
            )  # fmt: skip
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        return
    if (from_hub is None) == (from_readme is None):
        typer.echo("error: give exactly one of --from-hub MODEL_ID or --from-readme PATH", err=True)
        raise typer.Exit(2)
    if provider is not None and from_hub is None:
        typer.echo("error: --provider goes with --from-hub MODEL_ID", err=True)
        raise typer.Exit(2)
    if output is not None and output.exists() and not force:
        typer.echo(f"error: {output} exists; pass --force to overwrite it", err=True)
        raise typer.Exit(2)
    try:
        if from_hub and provider:
            from orchestrator.cards.hosted import draft_for_provider

            draft = draft_for_provider(from_hub, provider)
        elif from_hub:
            draft = draft_from_hub(from_hub)
        else:
            draft = draft_from_readme(Path(str(from_readme)), model_id)
    except (UserError, CardError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None:
        typer.echo(draft, nl=False)
        return
    try:
        output.write_text(draft, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {output}")
    _draft_probes(output, draft, force=force)


def _draft_probes(card_file: Path, draft: str, *, force: bool) -> None:
    """Write a probe file to fill in beside a drafted card (kept if it exists, unless force)."""
    import yaml

    from orchestrator.cards import ToolCard
    from orchestrator.cards.probes.aptitude import draft_probes, own_probes_path

    target = own_probes_path(card_file)
    if target.exists() and not force:
        typer.echo(f"kept {target} (it exists; --force overwrites it)")
        return
    card = ToolCard.model_validate(yaml.safe_load(draft))
    try:
        target.write_text(draft_probes(card), encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {target}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {target}: fill in its probes, then run orchestrator profile {card.name}")


def cards_tune_encoder(
    cards: CardsOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="model folder to write (default: under the cache folder)"),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="passes over the pairs")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the shuffling and dropout")] = 0,
) -> None:
    """Fine-tune the selection encoder (MiniLM) on the zoo's cards and passed probes.

    Cards come from the built-ins, the config's card_dirs, $ORCHESTRATOR_CARDS and --cards.
    Runs use the tuned model once orchestrator.toml names it: selection_encoder = "PATH".
    Re-tuning is explicit: run the command again after profiling or adding cards.
    """
    from orchestrator.config import cache_dir
    from orchestrator.embed import MiniLMEmbedder
    from orchestrator.selection.embed_tune import (
        TuneOptions,
        tune_encoder,
        tuning_digest,
        tuning_pairs,
    )

    config, zoo = _config_and_zoo(cards)
    zoo_cards = [entry.card for entry in zoo]
    if out is None:
        pairs = tuning_pairs(zoo_cards)
        digest = tuning_digest(pairs, TuneOptions(epochs, seed), MiniLMEmbedder.name)
        out = cache_dir() / "encoders" / f"zoo-{digest}"
    typer.echo(f"tuning the selection encoder on {len(zoo_cards)} cards ({epochs} epochs)")
    try:
        tuned = tune_encoder(zoo_cards, out, epochs=epochs, seed=seed, progress=typer.echo)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"tuned on {tuned.pairs} pairs in {tuned.seconds:.1f} s -> {tuned.path}")
    typer.echo(f'use it in orchestrator.toml: selection_encoder = "{tuned.path}"')


def _config_and_zoo(
    cards: list[Path] | None, approve: list[str] | None = None
) -> tuple[Config, Zoo]:
    """The config and the zoo with ``cards`` folders added; exit 2 with the reason if broken."""
    from orchestrator.cards.approvals import Approvals
    from orchestrator.cards.zoo import Zoo
    from orchestrator.config import Config

    try:
        config = Config.load().with_card_dirs(cards).with_approvals(approve or [])
        return config, Zoo.load(config.card_dirs, approvals=Approvals.from_config(config))
    except CardError as exc:
        typer.echo(f"error: broken tool cards:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
