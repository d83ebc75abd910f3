"""Backend for one tool of an MCP server (Model Context Protocol), reached with the ``mcp`` client.

A card of kind ``mcp`` names the server and one of its tools. The server is either a command
started over stdio (``command``, ``args``, ``env``, ``cwd``) or a streamable HTTP endpoint
(``url``, with ``headers`` whose values come from environment variables). Each call opens a
client session, calls the tool with the card's inputs as its arguments (converted to the JSON
types recorded in ``arguments``), and closes the session: a stdio server is started for the
call as a child of the worker, so it runs under the worker's sandbox, and is stopped with it.

The result's content becomes the card's outputs, in their order: a text output takes the text
blocks, an image or audio output the first block of that kind (written to the scratch folder),
a json output the structured content (or the text, parsed). A result flagged as an error, a
missing kind of content, or a tool that runs past ``timeout_s`` fails the call with a message
saying which. The ``mcp`` package is imported lazily (extra ``orchestrator[server]``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, Tool

__all__ = [
    "McpBackend",
    "McpCallFailed",
    "McpToolBackend",
    "describe_error",
    "list_server_tools",
]

MCP_EXTRA_HINT = "pip install 'orchestrator[server]'"
_SUFFIXES = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3", "audio/ogg": ".ogg",
    "audio/flac": ".flac",
}  # fmt: skip


class McpCallFailed(RuntimeError):
    """The MCP server answered a call with an error, or without what the card promises."""


class McpBackend(BaseModel):
    """One tool of an MCP server, over stdio (``command``) or streamable HTTP (``url``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mcp"]
    tool: str = Field(min_length=1, description="the tool's name on the server")
    command: str | None = Field(default=None, description="stdio: the server's executable")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: variables set for the server (not secrets)"
    )
    env_from: list[str] = Field(
        default_factory=list,
        description="stdio: host variables passed to the server (each must be approved)",
    )
    cwd: str | None = Field(default=None, description="stdio: absolute folder it starts in")
    url: str | None = Field(default=None, description="streamable HTTP endpoint, e.g. .../mcp")
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP header -> the environment variable holding it"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="the most one call may take")
    arguments: dict[str, Literal["string", "integer", "number", "boolean"]] = Field(
        default_factory=dict, description="card input -> the JSON type the tool expects"
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpBackend:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url is not None:
            if urlsplit(self.url).scheme not in ("http", "https"):
                raise ValueError(f"url must be http:// or https://, got {self.url!r}")
            if self.args or self.env or self.env_from or self.cwd:
                raise ValueError("args, env, env_from and cwd are for a stdio server (command)")
        elif self.headers:
            raise ValueError("headers are for a streamable HTTP server (url)")
        if self.cwd is not None and not os.path.isabs(os.path.expanduser(self.cwd)):
            raise ValueError(f"cwd must be an absolute folder, got {self.cwd!r}")
        return self

    def sandbox_requests(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """What a worker of this card needs: (network endpoints, variables, folders to read)."""
        if self.url is not None:
            parts = urlsplit(self.url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return (f"{parts.hostname}:{port}",), tuple(self.headers.values()), ()
        read = [os.path.expanduser(self.cwd)] if self.cwd else []
        if self.command is not None and os.path.isabs(self.command):
            read.append(os.path.dirname(self.command))
        # A script named by its absolute path is read with its folder (its own modules).
        read += [os.path.dirname(a) for a in self.args if os.path.isabs(a) and os.path.isfile(a)]
        return (), tuple(self.env_from), tuple(read)


class McpToolBackend:
    """Calls one tool of an MCP server per card call, in a fresh client session."""

    spec = McpBackend

    def unavailable_reason(self, card: ToolCard) -> str | None:
        spec = _spec(card)
        try:
            import mcp  # noqa: F401
        except ImportError:
            return f"the 'mcp' package is not installed ({MCP_EXTRA_HINT})"
        if spec.command is not None and _executable(spec.command) is None:
            return f"the MCP server command {spec.command!r} is not found; give its absolute path"
        missing = [
            name for name in (*spec.env_from, *spec.headers.values()) if name not in os.environ
        ]
        if missing:
            return f"set {', '.join(missing)} in the environment (the MCP server needs them)"
        return None

    def load(self, card: ToolCard) -> Tool:
        spec = _spec(card)
        try:
            import mcp  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"the mcp backend needs the 'mcp' package ({MCP_EXTRA_HINT})"
            ) from exc
        return McpTool(spec=spec, card=card)


@dataclass
class McpTool:
    """A loaded MCP card: each call is one session with the server and one ``tools/call``."""

    spec: McpBackend
    card: ToolCard

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        import anyio

        arguments = _arguments(self.card, self.spec, inputs)
        limit = self.spec.timeout_s
        if ctx.timeout_s is not None:
            limit = min(limit, ctx.timeout_s)

        errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

        async def call() -> Any:
            with anyio.fail_after(limit):
                async with open_session(self.spec, errlog) as session:
                    return await session.call_tool(self.spec.tool, arguments)

        try:
            with errlog:
                try:
                    result = anyio.run(call)
                except BaseExceptionGroup as group:
                    raise McpCallFailed(
                        f"MCP server ({_where(self.spec)}) failed: {describe_error(group)}"
                        f"{_said(errlog)}"
                    ) from group
        except TimeoutError:
            raise TimeoutError(
                f"MCP tool '{self.spec.tool}' ({_where(self.spec)}) did not answer within "
                f"{limit:g} s; the server was stopped"
            ) from None
        if result.is_error:
            said = " ".join(_texts(result)) or "no message"
            raise McpCallFailed(f"MCP tool '{self.spec.tool}' reported an error: {said}")
        return _outputs(self.card, self.spec, result, ctx)


def _said(errlog: Any) -> str:
    """The last lines the server wrote to its standard error, as a clause ('' if none)."""
    errlog.seek(0)
    lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
    return f"; the server said: {' | '.join(lines[-3:])[-600:]}" if lines else ""


@asynccontextmanager
async def open_session(spec: McpBackend, errlog: Any = None) -> AsyncIterator[Any]:
    """An initialized :class:`mcp.ClientSession` with the server of ``spec``."""
    from mcp import ClientSession

    if spec.url is not None:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {name: os.environ.get(var, "") for name, var in spec.headers.items()}
        async with create_mcp_http_client(headers=headers or None) as client:
            async with streamable_http_client(spec.url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
        return
    from mcp.client.stdio import StdioServerParameters, stdio_client

    command = _executable(str(spec.command))
    if command is None:
        raise FileNotFoundError(
            f"the MCP server command {spec.command!r} is not found; give its absolute path"
        )
    env = dict(spec.env) | {name: os.environ[name] for name in spec.env_from if name in os.environ}
    cwd = os.path.expanduser(spec.cwd) if spec.cwd else None
    params = StdioServerParameters(command=command, args=list(spec.args), env=env, cwd=cwd)
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def list_server_tools(spec: McpBackend, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The server's tools as plain dicts: name, description, input_schema, output_schema.

    A failure raises :class:`McpCallFailed` or TimeoutError, with what the server said.
    """
    import anyio
    import mcp_types

    async def listing(errlog: Any) -> list[Any]:
        with anyio.fail_after(timeout_s):
            async with open_session(spec, errlog) as session:
                tools: list[Any] = []
                cursor = None
                while True:
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    tools += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        return tools

    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        try:
            tools = anyio.run(listing, errlog)
        except TimeoutError:
            raise TimeoutError(
                f"the MCP server ({_where(spec)}) did not list its tools within {timeout_s:g} s"
                f"{_said(errlog)}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the client's errors (protocol, HTTP, OS) vary
            raise McpCallFailed(
                f"could not list the tools of the MCP server ({_where(spec)}): "
                f"{describe_error(exc)}{_said(errlog)}"
            ) from exc
    return [
        {
            "name": tool.name,
            "description": tool.description or "",
            "input_schema": dict(tool.input_schema or {}),
            "output_schema": dict(tool.output_schema) if tool.output_schema else None,
        }
        for tool in tools
    ]


def describe_error(exc: BaseException) -> str:
    """The innermost errors of an exception group (anyio's task groups wrap them), in one line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _executable(command: str) -> str | None:
    if os.path.isabs(command):
        return command if os.access(command, os.X_OK) else None
    return shutil.which(command, path=os.environ.get("PATH") or os.defpath)


def _where(spec: McpBackend) -> str:
    return spec.url or " ".join([str(spec.command), *spec.args])


def _arguments(card: ToolCard, spec: McpBackend, inputs: dict[str, Any]) -> dict[str, Any]:
    """The card's inputs as the tool's arguments, each converted to the JSON type it expects."""
    arguments: dict[str, Any] = {}
    for io in card.inputs:
        value = inputs.get(io.name)
        if value is None:
            continue
        wanted = spec.arguments.get(io.name, "string")
        arguments[io.name] = _converted(io.name, value, wanted)
    return arguments


def _converted(name: str, value: Any, wanted: str) -> Any:
    if wanted == "string" or not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if wanted == "integer":
            return int(text)
        if wanted == "number":
            return float(text)
    except ValueError:
        raise ValueError(f"input '{name}' must be a {wanted}, got {value!r}") from None
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ValueError(f"input '{name}' must be true or false, got {value!r}")


def _texts(result: Any) -> list[str]:
    return [block.text for block in result.content if block.type == "text"]


def _outputs(card: ToolCard, spec: McpBackend, result: Any, ctx: CallContext) -> dict[str, Any]:
    """The result's content as the card's outputs (see the module); missing content fails."""
    outputs: dict[str, Any] = {}
    blocks = list(result.content)
    for io in card.outputs:
        if io.type == "text":
            texts = _texts(result)
            if texts:
                outputs[io.name] = "\n".join(texts)
        elif io.type == "json":
            if result.structured_content is not None:
                outputs[io.name] = result.structured_content
            elif _texts(result):
                outputs[io.name] = _parsed(spec, "\n".join(_texts(result)))
        else:
            block = next((b for b in blocks if b.type == io.type), None)
            if block is not None:
                blocks.remove(block)
                outputs[io.name] = str(_saved(block, io.name, ctx))
        if io.name not in outputs and not io.optional:
            kinds = ", ".join(sorted({b.type for b in result.content})) or "nothing"
            raise McpCallFailed(
                f"MCP tool '{spec.tool}' returned no {io.type} content for output '{io.name}' "
                f"(it returned: {kinds}); fix the card's outputs to what the tool returns"
            )
    return outputs


def _parsed(spec: McpBackend, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise McpCallFailed(
            f"MCP tool '{spec.tool}' returned text that is not JSON for a json output: "
            f"{text[:80]!r}"
        ) from None


def _saved(block: Any, name: str, ctx: CallContext) -> Path:
    """An image or audio block written to a file in the scratch folder."""
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    suffix = _SUFFIXES.get(str(block.mime_type).lower(), ".bin")
    path = ctx.scratch / f"{name}{suffix}"
    index = 1
    while path.exists():
        index += 1
        path = ctx.scratch / f"{name}-{index}{suffix}"
    path.write_bytes(base64.b64decode(block.data))
    return path


def _spec(card: ToolCard) -> McpBackend:
    if not isinstance(card.backend, McpBackend):
        raise TypeError(f"card {card.name} is not an mcp card")
    return card.backend
