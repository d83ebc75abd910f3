"""The ``orchestrator`` command line."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.budget import Budget
from orchestrator.cards.zoo import Zoo, validate_paths
from orchestrator.cli import selection as cli_selection
from orchestrator.cli.chat import chat_command
from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.cli.pull import pull_command
from orchestrator.cli.runs import runs_app as _runs_app
from orchestrator.config import Config
from orchestrator.errors import CardError, UserError
from orchestrator.evals.cli import bench_app, eval_app
from orchestrator.execution.sandbox.cli import sandbox_app
from orchestrator.server import serve_command

__all__ = ["app"]

app = typer.Typer(
    help="Compose models as tools: plan, select, execute, route, answer - within a budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Usage errors print as plain lines: rich's boxed panel wraps a message to the terminal's
    # width, which cuts it mid-sentence in an 80-column terminal and in logs.
    rich_markup_mode=None,
)
cards_app = typer.Typer(help="List, show and validate tool cards.", no_args_is_help=True)
app.add_typer(cards_app, name="cards")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.command("profile")(cli_selection.profile_command)
cards_app.command("new")(cli_selection.cards_new)
cards_app.command("tune-encoder")(cli_selection.cards_tune_encoder)
app.add_typer(_runs_app, name="runs")
app.add_typer(sandbox_app, name="sandbox")
app.command("serve")(serve_command)
app.command("chat")(chat_command)
app.command("pull")(pull_command)

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _config(cards: list[Path] | None, approve: list[str] | None = None) -> Config:
    try:
        config = Config.load()
    except UserError as exc:
        raise _fail(str(exc)) from exc
    return config.with_card_dirs(cards).with_approvals(approve or [])


def _zoo(config: Config) -> Zoo:
    from orchestrator.cards.approvals import Approvals

    try:
        return Zoo.load(config.card_dirs, approvals=Approvals.from_config(config))
    except CardError as exc:
        raise _fail("broken tool cards:\n" + str(exc)) from exc


def _budget(
    usd: str | None, seconds: float | None, calls: int | None, tokens: int | None, config: Config
) -> Budget:
    default = config.budget
    try:
        money = Decimal(usd) if usd is not None else default.usd
    except InvalidOperation as exc:
        raise _fail(f"--budget-usd must be an amount like 0.05, got {usd!r}") from exc
    try:
        return Budget(
            usd=money,
            seconds=seconds if seconds is not None else default.seconds,
            calls=calls if calls is not None else default.calls,
            tokens=tokens if tokens is not None else default.tokens,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="what you want done, in plain words")],
    files: Annotated[list[Path] | None, typer.Option("--file", "-f", help="attach a file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    budget_usd: Annotated[str | None, typer.Option(help="money limit in US dollars")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="wall-clock limit")] = None,
    max_calls: Annotated[int | None, typer.Option(help="limit on model calls")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="limit on tokens")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the files the run makes")] = None,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Run one request and print the plan, the models chosen, the outputs and the answer.

    Ctrl-C cancels the run once the steps already running finish (a second Ctrl-C stops them
    at once); the run is kept and ``orchestrator runs resume ID`` continues it.
    """
    from orchestrator.cli.report import EventPrinter, print_result
    from orchestrator.pipeline.orchestrator import Orchestrator

    config = _config(cards, approve)
    budget = _budget(budget_usd, max_seconds, max_calls, max_tokens, config)
    for path in files or []:
        if not path.is_file():
            raise _fail(f"attached file {path} not found")
    zoo = _zoo(config)
    printer = None if as_json else EventPrinter(console)
    try:
        with Orchestrator(config, zoo=zoo) as orchestrator, _ctrl_c_cancels(orchestrator) as stop:
            result = orchestrator.run(
                prompt,
                budget=budget,
                files=files or [],
                out_dir=out,
                on_event=printer,
                cancel=stop,
            )
    except UserError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(console, result, printer.streamed if printer else None)
    if result.status in ("rejected", "unservable"):
        if not as_json:
            err.print(f"[red]error:[/red] {escape(result.message)}", highlight=False)
        raise typer.Exit(2)
    exit_for(result)


def exit_for(result: Any) -> None:
    """Exit 130 for a cancelled run, 1 for one that produced nothing; else return (exit 0)."""
    if result.status == "cancelled":
        raise typer.Exit(130)
    nothing = not any(step.status == "done" for step in result.steps)
    if result.status == "failed" or (result.status == "budget_exhausted" and nothing):
        raise typer.Exit(1)


