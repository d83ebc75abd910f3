"""One OpenAI wire format for both servers: ``orchestrator serve`` and the single-model server.

The orchestrator server runs as a real subprocess (the vader card answers); the single-model
server serves a tiny random GPT-2 card built into a temp folder, in this process. Both are used
through the real openai SDK and read raw, and must frame their answers the same way.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai
import pytest
from _server_tools import SENTIMENT, sse_payloads
from _server_tools import start_module_server as _start
from fastapi.testclient import TestClient

from orchestrator.server.single_model import create_app
from orchestrator.server.wire import Completion, Delta, Usage, sse
from tests.execution.test_backend_transformers import CHAT_TEMPLATE, tiny_gpt2, write_card

os.environ["HF_HUB_OFFLINE"] = "1"

TINY = "tiny-chat"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("server"))
    try:
        yield proc.base_url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> TestClient:
    folder = tmp_path_factory.mktemp("tiny")
    card = write_card(
        folder,
        TINY,
        [{"name": "prompt", "type": "text"}],
        [{"name": "text", "type": "text"}],
        {
            "kind": "transformers",
            "task": "text-generation",
            "model": str(tiny_gpt2(folder / "gpt2", CHAT_TEMPLATE)),
            "call_options": {"max_new_tokens": 4, "do_sample": False},
        },
    )
    with TestClient(create_app(card)) as client:
        yield client


def _pipeline_stream(base_url: str, body: dict[str, Any]) -> list[Any]:
    url = f"{base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_payloads(response.iter_lines())


def _single_stream(client: TestClient, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_payloads(response.iter_lines())


def _shape(payload: Any) -> Any:
    """What a chunk looks like, without its values (and without the orchestrator member)."""
    if payload == "[DONE]":
        return payload
    choices = [
        (sorted(c), sorted(c["delta"]), c["finish_reason"] is None) for c in payload["choices"]
    ]
    usage = payload.get("usage", "absent")
    keys = sorted(k for k in payload if k != "orchestrator")
    return keys, payload["object"], choices, usage if usage in (None, "absent") else sorted(usage)


def _answer_shapes(payloads: list[Any]) -> list[Any]:
    """The shapes of the chunks that carry the answer (the pipeline's progress left out)."""
    progress = [
        p
        for p in payloads
        if p != "[DONE]"
        and "orchestrator" in p
        and p["choices"]
        and p["choices"][0]["delta"] == {}
        and p["choices"][0]["finish_reason"] is None
    ]
    # a progress chunk is framed as any other chunk, plus its event
    for p in progress:
        assert _shape(p) == _shape({**p, "choices": [{**p["choices"][0], "delta": {}}]})
    shapes = [_shape(p) for p in payloads if not any(p is q for q in progress)]
    # A streamed answer comes in as many content chunks as pieces: a run of them is one shape.
    return [s for k, s in enumerate(shapes) if k == 0 or s != shapes[k - 1]]


@pytest.mark.parametrize("include_usage", [True, False])
def test_both_servers_frame_a_stream_the_same(pipeline, single, include_usage):
    options = {"stream": True, "stream_options": {"include_usage": include_usage}}
    ours = _pipeline_stream(
        pipeline,
        {"model": "orchestrator", "messages": [{"role": "user", "content": SENTIMENT}], **options},
    )
    theirs = _single_stream(
        single,
        {"model": TINY, "messages": [{"role": "user", "content": "hello world"}], **options},
    )
    assert _answer_shapes(ours) == _answer_shapes(theirs)
    shapes = _answer_shapes(theirs)
    assert shapes[-1] == "[DONE]"
    # role first, then the content, then the finish reason (then the usage when asked for)
    assert [s[2][0][1] if s[2] else None for s in shapes[:-1]][:3] == [
        ["content", "role"],
        ["content"],
        [],
    ]
    if include_usage:
        assert all(s[3] is None for s in shapes[:3]) and shapes[3][2] == []
        assert shapes[3][3] == ["completion_tokens", "prompt_tokens", "total_tokens"]
    else:
        assert all(s[3] == "absent" for s in shapes[:-1]) and len(shapes) == 4


def test_the_sdk_reads_both_streams_alike(pipeline, single):
    clients = {
        "orchestrator": openai.OpenAI(base_url=f"{pipeline}/v1", api_key="unused", timeout=120),
        TINY: openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=single),
    }
    seen = {}
    for model, client in clients.items():
        content = SENTIMENT if model == "orchestrator" else "hello world"
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert {c.object for c in chunks} == {"chat.completion.chunk"}
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert all(c.usage is None for c in chunks[:-1])
        finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
        seen[model] = (chunks[0].choices[0].delta.role, len(finishes))
    assert seen["orchestrator"] == seen[TINY] == ("assistant", 1)


def test_both_servers_send_the_same_completion_models_and_errors(pipeline, single):
    ours = httpx.post(
        f"{pipeline}/v1/chat/completions",
        json={"model": "orchestrator", "messages": [{"role": "user", "content": SENTIMENT}]},
        timeout=120,
    ).json()
    theirs = single.post(
        "/v1/chat/completions",
        json={"model": TINY, "messages": [{"role": "user", "content": "hello world"}]},
    ).json()
    assert sorted(ours) == sorted([*theirs, "orchestrator"])
    assert sorted(ours["choices"][0]) == sorted(theirs["choices"][0])
    assert ours["choices"][0]["message"].keys() == theirs["choices"][0]["message"].keys()
    assert ours["usage"].keys() == theirs["usage"].keys()

    models = httpx.get(f"{pipeline}/v1/models", timeout=30).json(), single.get("/v1/models").json()
    for listed in models:
        assert listed["object"] == "list"
        assert all({"id", "object", "created", "owned_by"} <= set(m) for m in listed["data"])

    unknown = {"model": "nope", "messages": [{"role": "user", "content": "hello"}]}
    missing = [
        httpx.post(f"{pipeline}/v1/chat/completions", json=unknown, timeout=30),
        single.post("/v1/chat/completions", json=unknown),
    ]
    for response in missing:
        assert response.status_code == 404
        error = response.json()["error"]
        assert sorted(error) == ["code", "message", "param", "type"]
        assert error["code"] == "model_not_found" and error["param"] == "model"


def test_the_wire_module_frames_chunks_as_openai_does():
    completion = Completion("m", include_usage=True)
    first = completion.chunk(Delta(role="assistant", content=""))
    assert first.startswith('data: {"id": "chatcmpl-') and first.endswith("}\n\n")
    assert '"delta": {"role": "assistant", "content": ""}' in first
    assert first.rstrip().endswith('"usage": null}')  # usage: null until the last chunk
    last = completion.usage_chunk(Usage.of(2, 3))
    assert '"choices": []' in last and '"total_tokens": 5' in last
    plain = Completion("m").chunk(Delta(), "stop", orchestrator={"type": "x"})
    assert '"usage"' not in plain and plain.endswith('"orchestrator": {"type": "x"}}\n\n')
    assert sse({"a": 1}) == 'data: {"a": 1}\n\n'
