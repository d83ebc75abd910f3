"""``orchestrator mcp``: the orchestrator as an MCP server (Model Context Protocol).

An MCP client (an IDE assistant, an agent framework) starts ``orchestrator mcp`` and talks to it
over stdio, or connects to ``orchestrator mcp --transport http`` (streamable HTTP at ``/mcp``).
It sees:

* the tool ``run`` - a whole request (``prompt``, optional ``files``, optional ``budget_usd``,
  ``max_seconds``, ``max_calls``): planned, run on the zoo and answered, as ``orchestrator run``
  does. The result holds the answer as text, the files the run made as resource links
  (``file://`` URIs on the server's machine) and, as structured content, the run's status,
  id, message, spending and artifacts. A run whose status is not ``ok`` or ``partial`` is an
  error result whose text says what went wrong or what to fix.
* one tool per available card, named after it. Its arguments are the card inputs the pipeline
  fills (the first input of each type: text as a string, image and audio as the path of a file
  on the server's machine); it runs on that card alone, in the sandboxed workers, charged to
  the default budget (the config's ``[budget]``, or the command's limits). Text outputs come
  back as text, json outputs as JSON text, image and audio outputs as image and audio content.
* one resource per card, ``card://NAME``: the card's YAML, with its profile summary (and, for a
  card that cannot run here, why) as comment lines.

Files are paths on the server's machine: the server runs as its user, with its files, as the
command line does. Over HTTP it listens on a loopback address only (there is no key to check).
The ``mcp`` package is imported lazily (extra ``orchestrator[server]``).
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import UserError
from orchestrator.server.mcp_tools import McpService

__all__ = ["build_server", "check_transport", "serve_mcp"]

SERVER_EXTRA_HINT = "pip install 'orchestrator[server]'"


# --- the protocol ---------------------------------------------------------------------------------


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"the MCP server needs 'mcp', which is not installed: {SERVER_EXTRA_HINT}"
        ) from exc


def build_server(service: McpService, *, max_concurrent: int = 2) -> Any:
    """The low-level MCP server over ``service`` (tool calls run in threads, a few at once)."""
    _require_mcp()
    import anyio
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError
    from mcp_types.jsonrpc import INVALID_PARAMS

    limiter = anyio.CapacityLimiter(max_concurrent)
    schemas = {tool.name: tool.input_schema for tool in service.tools(types)}

    async def list_tools(_ctx: Any, _params: Any) -> Any:
        return types.ListToolsResult(tools=service.tools(types))

    async def call_tool(_ctx: Any, params: Any) -> Any:
        cancel = threading.Event()
        call = partial(service.call, types, params.name, dict(params.arguments or {}), cancel)
        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
        except anyio.get_cancelled_exc_class():
            cancel.set()  # the run stops before its next step
            raise

    async def list_resources(_ctx: Any, _params: Any) -> Any:
        return types.ListResourcesResult(resources=service.resources(types))

    async def read_resource(_ctx: Any, params: Any) -> Any:
        uri = str(params.uri)
        try:
            text = service.read(uri)
        except UserError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        contents = [types.TextResourceContents(uri=uri, mime_type="text/yaml", text=text)]
        return types.ReadResourceResult(contents=contents)

    return Server(
        "orchestrator",
        version=_version(),
        instructions=(
            "Use the 'run' tool for a whole request (it plans and picks models itself); call a "
            "card's tool to run that one model. Files are paths on the server's machine."
        ),
        get_tool_input_schema=schemas.get,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orchestrator")
    except PackageNotFoundError:
        return "0"


def check_transport(transport: str, host: str) -> None:
    """Refuse an unknown transport, or HTTP on an address beyond this machine."""
    from orchestrator.server import is_loopback

    if transport not in ("stdio", "http"):
        raise UserError(f"--transport must be stdio or http, got {transport!r}")
    if transport == "http" and not is_loopback(host):
        raise UserError(
            f"refusing to serve MCP on {host}: the MCP server has no API key, so anyone who "
            "could reach it could spend your budget and read files; bind to 127.0.0.1"
        )


def serve_mcp(config: Config, zoo: Zoo, *, transport: str, host: str, port: int) -> None:
    """Serve until the client hangs up (stdio) or until interrupted (http)."""
    check_transport(transport, host)
    _require_mcp()
    service = McpService(config, zoo)
    try:
        server = build_server(service, max_concurrent=config.server.max_concurrent_runs)
        if transport == "stdio":
            _serve_stdio(server)
        else:
            _serve_http(server, host, port)
    finally:
        service.close()


def _serve_stdio(server: Any) -> None:
    import anyio
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)


def _serve_http(server: Any, host: str, port: int) -> None:
    import uvicorn

    app = server.streamable_http_app(host=host)
    shown = f"[{host}]" if ":" in host else host
    print(f"orchestrator: MCP (streamable HTTP) at http://{shown}:{port}/mcp", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