@contextmanager
def _ctrl_c_cancels(orchestrator: Any) -> Iterator[threading.Event]:
    """While the block runs, Ctrl-C sets the event it yields (the run's ``cancel``).

    The first Ctrl-C lets the steps already running finish; the second stops their workers
    (those steps are not recorded and run again on resume); a third interrupts as usual.
    """
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    presses = []

    def on_sigint(signum: int, frame: Any) -> None:
        presses.append(signum)
        if len(presses) == 1:
            cancel.set()
            _say("Cancelling... steps already running finish first (Ctrl-C again stops them).")
        elif len(presses) == 2:
            _say("Stopping the running steps now.")
            threading.Thread(target=orchestrator.executor.close, daemon=True).start()
        else:
            signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(text: str) -> None:
    # os.write, not the console: a signal handler may interrupt the console mid-print.
    os.write(2, f"\n{text}\n".encode())


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the demo's inputs and outputs")] = Path(
        "demo-output"
    ),
) -> None:
    """Make demo inputs with the offline models and run real multi-model requests on them."""
    from orchestrator.cli.demo import run_demo

    try:
        results = run_demo(out, console)
    except UserError as exc:  # a broken configuration or card folder
        raise _fail(str(exc)) from exc
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@cards_app.command("list")
def cards_list(
    cards: CardsOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    approve: ApproveOption = None,
) -> None:
    """List every card with its task, types and availability here."""
    from orchestrator.cli.report import print_cards

    zoo = _zoo(_config(cards, approve))
    if as_json:
        rows = [
            {
                "name": e.card.name,
                "task": e.card.task,
                "available": e.available,
                "unavailable_reason": e.unavailable,
                "path": str(e.path),
            }
            for e in zoo
        ]
        print(json.dumps(rows, indent=2))
        return
    print_cards(console, zoo)


@cards_app.command("show")
def cards_show(name: str, cards: CardsOption = None, approve: ApproveOption = None) -> None:
    """Show one card: description, types, backend, cost, needs, availability."""
    from orchestrator.cli.report import print_card

    zoo = _zoo(_config(cards, approve))
    try:
        entry = zoo.get(name)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from exc
    print_card(console, entry)


@cards_app.command("validate")
def cards_validate(
    paths: Annotated[list[Path], typer.Argument(help="card files or folders")],
    with_builtin: Annotated[
        bool, typer.Option(help="also check name clashes with the built-in cards")
    ] = True,
    imports: Annotated[
        bool, typer.Option(help="import python cards' entries (in the sandbox) to check them")
    ] = True,
    approve: ApproveOption = None,
) -> None:
    """Validate card files; exit non-zero on any defect, naming the file, the field and the fix.

    Also says what each card asks for (network, paths, variables) and whether the configuration
    approves it: a card whose requests are not approved does not run.
    """
    from orchestrator.cards.approvals import Approvals
    from orchestrator.cli.report import request_lines
    from orchestrator.execution.sandbox.entry_check import entry_defects

    check = entry_defects if imports else None
    defects = validate_paths(paths, builtin=with_builtin, check_entries=check)
    approvals = Approvals.from_config(_config(None, approve))
    for line in request_lines(paths, approvals):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if defects:
        for defect in defects:
            err.print(str(defect), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"ok: {', '.join(str(p) for p in paths)}", markup=False)


@app.command("serve-llm")
def serve_llm(
    card: Annotated[str, typer.Option(help="text-generation card name or YAML path")] = (
        "smollm2-135m-chat"
    ),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8001,
    api_key_env: Annotated[
        str, typer.Option(help="variable holding the key clients must send (if set)")
    ] = "ORCHESTRATOR_LLM_API_KEY",
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="a host name clients reach this server by (repeatable)"),
    ] = None,
) -> None:
    """Serve a local text-generation card over the OpenAI chat-completions protocol."""
    from orchestrator.server.single_model import serve

    key = os.environ.get(api_key_env) or None
    try:
        serve(card, host, port, api_key=key, allowed_hosts=allowed_host or [])
    except UserError as exc:
        raise _fail(str(exc)) from exc


@app.command("mcp")
def mcp_server(
    transport: Annotated[
        str, typer.Option(help="stdio (an MCP client starts this command) or http")
    ] = "stdio",
    host: Annotated[str, typer.Option(help="address for --transport http (loopback only)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port for --transport http")] = 8765,
    budget_usd: Annotated[str | None, typer.Option(help="default money limit per call")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="default wall-clock limit")] = None,
    max_calls: Annotated[int | None, typer.Option(help="default model-call limit")] = None,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Serve the orchestrator over MCP: a 'run' tool, a tool per card, cards as resources.

    Over stdio (the default) an MCP client such as an IDE assistant starts this command itself;
    with --transport http it listens at http://HOST:PORT/mcp (streamable HTTP).
    """
    from orchestrator.server.mcp import check_transport, serve_mcp

    try:
        check_transport(transport, host)
    except UserError as exc:
        raise _fail(str(exc)) from exc
    config = _config(cards, approve)
    budget = _budget(budget_usd, max_seconds, max_calls, None, config)
    limits = type(config.budget)(
        usd=budget.usd, seconds=budget.seconds, tokens=budget.tokens, calls=budget.calls
    )
    config = config.model_copy(update={"budget": limits})
    try:
        serve_mcp(config, _zoo(config), transport=transport, host=host, port=port)
    except UserError as exc:
        raise _fail(str(exc)) from exc


if __name__ == "__main__":
    app()
