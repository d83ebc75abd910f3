"""``orchestrator cards new --from-mcp "CMD ARGS" | --from-mcp-url URL``: a card per MCP tool.

The command lists the server's tools with the real ``mcp`` client and writes one card per tool
(:func:`orchestrator.cards.mcp_import.draft_mcp_cards`) into ``--out`` (default: the current
folder), printing what each tool's card is and what could not be mapped. A stdio server is
started here, by the user, as the command line starts it; the cards' calls later start it
inside the sandbox of their worker.
"""

from __future__ import annotations

import os
import shlex
import shutil
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer

from orchestrator.errors import UserError

__all__ = ["import_mcp_cards", "server_fields"]


def server_fields(
    command_line: str | None, url: str | None, headers: list[str], cwd: Path
) -> dict[str, Any]:
    """The ``backend`` fields naming the server: a resolved stdio command, or the URL."""
    if (command_line is None) == (url is None):
        raise UserError('give exactly one of --from-mcp "COMMAND ARGS" or --from-mcp-url URL')
    pairs = {}
    for item in headers:
        name, sep, variable = item.partition("=")
        if not sep or not name.strip() or not variable.strip():
            raise UserError(
                f"--header takes NAME=ENV_VAR (the variable holds the value), got {item!r}"
            )
        pairs[name.strip()] = variable.strip()
    if url is not None:
        return {"url": url, **({"headers": pairs} if pairs else {})}
    if pairs:
        raise UserError("--header is for --from-mcp-url (an HTTP server)")
    try:
        words = shlex.split(str(command_line))
    except ValueError as exc:
        raise UserError(f"--from-mcp: cannot split {command_line!r}: {exc}") from exc
    if not words:
        raise UserError("--from-mcp needs the command that starts the server")
    found = words[0] if os.path.isabs(words[0]) else shutil.which(words[0])
    if found is None:
        raise UserError(f"--from-mcp: no command {words[0]!r} on PATH; give its path")
    return {"command": os.path.abspath(found), "args": words[1:], "cwd": str(cwd.resolve())}


def import_mcp_cards(
    command_line: str | None,
    url: str | None,
    out: Path | None,
    *,
    headers: list[str],
    prefix: str,
    usd_per_call: str,
    timeout_s: float,
    force: bool,
) -> None:
    """List the server's tools and write a card per tool (see the module)."""
    from orchestrator.cards.mcp_import import draft_mcp_cards
    from orchestrator.execution.backends.mcp_client import (
        McpBackend,
        McpCallFailed,
        list_server_tools,
    )

    try:
        price = Decimal(usd_per_call)
    except InvalidOperation:
        raise UserError(
            f"--usd-per-call must be an amount, e.g. 0.001, got {usd_per_call!r}"
        ) from None
    server = server_fields(command_line, url, headers, Path.cwd())
    spec = McpBackend.model_validate({"kind": "mcp", "tool": "-", **server})
    try:
        tools = list_server_tools(spec)
    except (McpCallFailed, TimeoutError) as exc:
        raise UserError(str(exc)) from exc
    if not tools:
        raise UserError("the MCP server lists no tools")
    folder = out or Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    drafts = draft_mcp_cards(server, tools, prefix=prefix, usd_per_call=price, timeout_s=timeout_s)
    written = 0
    for draft in drafts:
        for note in draft.notes:
            typer.echo(f"{draft.tool}: {note}", err=True)
        if draft.text is None:
            continue
        target = folder / f"{draft.name}.yaml"
        if target.exists() and not force:
            typer.echo(f"{draft.tool}: kept {target} (it exists; --force overwrites it)", err=True)
            continue
        target.write_text(draft.text, encoding="utf-8")
        written += 1
        typer.echo(f"wrote {target} (tool {draft.tool})")
    typer.echo(
        f"{written} of {len(drafts)} tools written as cards; approve what they ask for "
        "(orchestrator cards show NAME) before they run"
    )
