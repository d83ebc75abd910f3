"""The attack suite, network part: tools that try the host's localhost, ports nobody approved,
or an approved endpoint reached at another address; and a real OpenAI-compatible card that
reaches only the local LLM server its user approved.

Each attack is real code run through ``run_source`` or the real worker pool, in the sandbox this
host gives.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from test_sandbox_attacks import assert_blocked, attack, out

from orchestrator.cards import ToolCard
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.execution.sandbox.policy import Policy
from orchestrator.execution.sandbox.run_file import run_source

# --- item 11: network is the approved endpoints, never the host's localhost ---


class _Listener:
    """A TCP server on the host's 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(3)
            try:
                self.received.append(conn.recv(100))
                conn.sendall(b"pong")
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_network_permission_never_reaches_the_hosts_localhost() -> None:
    host = _Listener()
    try:
        policy = Policy(network=True, label="exec")
        result = attack("net_proxy_localhost", {"PORT": str(host.port)}, policy=policy)
    finally:
        host.close()
    assert_blocked(result)
    assert host.received == []


def test_an_approved_endpoint_is_reached_and_nothing_else() -> None:
    allowed, other = _Listener(), _Listener()
    source = f"""
import socket
s = socket.create_connection(("127.0.0.1", {allowed.port}), timeout=5)
s.sendall(b"hello")
print("reply", s.recv(10))
try:
    socket.create_connection(("127.0.0.1", {other.port}), timeout=3).sendall(b"stolen")
    print("ESCAPED: reached a port nobody approved")
except OSError as exc:
    print(f"BLOCKED: {{exc}}")
"""
    try:
        policy = Policy(network=(f"127.0.0.1:{allowed.port}",), label="exec")
        result = run_source(source.encode(), capture=True, policy=policy, timeout_s=30)
    finally:
        allowed.close()
        other.close()
    assert_blocked(result)
    assert "reply b'pong'" in out(result)
    assert allowed.received == [b"hello"] and other.received == []


def _host_address() -> str:
    """This host's own IPv4 address on its outgoing interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


def test_an_approved_ipv4_endpoint_is_reached_at_its_own_address() -> None:
    """A LAN-style endpoint written as an address: the sandbox's loopback carries it."""
    address = _host_address()
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        received.append(conn.recv(10))
        conn.sendall(b"pong")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    source = f"""
import socket
s = socket.create_connection(({address!r}, {port}), timeout=5)
s.sendall(b"hello")
print("reply", s.recv(10))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"stolen")
    print("ESCAPED: the same port on the host's localhost")
except OSError as exc:
    print(f"BLOCKED: {{exc}}")
"""
    try:
        policy = Policy(network=(f"{address}:{port}",), label="exec")
        result = run_source(source.encode(), capture=True, policy=policy, timeout_s=30)
        thread.join(10)
    finally:
        server.close()
    assert_blocked(result)
    assert "reply b'pong'" in out(result) and received == [b"hello"]


def test_an_openai_card_reaches_the_users_approved_local_llm_server(
    llm_server: str, tmp_path: Path
) -> None:
    from _llm_server import CARD

    card = ToolCard.model_validate(
        {
            "name": "local-chat",
            "task": "text-generation",
            "description": "a small chat model on this machine, reached over HTTP",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": CARD, "base_url": f"{llm_server}/v1"},
        }
    )
    ctx = CallContext(scratch=tmp_path, max_tokens=8, timeout_s=120)
    with WorkerPoolExecutor() as pool:
        with pytest.raises(ToolFailed, match=r"not approved: network 127\.0\.0\.1:\d+"):
            pool.call(card, {"prompt": "Say hi."}, ctx)
    with WorkerPoolExecutor(approvals=Approvals({"local-chat": True})) as pool:
        outcome = pool.call(card, {"prompt": "What is the capital of France?"}, ctx)
    assert outcome.outputs["text"].strip() and outcome.usage.output_tokens > 0
