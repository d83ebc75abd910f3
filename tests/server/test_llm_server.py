"""The OpenAI-compatible server, run as a real subprocess serving the real SmolLM2 card."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from _llm_server import CARD

from orchestrator.cards import TransformersBackend, card_from_yaml
from orchestrator.cards.backend import unavailable_reason
from orchestrator.errors import NotServable, UserError
from orchestrator.server.single_model import (
    ChatCompletionRequest,
    _StopHold,
    _ToolShape,
    build_inputs,
    create_app,
    resolve_card,
)


@pytest.fixture(scope="module")
def server(llm_server: str) -> str:
    return llm_server


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_models_lists_the_card(client: openai.OpenAI, server: str) -> None:
    assert [m.id for m in client.models.list()] == [CARD]
    assert client.models.retrieve(CARD).id == CARD
    missing = httpx.get(f"{server}/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_completion_with_the_official_client(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=CARD,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
    )
    assert response.object == "chat.completion"
    assert response.model == CARD
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 24
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_max_tokens_caps_the_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=CARD,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=5,
    )
    assert response.usage is not None
    assert 0 < response.usage.completion_tokens <= 5
    assert response.choices[0].finish_reason == "length"


def test_conversation_with_system_and_assistant_turns(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(
        model=CARD, messages=[{"role": "user", "content": "And Spain?"}], max_tokens=8
    )
    long = client.chat.completions.create(
        model=CARD,
        messages=[
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [{"type": "text", "text": "And Spain?"}]},
        ],
        max_tokens=8,
        temperature=0.2,
    )
    assert long.choices[0].message.content
    assert short.usage is not None and long.usage is not None
    # The earlier turns and the system message reached the model.
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 10


def test_streaming_with_the_official_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CARD,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # the SDK stops only at "data: [DONE]"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_sends_a_delta_per_piece_joining_to_the_whole_answer(
    client: openai.OpenAI,
) -> None:
    request = {
        "model": CARD,
        "messages": [{"role": "user", "content": "Write two sentences about the sea."}],
        "max_tokens": 40,
    }
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    deltas = [d for d in deltas if d]
    assert len(deltas) > 5, deltas  # token by token, not the answer in one piece
    assert "".join(deltas) == whole  # greedy decoding: the same answer both ways


def test_a_streamed_answer_never_passes_a_stop_sequence(client: openai.OpenAI) -> None:
    request = {
        "model": CARD,
        "messages": [{"role": "user", "content": "Write two sentences about the sea."}],
        "max_tokens": 40,
    }
    whole = client.chat.completions.create(**request).choices[0].message.content
    words = whole.split()
    stop = " ".join(words[3:5])  # two words from the middle of the answer
    stream = client.chat.completions.create(**request, stop=[stop], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole[: whole.index(stop)] and stop not in text


def test_stop_hold_releases_text_only_where_no_stop_can_begin() -> None:
    held = _StopHold(["END", "\n\n"])
    assert held.feed("Hello") == "Hel"  # the last two may begin a stop: kept back
    assert held.feed(" wor") == "lo w"
    assert held.feed("ld EN") == "orld "  # "EN" may begin "END"
    assert held.feed("D more") == ""  # it did: nothing from the stop on is sent
    assert held.feed(" text") == ""
    assert held.sent == "Hello world "


def test_stream_wire_format_ends_with_done(server: str) -> None:
    body = {
        "model": CARD,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        "stream": True,
    }
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=120) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [line for line in reply.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][len("data: ") :])
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_response_format_is_accepted(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    for response_format in (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    ):
        response = client.chat.completions.create(
            model=CARD,
            messages=[{"role": "user", "content": "Name a city in Italy."}],
            max_tokens=12,
            response_format=response_format,  # type: ignore[arg-type]
        )
        assert response.choices[0].message.content is not None


def _assert_openai_error(reply: httpx.Response, status: int) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in reply.text
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": CARD}, "messages"),
        ({"model": CARD, "messages": "hello"}, "messages"),
        ({"model": CARD, "messages": []}, "messages"),
        ({"model": CARD, "messages": [{"role": "user", "content": 3}]}, "messages.0.content"),
        ({"model": CARD, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            {"model": CARD, "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
            "max_tokens",
        ),
        (
            {"model": CARD, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        (
            {"model": CARD, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
        (
            {"model": CARD, "messages": [{"role": "user", "content": "x"}], "max_tokenz": 4},
            "max_tokenz",
        ),
        ({"model": CARD, "messages": [{"role": "system", "content": "x"}]}, "messages"),
        (
            {
                "model": CARD,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                    }
                ],
            },
            "messages.0.content",
        ),
    ],
)
def test_malformed_requests_get_openai_shaped_400(
    server: str, body: dict[str, object], param: str
) -> None:
    reply = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=30)
    error = _assert_openai_error(reply, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_body_that_is_not_json_gets_400(server: str) -> None:
    reply = httpx.post(
        f"{server}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    error = _assert_openai_error(reply, 400)
    assert "JSON" in str(error["message"])


def test_official_client_sees_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CARD, messages=[], max_tokens=4)
    assert caught.value.status_code == 400


def test_unknown_model_is_404(server: str, client: openai.OpenAI) -> None:
    body = {"model": "gpt-9000", "messages": [{"role": "user", "content": "Hi"}]}
    error = _assert_openai_error(httpx.post(f"{server}/v1/chat/completions", json=body), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-9000" in str(error["message"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-9000", messages=[{"role": "user", "content": "x"}]
        )


def test_unknown_route_is_json_404(server: str) -> None:
    _assert_openai_error(httpx.get(f"{server}/v2/nothing"), 404)


def test_concurrent_requests_are_served_one_at_a_time(client: openai.OpenAI) -> None:
    def ask(question: str) -> str:
        response = client.chat.completions.create(
            model=CARD, messages=[{"role": "user", "content": question}], max_tokens=8
        )
        return response.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(ask, ["What is 2+2?", "Name a color.", "Name an animal."]))
    assert len(answers) == 3 and all(a.strip() for a in answers)


CARD_YAML = """
name: {name}
task: {task}
description: a card that must not be served as a chat model
inputs: [{{name: {input}, type: {type}}}]
outputs: [{{name: label, type: text}}]
backend: {{kind: python, entry: "nowhere.at_all:load"}}
"""


def test_the_guard_refuses_other_hosts_cross_site_posts_and_huge_bodies(server: str) -> None:
    rebound = httpx.get(f"{server}/v1/models", headers={"Host": "attacker.example"}, timeout=30)
    assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "host_not_allowed"
    cross_site = httpx.post(
        f"{server}/v1/chat/completions",
        content=b'{"model": "x"}',
        headers={"Origin": "http://attacker.example", "Content-Type": "text/plain"},
        timeout=30,
    )
    assert cross_site.status_code == 403, cross_site.text
    huge = json.dumps({"model": CARD, "messages": [{"role": "user", "content": "x" * 5_000_000}]})
    too_big = httpx.post(
        f"{server}/v1/chat/completions",
        content=huge,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert too_big.status_code == 413, too_big.text


def test_serve_llm_refuses_a_public_address_without_a_key() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve-llm", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_LLM_API_KEY"},
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in " ".join(done.stderr.split())


def test_only_text_generation_cards_are_servable() -> None:
    classifier = card_from_yaml(
        CARD_YAML.format(name="a-classifier", task="text-classification", input="text", type="text")
    )
    with pytest.raises(NotServable, match="only text-generation"):
        create_app(classifier)
    captioner = card_from_yaml(
        CARD_YAML.format(name="a-captioner", task="text-generation", input="image", type="image")
    )
    with pytest.raises(NotServable, match="one required text input"):
        create_app(captioner)


def test_a_cards_own_code_is_never_loaded_in_the_server(tmp_path: Path) -> None:
    marker = tmp_path / "ran-in-the-server"
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "chatty.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (folder / "chatty.yaml").write_text(
        CARD_YAML.format(
            name="chatty", task="text-generation", input="prompt", type="text"
        ).replace("nowhere.at_all:load", "chatty:load")
    )
    card = resolve_card(str(folder / "chatty.yaml"))
    with pytest.raises(NotServable, match="a python card: serve-llm loads the model in this"):
        create_app(card)
    assert not marker.exists()
    remote = card.model_copy(
        update={
            "backend": TransformersBackend(
                kind="transformers",
                task="text-generation",
                model=str(folder),
                options={"trust_remote_code": True},
            )
        }
    )
    with pytest.raises(NotServable, match="running its model's code"):
        create_app(remote)


def test_unavailable_cloud_card_is_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    card = resolve_card("openai-gpt-4o-mini")
    assert "OPENAI_API_KEY" in (unavailable_reason(card) or "")
    with pytest.raises(NotServable, match="OPENAI_API_KEY"):
        create_app(card)


def test_unknown_card_name_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match="no-such-card.*openai-gpt-4o-mini"):
        resolve_card("no-such-card")


def _inputs_for(card_name: str, **request: object) -> dict[str, object]:
    body = ChatCompletionRequest.model_validate({"model": card_name, **request})
    return build_inputs(body, _ToolShape.of(resolve_card(card_name)))


def test_conversation_rendering() -> None:
    # The SmolLM2 card has an optional system input: system messages go there.
    single = _inputs_for(CARD, messages=[{"role": "user", "content": "Hi there"}])
    assert single == {"prompt": "Hi there"}
    turns = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Spain?"},
    ]
    rendered = _inputs_for(CARD, messages=turns)
    assert rendered["system"] == "Be brief."
    assert rendered["prompt"] == "User: Capital of France?\n\nAssistant: Paris.\n\nUser: And Spain?"
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    as_json = _inputs_for(
        CARD,
        messages=turns[1:2],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert as_json["prompt"] == "Capital of France?"
    assert "JSON" in str(as_json["system"]) and '"city"' in str(as_json["system"])
    bare = card_from_yaml(
        CARD_YAML.format(name="bare", task="text-generation", input="prompt", type="text")
    )
    body = ChatCompletionRequest.model_validate({"model": "bare", "messages": turns[:2]})
    assert build_inputs(body, _ToolShape.of(bare)) == {"prompt": "Be brief.\n\nCapital of France?"}
