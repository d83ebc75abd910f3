"""``orchestrator serve`` run as a real subprocess, used through the real openai SDK and httpx."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import openai
import pytest
from _server_tools import (
    SENTIMENT,
    data_url,
    hang_up_at_first_step,
    launch_server,
    png_bytes,
    sse_payloads,
)
from _server_tools import start_module_server as _start

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("server"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", timeout=120)


def _post(server, body, **kwargs):
    return httpx.post(f"{server.base_url}/v1/chat/completions", timeout=120, **kwargs, json=body)


def _user(content):
    return {"model": "orchestrator", "messages": [{"role": "user", "content": content}]}


# --- the protocol, through the openai SDK ----------------------------------------------------


def test_models_lists_the_pipeline_and_the_available_cards(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "orchestrator"
    assert "vader-sentiment" in ids and "whisper-tiny-en" in ids
    assert "sd-turbo" not in ids  # its weights are not here: not offered
    assert client.models.retrieve("vader-sentiment").model_extra["task"] == "text-classification"


def test_chat_completion_through_the_openai_sdk(client):
    reply = client.chat.completions.create(
        model="orchestrator", messages=[{"role": "user", "content": SENTIMENT}]
    )
    assert reply.choices[0].message.content == "Sentiment of 'I love this sunny day': positive."
    assert reply.choices[0].finish_reason == "stop"
    run = reply.model_extra["orchestrator"]
    assert run["status"] == "ok"
    assert [s["card"] for s in run["steps"]] == ["vader-sentiment"]
    assert run["plan"]["subtasks"][0]["task"] == "text-classification"
    assert Decimal(run["spent"]["usd"]) > 0
    assert run["budget_left"]["calls"] == 9  # the server's default budget: 10 calls


def test_streamed_chat_carries_progress_events_the_sdk_ignores(client):
    stream = client.chat.completions.create(
        model="orchestrator",
        messages=[{"role": "user", "content": SENTIMENT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, events, usage = "", [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if (chunk.model_extra or {}).get("orchestrator"):
            events.append(chunk.model_extra["orchestrator"])
        usage = chunk.usage or usage
    assert text == "Sentiment of 'I love this sunny day': positive."
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run" and kinds[-1] == "result"
    for kind in ("plan", "select", "step_started", "step_finished", "budget", "answer"):
        assert kind in kinds, kinds
    assert kinds.index("plan") < kinds.index("step_started") < kinds.index("step_finished")
    finished = events[kinds.index("step_finished")]
    assert finished["card"] == "vader-sentiment" and finished["status"] == "ok"
    assert Decimal(finished["usd"]) > 0 and finished["seconds"] >= 0
    assert finished["outputs"]["label"] == "positive"
    budget = events[kinds.index("budget")]
    assert budget["limits"]["calls"] == 10 and budget["left"]["calls"] == 9
    assert {e.get("run_id") for e in events if "run_id" in e} == {events[0]["run_id"]}
    assert usage is not None and usage.total_tokens == 0


def test_stream_ends_with_done(server):
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        json={**_user(SENTIMENT), "stream": True},
        timeout=120,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(response.iter_lines())
    assert payloads[-1] == "[DONE]"
    assert all(p["object"] == "chat.completion.chunk" for p in payloads[:-1])
    assert all(len(p["choices"]) == 1 for p in payloads[:-1])  # what naive clients index


# --- bad requests: 4xx with an OpenAI-shaped error ---------------------------------------------

_TEXT = {"role": "user", "content": "hello"}
BAD_REQUESTS = [
    ("malformed JSON", b'{"model": "orchestrator", "messages": [', 400, "not valid JSON"),
    ("not an object", [1, 2], 400, "must be a JSON object"),
    ("missing messages", {"model": "orchestrator"}, 400, "messages: Field required"),
    ("empty messages", {"model": "orchestrator", "messages": []}, 400, "messages"),
    (
        "wrong role",
        {"model": "orchestrator", "messages": [{"role": "robot", "content": "x"}]},
        400,
        "messages.0.role",
    ),
    (
        "no user message",
        {"model": "orchestrator", "messages": [{"role": "system", "content": "x"}]},
        400,
        "user message",
    ),
    ("empty text", _user("   "), 400, "say what you want done"),
    ("unknown model", {"model": "gpt-9", "messages": [_TEXT]}, 404, "does not exist"),
    ("unavailable card", {"model": "sd-turbo", "messages": [_TEXT]}, 400, "cannot run here"),
    ("unknown field", {**_user("hi"), "frobnicate": 1}, 400, "frobnicate"),
    ("bad budget", {**_user("hi"), "budget": {"usd": "lots"}}, 400, "budget.usd"),
    ("negative budget", {**_user("hi"), "budget": {"calls": -1}}, 400, "budget.calls"),
    (
        "budget above the server's",
        {**_user("hi"), "budget": {"calls": 20}},
        400,
        "above this server's limit",
    ),
    ("two choices", {**_user("hi"), "n": 2}, 400, "n:"),
    ("unknown part type", _user([{"type": "video", "video": {}}]), 400, "'video'"),
    (
        "remote image URL",
        _user(
            [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "https://x.org/a.png"}},
            ]
        ),
        400,
        "does not fetch URLs",
    ),
    (
        "not base64",
        _user(
            [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}},
            ]
        ),
        400,
        "not valid base64",
    ),
    (
        "not an accepted file type",
        _user(
            [
                {"type": "text", "text": "what is it"},
                {
                    "type": "file",
                    "file": {
                        "file_data": data_url(b"%PDF-1.4 hello", "application/pdf"),
                        "filename": "a.pdf",
                    },
                },
            ]
        ),
        415,
        "not a file type this server accepts",
    ),
    (
        "unknown file id",
        _user(
            [
                {"type": "text", "text": "what is it"},
                {"type": "file", "file": {"file_id": "file-" + "0" * 24}},
            ]
        ),
        404,
        "no uploaded file",
    ),
    (
        "oversize file",
        _user(
            [
                {"type": "text", "text": "what is it"},
                {
                    "type": "image_url",
                    "image_url": {"url": data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000)},
                },
            ]
        ),
        413,
        "limit is 0.2 MB",
    ),
    ("oversize body", _user("x" * 1_500_000), 413, "larger than this server's limit"),
]


@pytest.mark.parametrize(
    ("body", "status", "says"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_4xx_with_a_json_error(server, body, status, says):
    if isinstance(body, bytes):
        response = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=60,
        )
    else:
        response = _post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says in error["message"], error
    assert "Traceback" not in response.text


def test_the_openai_sdk_raises_its_own_errors(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=[_TEXT])
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(
            model="orchestrator", messages=[{"role": "x", "content": "y"}]
        )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/abc/../../etc/passwd",
        "/v1/files/..%2f..%2fetc/passwd.png",
        "/v1/files/uploads/anything.png",
        "/v1/files/0123456789ab/nothing.wav",
        "/v1/nothing",
    ],
)
def test_unknown_paths_and_files_are_json_404s(server, path):
    response = httpx.get(server.base_url + path, timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


# --- files in and out -----------------------------------------------------------------------


def test_upload_then_attach_then_fetch_the_produced_image(server, client):
    uploaded = client.files.create(file=("box.png", png_bytes()), purpose="user_data")
    assert uploaded.id.startswith("file-") and uploaded.filename == "box.png"
    reply = client.chat.completions.create(
        model="orchestrator",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "How many faces are in this photo?"},
                    {"type": "file", "file": {"file_id": uploaded.id}},
                ],
            }
        ],
    )
    run = reply.model_extra["orchestrator"]
    assert run["status"] == "ok" and run["steps"][0]["card"] == "haar-faces"
    (made,) = run["files"]
    assert made["type"] == "image" and made["url"] in reply.choices[0].message.content
    # The file is this client's: fetched with the same bearer token the SDK sent.
    image = httpx.get(made["url"], headers={"Authorization": "Bearer unused"}, timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_uploads_are_listed_described_read_and_deleted_with_the_sdk(server, client):
    data = png_bytes()
    uploaded = client.files.create(file=("scan.png", data), purpose="user_data")
    info = client.files.retrieve(uploaded.id)
    assert info.id == uploaded.id and info.filename == "scan.png" and info.bytes == len(data)
    assert client.files.content(uploaded.id).read() == data
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError, match="no uploaded file with id"):
        client.files.retrieve(uploaded.id)
    assert uploaded.id not in [f.id for f in client.files.list()]


def test_inline_image_data_url_is_accepted(server):
    body = _user(
        [
            {"type": "text", "text": "How many faces are in this photo?"},
            {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
        ]
    )
    response = _post(server, body)
    assert response.status_code == 200, response.text
    run = response.json()["orchestrator"]
    assert run["status"] == "ok" and run["steps"][0]["card"] == "haar-faces"


def test_upload_of_a_wrong_type_is_refused(server):
    response = httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("report.pdf", b"%PDF-1.4 some text", "application/pdf")},
        timeout=30,
    )
    assert response.status_code == 415
    assert "PNG, JPEG" in response.json()["error"]["message"]
    missing = httpx.post(f"{server.base_url}/v1/files", timeout=30)
    assert missing.status_code == 400 and "file" in missing.json()["error"]["message"]


def test_follow_up_refers_to_the_audio_made_before(client):
    messages = [{"role": "user", "content": "Read this aloud: 'the weather is lovely today'"}]
    spoken = client.chat.completions.create(model="orchestrator", messages=messages)
    content = spoken.choices[0].message.content
    assert spoken.model_extra["orchestrator"]["files"][0]["type"] == "audio"
    assert "/v1/files/" in content
    messages += [
        {"role": "assistant", "content": content},
        {"role": "user", "content": "Transcribe it"},
    ]
    heard = client.chat.completions.create(model="orchestrator", messages=messages)
    run = heard.model_extra["orchestrator"]
    assert [s["card"] for s in run["steps"]] == ["whisper-tiny-en"]
    assert "lovely" in heard.choices[0].message.content.lower()


def test_a_plan_cannot_read_files_outside_the_conversation(server, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes())
    response = _post(server, _user(f"How many faces are in {outside}?"))
    assert response.status_code == 200
    run = response.json()["orchestrator"]
    assert run["status"] == "rejected" and run["steps"] == []
    assert "not a file of this conversation" in response.json()["choices"][0]["message"]["content"]


# --- models, budgets, concurrency -----------------------------------------------------------


def test_model_naming_a_card_runs_that_card_alone(client):
    reply = client.chat.completions.create(
        model="vader-sentiment", messages=[{"role": "user", "content": "What a dreadful day."}]
    )
    run = reply.model_extra["orchestrator"]
    assert run["plan"]["planner"] == "single-card"
    assert [s["card"] for s in run["steps"]] == ["vader-sentiment"]
    assert reply.choices[0].message.content == "Sentiment of 'What a dreadful day.': negative."
    assert reply.model == "vader-sentiment"


def test_budget_field_lowers_the_limits(server):
    response = _post(server, {**_user(SENTIMENT), "budget": {"calls": 1, "usd": "0.01"}})
    run = response.json()["orchestrator"]
    assert run["status"] == "ok"
    assert run["budget_left"]["calls"] == 0
    assert Decimal(run["budget_left"]["usd"]) < Decimal("0.01")
    starved = _post(server, {**_user(SENTIMENT), "budget": {"usd": "0"}}).json()["orchestrator"]
    assert starved["status"] == "budget_exhausted" and starved["spent"]["calls"] == 0


def test_concurrent_streams_each_get_their_own_run(server):
    sentences = [
        f"Is this positive or negative: {t}"
        for t in (
            "I love this sunny day",
            "This is a terrible, awful mess",
            "What a wonderful gift",
            "I hate waiting in the rain",
            "The food was great",
            "That movie was horrible",
        )
    ]
    expected = ["positive", "negative", "positive", "negative", "positive", "negative"]

    def stream(sentence):
        with httpx.stream(
            "POST",
            f"{server.base_url}/v1/chat/completions",
            json={**_user(sentence), "stream": True},
            timeout=120,
        ) as response:
            return sse_payloads(response.iter_lines())

    with ThreadPoolExecutor(len(sentences)) as pool:
        results = list(pool.map(stream, sentences))
    run_ids = set()
    for sentence, label, payloads in zip(sentences, expected, results, strict=True):
        events = [p["orchestrator"] for p in payloads[:-1] if "orchestrator" in p]
        content = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1])
        text = sentence.split(": ", 1)[1]
        assert content == f"Sentiment of '{text}': {label}."
        plan = next(e for e in events if e["type"] == "plan")
        assert plan["plan"]["request"] == sentence
        ids = {e["run_id"] for e in events if "run_id" in e}
        assert len(ids) == 1
        run_ids |= ids
    assert len(run_ids) == len(sentences)
    assert httpx.get(f"{server.base_url}/health", timeout=10).json()["active_runs"] == 0


# --- the web page is served; the API key; a full queue --------------------------------------


def test_page_and_its_assets_are_served(server):
    page = httpx.get(server.base_url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/web/app.js", "/web/style.css"):
        assert httpx.get(server.base_url + asset, timeout=10).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN


def test_non_local_address_without_a_key_refuses_to_start(tmp_path):
    proc = launch_server(tmp_path, host="0.0.0.0", env={"ORCHESTRATOR_API_KEY": ""}, wait=False)
    try:
        assert proc.proc.wait(timeout=60) == 2
    except subprocess.TimeoutExpired:
        proc.stop()
        raise
    assert "refusing to listen on 0.0.0.0 without an API key" in " ".join(proc.log().split())


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    config = "[server]\nmax_concurrent_runs = 1\nmax_queued_runs = 0\n"
    proc = launch_server(
        tmp_path_factory.mktemp("keyed"),
        host="0.0.0.0",
        config=config,
        env={"ORCHESTRATOR_API_KEY": KEY},
    )
    try:
        yield proc
    finally:
        proc.stop()


def test_non_local_server_requires_the_api_key(keyed_server):
    url = f"{keyed_server.base_url}/v1/models"
    missing = httpx.get(url, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    assert httpx.get(keyed_server.base_url + "/", timeout=10).status_code == 200  # the page
    sdk = openai.OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key=KEY, timeout=60)
    assert "orchestrator" in [m.id for m in sdk.models.list()]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed_server.base_url}/v1", api_key="bad").models.list()


def test_full_queue_answers_429(keyed_server):
    body = _user("Read this aloud: 'a long sentence that takes the voice a little while to say'")
    headers = {"Authorization": f"Bearer {KEY}"}
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: _post(keyed_server, body, headers=headers), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    busy = next(r for r in responses if r.status_code == 429).json()["error"]
    assert busy["code"] == "server_busy" and busy["type"] == "rate_limit_error"
    assert (
        json.loads(next(r for r in responses if r.status_code == 200).text)["orchestrator"][
            "status"
        ]
        == "ok"
    )


def test_a_client_that_goes_away_cancels_the_run(server, builtin_zoo):
    from orchestrator import Config, Orchestrator

    # A long text: the voice takes a second or more, so the hang-up lands while it speaks.
    words = " ".join(["hello there my friend, it is good to see you again after so long"] * 6)
    body = {**_user(f"Read '{words}' aloud, then transcribe the audio"), "stream": True}
    run_id = hang_up_at_first_step(server.base_url, body, 120)  # while the first of two runs
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.base_url}/health", timeout=10).json()["active_runs"]:
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.1)
    config = Config(runs_dir=server.workdir / "runs")
    with Orchestrator(config, zoo=builtin_zoo) as store:
        stored = store.show(run_id)
    assert stored.status == "unfinished"  # stopped before its second step; resumable
    assert stored.steps[1].status == "waiting" and stored.steps[1].attempts == []


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_which_addresses_count_as_local(host, local):
    from orchestrator.server import is_loopback

    assert is_loopback(host) is local


def test_a_body_that_is_not_a_json_object_says_so(server):
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=b"{bad",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert response.status_code == 400
    assert "must be a JSON object" in response.json()["error"]["message"]
