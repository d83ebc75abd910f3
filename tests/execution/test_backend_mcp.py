"""The ``mcp`` backend against a real MCP server written for the tests (tests/_mcp_word_server.py).

The server runs as a real process: over stdio it is started by each call inside the card's
sandboxed worker; over streamable HTTP the test starts it on a free loopback port. The cards
come from the real import command (``orchestrator cards new --from-mcp``), and runs go through
``Orchestrator.run`` with its real planner, sandboxed workers and ledger.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from orchestrator.cards import card_from_yaml, load_card
from orchestrator.cards.approvals import Approvals, card_requests
from orchestrator.cards.backend import CallContext
from orchestrator.cards.zoo import Zoo
from orchestrator.cli.main import app
from orchestrator.config import Config
from orchestrator.errors import CardError
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.pipeline.orchestrator import Orchestrator

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "_mcp_word_server.py"
COUNT_REQUEST = 'How many words are in "the quick brown fox jumps"?'


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """The server's own folder, as a user has it: the script beside nothing else."""
    folder = tmp_path / "server"
    folder.mkdir()
    shutil.copy(SERVER_SCRIPT, folder / "word_server.py")
    return folder


def import_cards(cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Path, str]:
    """Run ``orchestrator cards new`` in ``cwd``; the cards folder and what it printed."""
    monkeypatch.chdir(cwd)
    out = cwd.parent / "cards"
    result = CliRunner().invoke(
        app, ["cards", "new", *args, "--out", str(out), "--usd-per-call", "0.001"]
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def stdio_cards(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    return import_cards(
        server_dir, monkeypatch, "--from-mcp", f'"{sys.executable}" word_server.py stdio'
    )


def run(cards: Path, tmp_path: Path, prompt: str, approve: list[str]) -> object:
    config = Config(runs_dir=tmp_path / "runs", approve={name: True for name in approve})
    with Orchestrator(config, zoo=Zoo.load([cards]), durable=False) as orch:
        return orch.run(prompt)


def rewrite(card_file: Path, target: Path, **backend: object) -> None:
    """``card_file`` with some backend fields changed, written to ``target``."""
    data = yaml.safe_load(card_file.read_text())
    data["backend"].update(backend)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))


def test_an_mcp_card_names_exactly_one_server() -> None:
    card = {
        "name": "x",
        "task": "word-count",
        "description": "Counts words with an MCP tool.",
        "inputs": [{"name": "text", "type": "text"}],
        "outputs": [{"name": "result", "type": "text"}],
    }
    for backend, says in [
        ({"tool": "t"}, "exactly one of command (stdio) or url"),
        ({"tool": "t", "command": "x", "url": "http://h/mcp"}, "exactly one of command"),
        ({"tool": "t", "url": "ftp://h/mcp"}, "url must be http:// or https://"),
        ({"tool": "t", "command": "x", "cwd": "relative"}, "cwd must be an absolute folder"),
        ({"tool": "t", "url": "http://h/mcp", "args": ["a"]}, "are for a stdio server"),
    ]:
        with pytest.raises(CardError, match=re.escape(says)):
            card_from_yaml(yaml.safe_dump({**card, "backend": {"kind": "mcp", **backend}}))
    http = card_from_yaml(
        yaml.safe_dump(
            {
                **card,
                "backend": {
                    "kind": "mcp",
                    "tool": "t",
                    "url": "https://tools.example.org/mcp",
                    "headers": {"Authorization": "TOOLS_TOKEN"},
                },
            }
        )
    )
    # It asks for its endpoint and the variable of its header, which the user must approve.
    asked = card_requests(http)
    assert asked.network == ("tools.example.org:443",) and asked.env == ("TOOLS_TOKEN",)


