"""The web page's stop and new-chat buttons and its text attachments, in a real headless Chromium.

The server runs a slow summariser (2 s a call) besides the built-in cards, so the stop button
lands while a step runs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from _chat_tools import write_slow_cards
from _server_tools import MODULE_CONFIG, SENTIMENT
from _server_tools import start_module_server as _start
from test_web_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

RUN_ID = re.compile(r"^[0-9a-f]{12}$")
SLOW_REQUEST = 'Summarize "the quick brown fox jumps over the lazy dog" then read the summary aloud'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-controls")
    cards = write_slow_cards(folder / "cards", sleep=2.0)
    proc = _start(folder, config=f'card_dirs = ["{cards}"]\n' + MODULE_CONFIG)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.base_url + "/")
        page.wait_for_selector("#model option[value='slow-summary']", state="attached")
        yield page
        assert errors == [], errors
        browser.close()


def _active_runs(server) -> int:
    return httpx.get(f"{server.base_url}/health", timeout=10).json()["active_runs"]


def _stored(server, run_id):
    from orchestrator import Config, Orchestrator

    config = Config(runs_dir=server.workdir / "runs", card_dirs=[server.workdir / "cards"])
    with Orchestrator(config) as store:
        return store.show(run_id)


def _send(page, text):
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def test_stop_cancels_the_running_request(page, server):
    assert page.locator("#stop").is_hidden()
    _send(page, SLOW_REQUEST)
    turn = page.locator(".turn").first
    turn.locator("tr[data-step='s1'] .status", has_text="running").wait_for(timeout=TIMEOUT_MS)
    assert _active_runs(server) == 1
    page.click("#stop")
    turn.locator(".state", has_text="stopped").wait_for(timeout=10_000)
    assert turn.locator("tr[data-step='s1'] .status").inner_text() == "stopped"
    assert turn.locator("tr[data-step='s2'] .status").inner_text() == "stopped"
    assert turn.locator(".answer").inner_text() == ""
    page.wait_for_selector("#send:not([disabled])", timeout=10_000)
    assert page.locator("#stop").is_hidden()
    started = time.monotonic()
    while _active_runs(server):  # the run's task ends once its worker thread has returned
        assert time.monotonic() - started < 10, "the run did not stop"
        time.sleep(0.05)
    # The module's first run: the one run folder (named by its 12-hex-digit id).
    [run_dir] = [p for p in (Path(server.workdir) / "runs").iterdir() if RUN_ID.match(p.name)]
    stored = _stored(server, run_dir.name)
    assert stored.status == "unfinished"  # not ok: stopped before its second step, resumable
    assert [s.status for s in stored.steps] == ["done", "waiting"]
    assert list(run_dir.rglob("*.wav")) == []  # the voice never ran
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat-stopped.png"), full_page=True)


def test_new_chat_forgets_the_conversation_and_the_attached_file(page, tmp_path):
    sent: list[dict] = []
    page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data)) if r.url.endswith("/v1/chat/completions") else None
        ),
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("This product is wonderful, I love it.")
    page.set_input_files("#file", str(notes))
    page.locator("#attached", has_text="notes.txt").wait_for(timeout=TIMEOUT_MS)
    page.click("#new-chat")
    assert page.locator(".turn").count() == 0
    assert page.locator("#attached").inner_text() == ""
    _send(page, SENTIMENT)
    answer = page.locator(".turn").first.locator(".answer")
    answer.filter(has_text="positive").wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".turn").count() == 1
    [body] = sent
    assert body["messages"] == [{"role": "user", "content": SENTIMENT}]  # nothing earlier


def test_an_attached_text_file_is_read_by_the_run(page, tmp_path):
    page.click("#new-chat")
    notes = tmp_path / "review.txt"
    notes.write_text("This product is wonderful, I love it. It works perfectly.")
    page.set_input_files("#file", str(notes))
    page.locator("#attached", has_text="review.txt").wait_for(timeout=TIMEOUT_MS)
    _send(page, "Is this text positive or negative?")
    turn = page.locator(".turn").first
    turn.locator(".answer", has_text="positive").wait_for(timeout=TIMEOUT_MS)
    assert turn.locator(".answer").inner_text() == "Sentiment of review.txt: positive."
    assert turn.locator(".user .files").inner_text() == "attached: review.txt"
