"""Attacks on ``orchestrator serve`` from HTTP clients and from tools: each must be stopped.

A real server in a subprocess, reached over real HTTP (httpx, raw sockets, the openai SDK), with
a user's card folder holding a tool that returns hostile files (tests/attacks/returned_files.py).
"""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest
from _server_tools import launch_server, png_bytes
from attacks.returned_files import install_card

# Tight body limits, to see them work: 2 s to send a body, 2 bodies at once (1 per address).
CONFIG = """
[budget]
calls = 10

[server]
body_timeout_s = 2
max_concurrent_bodies = 2
"""
KEYS = ("key-of-alice-0123456789", "key-of-bob-0123456789")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("attacked")
    cards = install_card(workdir / "my_cards")
    proc = launch_server(workdir, config=CONFIG, args=["--cards", str(cards)])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A public server with two keys: two clients."""
    proc = launch_server(
        tmp_path_factory.mktemp("keyed"),
        host="0.0.0.0",
        config="[budget]\ncalls = 10\n",
        env={"ORCHESTRATOR_API_KEY": ",".join(KEYS)},
    )
    try:
        yield proc
    finally:
        proc.stop()


def _port(server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def _chat(content: str, model: str = "orchestrator") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def _run(server, content: str, model: str = "hostile-files") -> dict:
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions", json=_chat(content, model), timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()["orchestrator"]


# --- returned files: a hostile tool behind the server ----------------------------------------


def test_deep_nesting_fails_its_run_not_the_server_nor_the_warm_worker(server):
    run = _run(server, "deep-1500")
    assert run["status"] == "failed"
    assert "is nested deeper than 8 levels" in run["message"], run
    again = _run(server, "nested-ok")  # the same worker, its out folder emptied first
    assert again["status"] == "ok" and [f["name"] for f in again["files"]] == ["picture.png"]
    assert httpx.get(f"{server.base_url}/health", timeout=10).json()["status"] == "ok"


def test_control_names_from_a_tool_never_reach_the_runs_folder(server):
    run = _run(server, "control-names")
    assert run["status"] == "failed" and "'.git' starts with a dot" in run["message"], run
    runs = server.workdir / "runs"
    landed = [p for p in (runs / run["run_id"]).rglob("*")]
    assert landed == [], landed
    hidden = {".git", ".ssh", ".orchestrator-serve", "victim"}
    assert not [p for p in runs.rglob("*") if p.name in hidden]


# --- the Host header (DNS rebinding) ---------------------------------------------------------


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example.:8080", "127.0.0.1.nip.io"])
def test_a_host_name_that_is_not_this_server_is_refused(server, host):
    for method, path, body in (
        ("GET", "/v1/models", None),
        ("GET", "/", None),
        ("POST", "/v1/chat/completions", _chat("Is this sentence positive: I love it")),
    ):
        response = httpx.request(
            method, server.base_url + path, json=body, headers={"Host": host}, timeout=30
        )
        assert response.status_code == 421, (method, path, response.text)
        assert response.json()["error"]["code"] == "host_not_allowed"
        assert "allowed_hosts" in response.json()["error"]["message"]


def test_its_own_names_are_accepted(server):
    port = _port(server)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        response = httpx.get(server.base_url + "/v1/models", headers={"Host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)


# --- cross-site browser requests -------------------------------------------------------------


def _uploads(server) -> list[str]:
    folder = server.workdir / "runs" / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},  # another port
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": "http://attacker.example"},  # an older browser: no Sec-Fetch-Site
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_form_and_multipart_posts_are_refused(server, headers):
    before = _uploads(server)
    upload = httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("box.png", png_bytes(), "image/png")},
        data={"purpose": "user_data"},
        headers=headers,
        timeout=30,
    )
    assert upload.status_code == 403, upload.text
    assert upload.json()["error"]["code"] == "cross_site_request"
    assert _uploads(server) == before
    form = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=b"model=orchestrator",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert form.status_code == 403, form.text


def test_the_servers_own_page_may_post(server):
    origin = server.base_url
    upload = httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("box.png", png_bytes(), "image/png")},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        timeout=30,
    )
    assert upload.status_code == 200, upload.text


# --- request bodies: size, time, number - before any route or key ------------------------------


def _slow_body(server, source: str = "127.0.0.1", path: str = "/v1/chat/completions"):
    """A connection that declares a 100 kB body and sends 10 bytes of it."""
    sock = socket.create_connection(
        ("127.0.0.1", _port(server)), timeout=15, source_address=(source, 0)
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{_port(server)}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"model": ')
    return sock


def _status(sock: socket.socket) -> tuple[int | None, float]:
    """The status the server answers on ``sock`` (None: none within the timeout), and when."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    finally:
        sock.close()
    line = data.split(b"\r\n", 1)[0].split()
    return (int(line[1]) if len(line) > 1 else None), time.monotonic()


