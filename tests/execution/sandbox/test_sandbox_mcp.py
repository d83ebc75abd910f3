"""An MCP server started over stdio by an ``mcp`` card runs inside the card's sandbox.

The real test server (tests/_mcp_word_server.py) is started by the call, as a child of the
confined worker. Its tools try what a tool card may not do - write a file outside the scratch
folder, reach a port of the host's localhost - and are refused as a python tool card is (the
attacks of test_sandbox.py and test_sandbox_network_attacks.py), while the same server's real
work still answers.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from test_sandbox_network_attacks import _Listener

from orchestrator.cards import load_card
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import WorkerPoolExecutor
from tests.execution.test_backend_mcp import server_dir, stdio_cards

__all__ = ["server_dir"]  # the fixture, imported for these tests


@pytest.fixture
def cards(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder, _ = stdio_cards(server_dir, monkeypatch)
    return folder


def test_a_stdio_server_cannot_write_outside_the_sandbox(cards: Path, tmp_path: Path) -> None:
    card = load_card(cards / "write-file.yaml")
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=60)
    outside = tmp_path / "outside.txt"  # the test's own folder: writable on the host
    private = f"/tmp/mcp-{uuid.uuid4().hex}.txt"  # the sandbox's private /tmp
    with WorkerPoolExecutor(approvals=Approvals({"write-file": True})) as pool:
        refused = "cannot write .*(No such file|Read-only file system|Permission denied)"
        with pytest.raises(ToolFailed, match=refused):
            pool.call(card, {"path": str(outside), "text": "escaped"}, ctx)
        done = pool.call(card, {"path": private, "text": "inside"}, ctx)
    assert not outside.exists()
    assert done.outputs["result"] == f"wrote {private}"
    assert not Path(private).exists()  # it wrote the sandbox's own /tmp, gone with it


def test_a_stdio_server_cannot_reach_the_hosts_localhost(cards: Path, tmp_path: Path) -> None:
    card = load_card(cards / "connect.yaml")
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=60)
    host = _Listener()
    try:
        with WorkerPoolExecutor(approvals=Approvals({"connect": True})) as pool:
            refused = (
                r"cannot connect to 127\.0\.0\.1:\d+: .*(Permission denied|refused|unreachable)"
            )
            with pytest.raises(ToolFailed, match=refused):
                pool.call(card, {"port": str(host.port)}, ctx)
    finally:
        host.close()
    assert host.received == []
