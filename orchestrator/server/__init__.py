"""``orchestrator serve``: the orchestrator over HTTP, OpenAI-compatible, with a web chat page.

Endpoints:

* ``POST /v1/chat/completions`` - OpenAI chat completions, streamed (server-sent events) or
  not; ``model`` is ``orchestrator`` (the whole pipeline) or a card name (the request runs on
  that card alone). Progress events ride in extra chunks whose only choice has an empty delta
  and whose top-level ``orchestrator`` field holds the event (``run``, ``plan``, ``select``,
  ``decision``, ``step_started``, ``step_finished``, ``budget``, ``answer``, ``result``); OpenAI
  clients ignore both. The answer links the files the run made. An extra body field ``budget``
  (``usd``, ``seconds``, ``tokens``, ``calls``) lowers the run's limits.
* ``GET /v1/models`` - ``orchestrator`` and every available card, in OpenAI's list format.
* ``POST /v1/files`` - upload an image or audio file (multipart field ``file``); attach it to a
  message as ``{"type": "file", "file": {"file_id": ...}}``.
* ``GET /v1/files/RUN_ID/NAME`` - a file a run made (or was given).
* ``GET /`` - the web chat page (``orchestrator/server/web``: plain HTML, CSS and JS, no CDN).
* ``GET /health`` - liveness and the number of runs in flight.

Limits: request bodies and attached files are capped (``[server] max_upload_bytes`` per file),
file types are checked by content (see :mod:`orchestrator.server.files`), at most
``max_concurrent_runs`` runs execute at once and ``max_queued_runs`` wait. Uploads and the
server's run folders are deleted ``keep_files_hours`` after they were last written, oldest first
beyond ``max_stored_mb`` (see :mod:`orchestrator.server.retention`). Every error is a JSON
body in OpenAI's shape with a 4xx status saying what is wrong (a 500 only for a bug, and never
with a traceback). Bound to anything but a loopback address the server refuses to start without
an API key, which clients then send as ``Authorization: Bearer KEY`` (several keys, comma
separated, give several clients). Before any route, :mod:`orchestrator.server.guard` checks the
Host header, the key, cross-site browser requests and the size, arrival time and number of
request bodies. Uploads and runs belong to the client that made them (its key, or the bearer
token it sends to a keyless server): no client lists, reads or deletes another's.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated, Any

import typer

from orchestrator.cards.zoo import Zoo
from orchestrator.cli.options import ApproveOption, CardsOption
from orchestrator.config import Config
from orchestrator.errors import UserError

__all__ = ["create_app", "is_loopback", "serve", "serve_command"]

SERVER_EXTRA_HINT = "pip install 'orchestrator[server]'"
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(config: Config | None = None, *, zoo: Zoo | None = None) -> Any:
    """The ASGI app of ``orchestrator serve`` (its runs start with the app's lifespan)."""
    for module in ("fastapi", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError as exc:
            raise UserError(
                f"the server needs '{module}', which is not installed: {SERVER_EXTRA_HINT}"
            ) from exc
    from orchestrator.cards.approvals import Approvals
    from orchestrator.server.app import build_app

    config = config or Config.load()
    if zoo is None:
        zoo = Zoo.load(config.card_dirs, approvals=Approvals.from_config(config))
    return build_app(config, zoo)


def _log_to_stderr() -> None:
    """Show the server's own log lines (retention sweeps, failed runs) unless logging is set up."""
    logger = logging.getLogger("orchestrator.server")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))  # as uvicorn
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def serve(config: Config, host: str, port: int) -> None:
    """Serve until interrupted; refuse a non-loopback address without an API key."""
    import uvicorn

    if not is_loopback(host) and not config.server.key():
        raise UserError(
            f"refusing to listen on {host} without an API key: anyone who can reach this "
            f"machine could spend your budget. Set one with `export "
            f"{config.server.api_key_env}=...` (or [server] api_key in the config file), "
            "or bind to 127.0.0.1"
        )
    _log_to_stderr()
    # The Host check (see orchestrator.server.guard) knows the address actually bound.
    config = config.model_copy(update={"server": config.server.model_copy(update={"host": host})})
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    key = " (send the API key as 'Authorization: Bearer KEY')" if config.server.key() else ""
    print(
        f"orchestrator: web chat at http://{shown}:{port}/ ; OpenAI-compatible API at "
        f"http://{shown}:{port}/v1 (model 'orchestrator' or a card name){key}",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


def serve_command(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default from config: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default from config: 8080)")] = None,
    budget_usd: Annotated[str | None, typer.Option(help="default money limit per run")] = None,
    max_seconds: Annotated[
        float | None, typer.Option(help="default wall-clock limit per run")
    ] = None,
    max_calls: Annotated[int | None, typer.Option(help="default model-call limit per run")] = None,
    cards: CardsOption = None,
    approve: ApproveOption = None,
) -> None:
    """Serve the OpenAI-compatible API and the web chat page (http://127.0.0.1:8080/)."""
    from decimal import Decimal, InvalidOperation

    from pydantic import ValidationError
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, soft_wrap=True)
    try:
        config = Config.load().with_card_dirs(cards).with_approvals(approve or [])
        limits = config.budget.model_dump()
        for name, value in (("seconds", max_seconds), ("calls", max_calls)):
            if value is not None:
                limits[name] = value
        if budget_usd is not None:
            try:
                limits["usd"] = Decimal(budget_usd)
            except InvalidOperation:
                raise UserError(
                    f"--budget-usd must be an amount like 0.05, got {budget_usd!r}"
                ) from None
        try:
            budget = type(config.budget).model_validate(limits)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserError(f"budget {first['loc'][0]}: {first['msg']}") from None
        config = config.model_copy(update={"budget": budget})
        serve(config, host or config.server.host, port if port is not None else config.server.port)
    except UserError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
