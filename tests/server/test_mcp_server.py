"""``orchestrator mcp``: the real server process, talked to by the real ``mcp`` client.

Each test starts ``python -m orchestrator mcp`` as a subprocess (over stdio, or over streamable
HTTP on a free port) and connects with :class:`mcp.ClientSession`; the tools run on the cheap
real zoo (VADER sentiment, lingua language identification) in the sandboxed workers.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _cli_tools import cli_env
from _tool_fixtures import write_photos
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

SERVER = [sys.executable, "-m", "orchestrator", "mcp"]


@asynccontextmanager
async def stdio_session(tmp_path: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], *args], env=cli_env(tmp_path), cwd=tmp_path
    )
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def over_stdio(tmp_path: Path, test: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(240):
            async with stdio_session(tmp_path) as session:
                await test(session)

    anyio.run(main)


def texts(result: Any) -> list[str]:
    return [block.text for block in result.content if block.type == "text"]


def test_lists_tools_and_card_resources(tmp_path: Path) -> None:
    async def check(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        run = tools["run"]
        assert run.input_schema["required"] == ["prompt"]
        assert run.input_schema["properties"]["files"]["type"] == "array"
        vader = tools["vader-sentiment"]
        assert vader.input_schema["properties"]["text"]["type"] == "string"
        assert vader.input_schema["required"] == ["text"]
        image = tools["haar-faces"].input_schema["properties"]["image"]
        assert image["type"] == "string"
        assert image["description"].startswith("path of an image file on the server's machine")
        assert "openai-gpt-4o-mini" not in tools  # no key set: unavailable, so no tool

        resources = {str(r.uri): r for r in (await session.list_resources()).resources}
        assert "card://vader-sentiment" in resources
        assert "card://openai-gpt-4o-mini" in resources  # listed even when unavailable
        text = (await session.read_resource("card://vader-sentiment")).contents[0].text
        assert text.startswith("name: vader-sentiment")
        assert "# profile: mean score 0.50 over 6 probes" in text
        text = (await session.read_resource("card://openai-gpt-4o-mini")).contents[0].text
        assert "# unavailable here:" in text
        with pytest.raises(MCPError, match="no resource 'card://nope'"):
            await session.read_resource("card://nope")

    over_stdio(tmp_path, check)


def test_run_tool_answers_and_refuses(tmp_path: Path) -> None:
    async def check(session: ClientSession) -> None:
        result = await session.call_tool("run", {"prompt": 'Is "I love it" positive?'})
        assert not result.is_error, texts(result)
        assert "positive" in texts(result)[0].lower()
        summary = result.structured_content
        assert summary["status"] == "ok"
        assert len(summary["run_id"]) == 12
        assert summary["spent"]["calls"] >= 1

        # A file that is not there is refused before anything runs, naming it.
        missing = str(tmp_path / "nowhere" / "photo.png")
        result = await session.call_tool(
            "run", {"prompt": "how many faces are in this photo", "files": [missing]}
        )
        assert result.is_error
        assert missing in texts(result)[0]
        assert "does not exist" in texts(result)[0]
        result = await session.call_tool("run", {"prompt": "hi", "budget_usd": "cheap"})
        assert result.is_error
        assert "budget_usd must be an amount" in texts(result)[0]

        # A run the budget stops is an error result that says its status.
        result = await session.call_tool(
            "run", {"prompt": 'Is "I love it" positive?', "max_calls": 0}
        )
        assert result.is_error
        assert result.structured_content["status"] not in ("ok", "partial")
        assert texts(result)[0].startswith(result.structured_content["status"])

    over_stdio(tmp_path, check)


def test_card_tools_run_their_card_alone(tmp_path: Path) -> None:
    async def check(session: ClientSession) -> None:
        result = await session.call_tool("vader-sentiment", {"text": "I hate rainy mondays"})
        assert not result.is_error, texts(result)
        assert texts(result)[0] == "negative"
        assert json.loads(texts(result)[1])["scores"]["compound"] < 0
        summary = result.structured_content
        assert summary["card"] == "vader-sentiment"
        assert summary["outputs"]["label"] == "negative"
        assert summary["spent"]["calls"] == 1
        # Another text card of the same task answers its own question: a language.
        result = await session.call_tool("lingua-langid", {"text": "Bonjour tout le monde"})
        assert texts(result)[0] == "French"

        # An image input is a path (here relative to the server's folder); an image output
        # comes back as image content.
        write_photos(tmp_path / "photos")
        result = await session.call_tool("haar-faces", {"image": "photos/astronaut.png"})
        assert not result.is_error, texts(result)
        assert len(json.loads(texts(result)[0])["faces"]) == 1
        marked = [block for block in result.content if block.type == "image"]
        assert marked[0].mime_type == "image/png"
        assert base64.b64decode(marked[0].data).startswith(b"\x89PNG")

        result = await session.call_tool("vader-sentiment", {})
        assert result.is_error
        assert "needs the argument 'text'" in texts(result)[0]
        result = await session.call_tool("vader-sentiment", {"text": "ok", "tone": "x"})
        assert result.is_error
        assert "unknown argument(s): tone" in texts(result)[0]
        missing = str(tmp_path / "gone.png")
        result = await session.call_tool("haar-faces", {"image": missing})
        assert result.is_error
        assert missing in texts(result)[0]
        result = await session.call_tool("no-such-card", {})
        assert result.is_error
        assert "the tools are: run, " in texts(result)[0]

    over_stdio(tmp_path, check)


@pytest.mark.slow  # loads the real Piper voice
def test_audio_output_and_run_artifacts(tmp_path: Path) -> None:
    """Piper speaks (real voice weights): audio content from its tool, a link from a run."""

    async def check(session: ClientSession) -> None:
        result = await session.call_tool("piper-joe-en", {"text": "hello there"})
        assert not result.is_error, texts(result)
        audio = result.content[0]
        assert audio.type == "audio" and audio.mime_type == "audio/wav"
        assert base64.b64decode(audio.data)[8:12] == b"WAVE"

        result = await session.call_tool("run", {"prompt": 'say "good morning" out loud'})
        assert not result.is_error, texts(result)
        links = [block for block in result.content if block.type == "resource_link"]
        assert len(links) == 1 and links[0].mime_type == "audio/wav"
        path = Path(result.structured_content["artifacts"][0])
        assert links[0].uri == path.as_uri()
        assert path.read_bytes()[8:12] == b"WAVE"

    over_stdio(tmp_path, check)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streamable_http_transport(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*SERVER, "--transport", "http", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(tmp_path),
            cwd=tmp_path,
        )
    try:
        _wait_listening(port, server, tmp_path / "server.log")

        async def main() -> None:
            with anyio.fail_after(240):
                async with streamable_http_client(url) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        names = [tool.name for tool in (await session.list_tools()).tools]
                        assert names[0] == "run" and "vader-sentiment" in names
                        result = await session.call_tool("vader-sentiment", {"text": "so good!"})
                        assert texts(result)[0] == "positive"

        anyio.run(main)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_listening(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"the MCP server did not start: {log.read_text()}")


def test_http_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    done = subprocess.run(
        [*SERVER, "--transport", "http", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 2
    assert "bind to 127.0.0.1" in done.stderr