def test_import_writes_a_valid_card_per_mappable_tool(
    server_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, said = stdio_cards(server_dir, monkeypatch)
    written = sorted(p.stem for p in cards.glob("*.yaml"))
    assert written == ["connect", "fail", "hang", "red-square", "word-count", "write-file"]
    count = load_card(cards / "word-count.yaml")
    assert [(io.name, io.type, io.optional) for io in count.inputs] == [("text", "text", False)]
    assert count.outputs[0].type == "text"
    assert count.description == "Count the words in a text: how many words the text has."
    assert {"mcp", "count", "words"} <= set(count.tags)
    assert count.cost.usd_per_call == Decimal("0.001")
    assert count.backend.kind == "mcp" and count.backend.tool == "word_count"
    assert count.backend.command == sys.executable
    assert count.backend.args == ["word_server.py", "stdio"]
    assert count.backend.cwd == str(server_dir.resolve())
    # An integer argument is a text input the backend converts; an optional one stays optional.
    square = load_card(cards / "red-square.yaml")
    assert [(io.name, io.type, io.optional) for io in square.inputs] == [("size", "text", False)]
    assert square.backend.arguments == {"size": "integer"}
    write = load_card(cards / "write-file.yaml")
    assert [io.name for io in write.inputs] == ["path", "text"]
    # A tool whose required argument is an object gets no card, and the command says why.
    assert "settings: no card: required 'options' is of type object" in said
    assert "6 of 7 tools written as cards" in said


def test_run_over_stdio_returns_the_tools_result_charged_to_the_ledger(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, _ = stdio_cards(server_dir, monkeypatch)
    result = run(cards, tmp_path, COUNT_REQUEST, ["word-count"])
    assert result.status == "ok", result.answer
    [step] = result.steps
    assert step.card == "word-count"
    assert step.outputs["result"] == "5"
    assert Decimal(result.spent["usd"]) == Decimal("0.001") and result.spent["calls"] == 1
    assert "5" in result.answer


def test_an_unapproved_card_does_not_start_its_server(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, _ = stdio_cards(server_dir, monkeypatch)
    result = run(cards, tmp_path, COUNT_REQUEST, [])
    assert result.status != "ok"
    assert "approve" in result.answer and "word-count" in result.answer, result.answer


def test_an_image_result_becomes_an_image_file(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, _ = stdio_cards(server_dir, monkeypatch)
    # The import cannot know the tool returns a picture: its note says to set the output type.
    data = yaml.safe_load((cards / "red-square.yaml").read_text())
    data["outputs"] = [{"name": "picture", "type": "image"}]
    (cards / "red-square.yaml").write_text(yaml.safe_dump(data))
    card = load_card(cards / "red-square.yaml")
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=60)
    with WorkerPoolExecutor(approvals=Approvals({"red-square": True})) as pool:
        outcome = pool.call(card, {"size": "6"}, ctx)
    picture = Path(outcome.outputs["picture"])
    assert picture.suffix == ".png" and picture.is_relative_to(tmp_path / "scratch")
    with Image.open(picture) as image:
        assert image.size == (6, 6)
        assert image.convert("RGB").getpixel((3, 3)) == (255, 0, 0)


def test_a_tool_error_is_a_failed_step_saying_why(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, _ = stdio_cards(server_dir, monkeypatch)
    broken = tmp_path / "broken"
    rewrite(cards / "word-count.yaml", broken / "word-count.yaml", tool="fail")
    result = run(broken, tmp_path, COUNT_REQUEST, ["word-count"])
    assert result.status == "failed", result.answer
    [step] = result.steps
    assert step.outputs is None
    assert "MCP tool 'fail' reported an error" in step.attempts[0]["error"]
    assert "the dictionary is closed today" in result.answer, result.answer


def test_a_hanging_tool_is_stopped_by_its_time_limit(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, _ = stdio_cards(server_dir, monkeypatch)
    stuck = tmp_path / "stuck"
    marker = f"hang-{uuid.uuid4().hex}"  # an extra word on the server's command line, to find it
    rewrite(
        cards / "word-count.yaml",
        stuck / "word-count.yaml",
        tool="hang",
        timeout_s=4,
        args=["word_server.py", "stdio", marker],
    )
    started = time.monotonic()
    result = run(stuck, tmp_path, COUNT_REQUEST, ["word-count"])
    assert time.monotonic() - started < 60
    assert result.status == "failed", result.answer
    [step] = result.steps
    assert "MCP tool 'hang'" in step.attempts[0]["error"]
    assert "did not answer within 4 s" in step.attempts[0]["error"]
    assert _processes_with(marker) == []  # the hanging server was stopped, not left behind


def _processes_with(word: str) -> list[int]:
    """Processes of this host whose command line holds ``word`` (sandboxed ones included)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and word.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# --- streamable HTTP ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(server_dir: Path) -> Iterator[str]:
    """The test server over streamable HTTP on a free loopback port; yields its URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "word_server.py", "http", str(port)],
        cwd=server_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "the MCP test server exited"
                assert time.monotonic() < deadline, "the MCP test server did not listen"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_import_and_run_over_streamable_http(
    http_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards, said = import_cards(tmp_path, monkeypatch, "--from-mcp-url", http_server)
    assert "6 of 7 tools written as cards" in said
    card = load_card(cards / "word-count.yaml")
    assert card.backend.url == http_server and card.backend.command is None
    # The worker reaches the server only because its endpoint is approved (asked for by the card).
    result = run(cards, tmp_path, COUNT_REQUEST, ["word-count"])
    assert result.status == "ok", result.answer
    assert result.steps[0].outputs["result"] == "5"
    assert Decimal(result.spent["usd"]) == Decimal("0.001")
