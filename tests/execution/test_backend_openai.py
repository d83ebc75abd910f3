"""The openai chat backend, against the project's own server running the real SmolLM2 card."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from _llm_server import CARD

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason
from orchestrator.errors import ChatEndpointError
from orchestrator.execution.backends.openai_chat import is_local_url
from orchestrator.server.single_model import resolve_card


@pytest.fixture(scope="module")
def base_url(llm_server: str) -> str:
    return f"{llm_server}/v1"


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def chat_card(base_url: str | None, **backend: object) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": "local-chat",
            "task": "text-generation",
            "description": "a small chat model on this machine, reached over HTTP",
            "inputs": [
                {"name": "prompt", "type": "text"},
                {"name": "system", "type": "text", "optional": True},
            ],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": CARD, "base_url": base_url, **backend},
        }
    )


def test_local_card_needs_no_key_and_answers(base_url: str, tmp_path: Path) -> None:
    card = chat_card(base_url, max_tokens=24)
    assert unavailable_reason(card) is None
    tool = load_tool(card)
    ctx = CallContext(scratch=tmp_path)
    outputs = tool({"prompt": "What is the capital of France?"}, ctx)
    assert set(outputs) == {"text"}
    assert isinstance(outputs["text"], str) and outputs["text"].strip()
    assert ctx.usage.input_tokens > 0
    assert 0 < ctx.usage.output_tokens <= 24
    assert list(tmp_path.iterdir()) == []  # a chat call writes no files


def test_a_streaming_caller_gets_the_reply_piece_by_piece(base_url: str, tmp_path: Path) -> None:
    tool = load_tool(chat_card(base_url, max_tokens=32))
    prompt = {"prompt": "Write two sentences about the sea."}
    whole = tool(prompt, CallContext(scratch=tmp_path))["text"]
    pieces: list[str] = []
    ctx = CallContext(scratch=tmp_path, on_text=pieces.append)
    outputs = tool(prompt, ctx)
    assert len(pieces) > 5, pieces  # the server's stream, one delta per token
    assert "".join(pieces) == outputs["text"] == whole  # greedy decoding: the same reply
    assert ctx.usage.input_tokens > 0 and 0 < ctx.usage.output_tokens <= 32  # include_usage


def test_max_tokens_is_the_smaller_of_card_and_context(base_url: str, tmp_path: Path) -> None:
    tool = load_tool(chat_card(base_url, max_tokens=40))
    ctx = CallContext(scratch=tmp_path, max_tokens=4)
    tool({"prompt": "Write a long poem about the sea."}, ctx)
    assert 0 < ctx.usage.output_tokens <= 4

    tool = load_tool(chat_card(base_url, max_tokens=3))
    ctx = CallContext(scratch=tmp_path, max_tokens=50)
    tool({"prompt": "Write a long poem about the sea."}, ctx)
    assert 0 < ctx.usage.output_tokens <= 3


def test_system_prompt_reaches_the_model(base_url: str, tmp_path: Path) -> None:
    question = {"prompt": "Name a fruit."}
    plain = CallContext(scratch=tmp_path, max_tokens=2)
    load_tool(chat_card(base_url))(question, plain)
    from_card = CallContext(scratch=tmp_path, max_tokens=2)
    system = (  # longer than the default system message some chat templates insert
        "You are a grocer in a small market town. You know every fruit and vegetable by name, "
        "where it grows and when it is in season. Answer with exactly one word and nothing else."
    )
    load_tool(chat_card(base_url, system_prompt=system))(question, from_card)
    from_input = CallContext(scratch=tmp_path, max_tokens=2)
    load_tool(chat_card(base_url))({**question, "system": system}, from_input)
    assert from_card.usage.input_tokens > plain.usage.input_tokens + 8
    assert from_input.usage.input_tokens == from_card.usage.input_tokens


def test_endpoint_errors_are_clear(base_url: str, tmp_path: Path) -> None:
    wrong_model = chat_card(base_url)
    backend = wrong_model.backend.model_copy(update={"model": "no-such-model"})
    tool = load_tool(wrong_model.model_copy(update={"backend": backend}))
    with pytest.raises(ChatEndpointError, match=r"HTTP 404: .*no-such-model"):
        tool({"prompt": "Hi"}, CallContext(scratch=tmp_path))


def test_timeout_is_reported_not_retried(base_url: str, tmp_path: Path) -> None:
    tool = load_tool(chat_card(base_url))
    ctx = CallContext(scratch=tmp_path, max_tokens=16, timeout_s=0.05)
    started = time.monotonic()
    with pytest.raises(ChatEndpointError, match="timed out after 0.05 s"):
        tool({"prompt": "Write an essay."}, ctx)
    assert time.monotonic() - started < 1.0


def test_unreachable_endpoint_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = load_tool(chat_card(f"http://127.0.0.1:{port}/v1"))
    started = time.monotonic()
    with pytest.raises(ChatEndpointError, match="unreachable"):
        tool({"prompt": "Hi"}, CallContext(scratch=tmp_path, timeout_s=10))
    assert time.monotonic() - started >= 1.0  # waited between its three tries


def test_cloud_card_without_key_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    card = resolve_card("openai-gpt-4o-mini")
    reason = unavailable_reason(card)
    assert reason is not None and "OPENAI_API_KEY" in reason
    with pytest.raises(ChatEndpointError, match="OPENAI_API_KEY"):
        load_tool(card)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert unavailable_reason(card) is None  # fast: no network call to check the key


def test_custom_key_variable_is_named() -> None:
    card = chat_card("https://llm.example.com/v1", api_key_env="EXAMPLE_LLM_KEY")
    reason = unavailable_reason(card)
    assert reason is not None and "EXAMPLE_LLM_KEY" in reason
    assert "llm.example.com" in reason


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:1234/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://api.localhost/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://localhost.evil.com/v1", False),
    ],
)
def test_local_urls(url: str, local: bool) -> None:
    assert is_local_url(url) is local
