"""``orchestrator serve`` (a real subprocess, real HTTP): text uploads, upload ids named in a
message's text, refusals answered before any stream opens, and runs cancelled from asyncio when
the client goes away.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from _chat_tools import write_slow_cards
from _server_tools import MODULE_CONFIG, data_url, hang_up_at_first_step, png_bytes
from _server_tools import start_module_server as _start

REVIEW = "This product is wonderful, I love it. It works perfectly and I am very happy."
SLOW_REQUEST = 'Summarize "the quick brown fox jumps over the lazy dog" then read the summary aloud'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("requests-server")
    cards = write_slow_cards(folder / "cards", sleep=2.0)  # a summariser that takes 2 s
    config = f'card_dirs = ["{cards}"]\n' + MODULE_CONFIG
    proc = _start(folder, config=config)
    try:
        yield proc
    finally:
        proc.stop()


def _chat(server, content, **extra):
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)


def _upload(server, name, data, mime="text/plain"):
    return httpx.post(f"{server.base_url}/v1/files", files={"file": (name, data, mime)}, timeout=30)


# --- text files ---------------------------------------------------------------------------------


def test_an_uploaded_text_file_is_read_by_a_real_run(server):
    uploaded = _upload(server, "review.txt", REVIEW.encode())
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["filename"] == "review.txt"
    file_id = uploaded.json()["id"]
    reply = _chat(
        server,
        [
            {"type": "text", "text": "Is this text positive or negative?"},
            {"type": "file", "file": {"file_id": file_id}},
        ],
    )
    assert reply.status_code == 200, reply.text
    run = reply.json()["orchestrator"]
    assert run["status"] == "ok", run["message"]
    assert [s["card"] for s in run["steps"]] == ["vader-sentiment"]
    assert reply.json()["choices"][0]["message"]["content"] == "Sentiment of review.txt: positive."


def test_an_inline_markdown_file_is_read_too(server):
    note = "Guten Morgen, wie geht es dir heute? Ich hoffe, es geht dir gut."
    reply = _chat(
        server,
        [
            {"type": "text", "text": "Which language is this text in?"},
            {
                "type": "file",
                "file": {"file_data": data_url(note.encode(), "text/markdown"), "filename": "g.md"},
            },
        ],
    )
    assert reply.status_code == 200, reply.text
    run = reply.json()["orchestrator"]
    assert run["status"] == "ok", run["message"]
    assert reply.json()["choices"][0]["message"]["content"] == "Language of g.md: German."


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("notes.txt", bytes(range(256)) * 4, "not UTF-8 text"),
        ("notes.txt", b"abc\x00\x01\x02\x03def" * 20, "binary data"),
        ("notes.md", png_bytes(), "its content is a PNG image file; rename it to .png"),
    ],
    ids=["not-utf8", "control-bytes", "a-png"],
)
def test_a_binary_file_named_as_text_is_refused_415(server, name, data, says):
    response = _upload(server, name, data)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert f"'{name}'" in error["message"] and says in error["message"], error
    assert error["code"] == "unsupported_file_type"


# --- upload ids named in the text -----------------------------------------------------------------


def test_a_file_id_named_in_the_text_is_the_uploaded_file(server):
    file_id = _upload(server, "review.txt", REVIEW.encode()).json()["id"]
    reply = _chat(server, f"Is the sentiment of {file_id} positive or negative?")
    assert reply.status_code == 200, reply.text
    run = reply.json()["orchestrator"]
    assert run["status"] == "ok", run["message"]
    assert [s["card"] for s in run["steps"]] == ["vader-sentiment"]
    assert reply.json()["choices"][0]["message"]["content"] == "Sentiment of review.txt: positive."


@pytest.mark.parametrize("file_id", ["file-abc123", "file-" + "0123456789abcdef01234567"])
def test_an_unknown_file_id_in_the_text_is_a_404_before_the_stream(server, file_id):
    body = {
        "model": "orchestrator",
        "messages": [{"role": "user", "content": f"summarise {file_id}"}],
        "stream": True,
    }
    with httpx.stream(
        "POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        error = json.loads(response.read())["error"]
    assert file_id in error["message"]
    assert "POST /v1/files" in error["message"] and '"file_id"' in error["message"]
    assert error["param"] == "messages.0.content" and error["code"] == "file_not_found"


# --- refusals come before any stream ------------------------------------------------------------

REFUSED = [
    ("bad JSON", b'{"model": "orchestrator", "messages": [', 400),
    ("unknown model", {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404),
    (
        "unknown file id part",
        {
            "model": "orchestrator",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {"type": "file", "file": {"file_id": "file-" + "1" * 24}},
                    ],
                }
            ],
        },
        404,
    ),
    (
        "binary text file",
        {
            "model": "orchestrator",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "summarise it"},
                        {
                            "type": "file",
                            "file": {"file_data": data_url(bytes(range(256))), "filename": "a.txt"},
                        },
                    ],
                }
            ],
        },
        415,
    ),
    (
        "oversize file",
        {
            "model": "orchestrator",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {
                            "type": "image_url",
                            "image_url": {"url": data_url(b"\x89PNG" + b"0" * 300_000)},
                        },
                    ],
                }
            ],
        },
        413,
    ),
    (
        "over the budget limits",
        {
            "model": "orchestrator",
            "messages": [{"role": "user", "content": "hi"}],
            "budget": {"calls": 1000},
        },
        400,
    ),
    (
        "empty request",
        {"model": "orchestrator", "messages": [{"role": "user", "content": " "}]},
        400,
    ),
]


@pytest.mark.parametrize(("body", "status"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_streamed_requests_get_a_json_4xx_not_a_stream(server, body, status):
    if isinstance(body, bytes):
        content = body
    else:
        content = json.dumps({**body, "stream": True}).encode()
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=60,
    ) as response:
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        raw = response.read()
    assert not raw.startswith(b"data:")
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


# --- cancellation from asyncio --------------------------------------------------------------------


def _idle(server, seconds: float) -> float:
    started = time.monotonic()
    while httpx.get(f"{server.base_url}/health", timeout=10).json()["active_runs"]:
        assert time.monotonic() - started < seconds, "the run did not stop"
        time.sleep(0.05)
    return time.monotonic() - started


def _stored(server, run_id):
    from orchestrator import Config, Orchestrator

    config = Config(runs_dir=server.workdir / "runs", card_dirs=[server.workdir / "cards"])
    with Orchestrator(config) as store:
        return store.show(run_id)


def test_a_client_that_hangs_up_cancels_the_run_and_its_worker_stops(server):
    body = {
        "model": "orchestrator",
        "messages": [{"role": "user", "content": SLOW_REQUEST}],
        "stream": True,
    }
    run_id = hang_up_at_first_step(server.base_url, body, 60)  # while the slow first step runs
    # A run counts as active until its task has ended, and the task ends only once the run's
    # thread has returned: the worker stopped, after the step in flight (2 s), not the voice.
    waited = _idle(server, 15)
    assert waited < 5
    time.sleep(1.5)  # had the run gone on, the voice would write its audio meanwhile
    run_dir = Path(server.workdir) / "runs" / run_id
    assert list(run_dir.rglob("*.wav")) == []
    stored = _stored(server, run_id)
    assert stored.status == "unfinished"  # stored as stopped, not ok; resumable
    s1, s2 = stored.steps
    assert s1.card == "slow-summary" and s1.status == "done"
    assert s2.status == "waiting" and s2.attempts == []