def _from(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def test_slow_bodies_time_out_and_few_are_read_at_once(server):
    started = time.monotonic()
    slow = _slow_body(server)  # holds the one place 127.0.0.1 gets
    time.sleep(0.3)
    bad_model = _chat("hi", model="no-such-model")
    with _from("127.0.0.1") as same, _from("127.0.0.2") as other:
        queued = same.post(f"{server.base_url}/v1/chat/completions", json=bad_model)
        waited = time.monotonic() - started
        assert queued.status_code == 503, queued.text  # no place came free within 1 s
        assert queued.json()["error"]["code"] == "server_busy"
        assert queued.headers["retry-after"] == "2"
        # Another address still gets the second place: its request reaches the route (a 404).
        elsewhere = other.post(f"{server.base_url}/v1/chat/completions", json=bad_model)
        assert elsewhere.status_code == 404, elsewhere.text
    status, ended = _status(slow)
    assert status == 408, status
    assert 1.0 < waited < 2.5 and 1.8 < ended - started < 5.0, (waited, ended - started)
    # With the place free again, the same address is served.
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=bad_model, timeout=30)
    assert response.status_code == 404


def test_bodies_for_any_route_are_bounded(server):
    started = time.monotonic()
    status, ended = _status(_slow_body(server, path="/no/such/route"))
    assert status == 408 and ended - started < 5.0
    sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=15)
    head = f"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {10**9}\r\n\r\n"
    sock.sendall(head.encode() + b"x" * 100)
    status, _ = _status(sock)
    assert status == 413  # refused on what it declares, before reading it


def test_a_keyed_server_reads_no_body_without_the_key(keyed):
    for path in ("/", "/health", "/web/app.js", "/v1/files"):
        response = httpx.post(keyed.base_url + path, content=b"x" * 1000, timeout=30)
        assert response.status_code == 401, (path, response.text)
    sock = _slow_body(keyed, path="/")
    status, _ = _status(sock)
    assert status == 401  # answered at once, before a byte of the body was waited for
    assert httpx.get(keyed.base_url + "/", timeout=30).status_code == 200  # the page asks


# --- each client's files are its own ---------------------------------------------------------


def _sdk(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, timeout=120)


def _faces(client: openai.OpenAI, file_id: str):
    return client.chat.completions.create(
        model="orchestrator",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "How many faces are in this photo?"},
                    {"type": "file", "file": {"file_id": file_id}},
                ],
            }
        ],
    )


def test_a_client_cannot_list_read_use_or_delete_anothers_files(server):
    alice, bob = _sdk(server, "alice-token"), _sdk(server, "bob-token")
    mine = alice.files.create(file=("box.png", png_bytes()), purpose="user_data")
    assert mine.id in [f.id for f in alice.files.list()]
    assert mine.id not in [f.id for f in bob.files.list()]
    for peek in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError, match="no uploaded file"):
            peek(mine.id)
    with pytest.raises(openai.NotFoundError, match="no uploaded file"):
        _faces(bob, mine.id)
    anonymous = httpx.get(f"{server.base_url}/v1/files", timeout=30).json()["data"]
    assert mine.id not in [f["id"] for f in anonymous]

    reply = _faces(alice, mine.id)
    run = reply.model_extra["orchestrator"]
    assert run["status"] == "ok" and run["files"], run
    url = run["files"][0]["url"]
    headers = {"Authorization": "Bearer alice-token"}
    assert httpx.get(url, headers=headers, timeout=30).status_code == 200
    for other in ({"Authorization": "Bearer bob-token"}, {}):
        assert httpx.get(url, headers=other, timeout=30).status_code == 404

    # Bob replays Alice's conversation, her file link included: it is not his file.
    follow_up = bob.chat.completions.create(
        model="orchestrator",
        messages=[
            {"role": "user", "content": "How many faces are in this photo?"},
            {"role": "assistant", "content": reply.choices[0].message.content},
            {"role": "user", "content": "How many faces are in that image?"},
        ],
    )
    taken = follow_up.model_extra["orchestrator"]
    assert taken["status"] in ("rejected", "unservable") and taken["steps"] == [], taken
    assert alice.files.retrieve(mine.id).id == mine.id  # still there, still hers


def test_each_key_of_a_keyed_server_is_its_own_client(keyed):
    alice, bob = _sdk(keyed, KEYS[0]), _sdk(keyed, KEYS[1])
    mine = alice.files.create(file=("box.png", png_bytes()), purpose="user_data")
    assert [f.id for f in alice.files.list()] == [mine.id]
    assert [f.id for f in bob.files.list()] == []
    with pytest.raises(openai.NotFoundError):
        bob.files.content(mine.id)
    with pytest.raises(openai.AuthenticationError):
        _sdk(keyed, "key-of-mallory").files.list()
