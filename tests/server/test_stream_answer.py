"""A chat answer from the real SmolLM2 card, streamed token by token by ``orchestrator serve``:
content deltas over the OpenAI-compatible endpoint (real server subprocess, real openai SDK),
and the web page showing the answer as it is written (real headless Chromium).
"""

from __future__ import annotations

import itertools

import openai
import pytest
from _server_tools import start_module_server as _start

from tests.server.test_web_page import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

POEM = "Write a short poem about the sea"

# Every text the answer box shows, in order, as the page changes it.
WATCH_ANSWER = """
window.__answers = [];
new MutationObserver(() => {
  const boxes = document.querySelectorAll(".turn .answer");
  const box = boxes[boxes.length - 1];
  if (box && box.textContent !== window.__answers[window.__answers.length - 1]) {
    window.__answers.push(box.textContent);
  }
}).observe(document.getElementById("conversation"),
           {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("stream-server"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
@pytest.mark.models
def test_a_chat_answer_streams_as_content_deltas(server):
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", timeout=300)
    stream = client.chat.completions.create(
        model="orchestrator", messages=[{"role": "user", "content": POEM}], stream=True
    )
    deltas, events, order = [], [], []
    for chunk in stream:
        content = chunk.choices[0].delta.content if chunk.choices else None
        event = (chunk.model_extra or {}).get("orchestrator")
        if content:
            deltas.append(content)
            order.append("content")
        if event:
            events.append(event)
            order.append(event["type"])
    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) > 5 and {e["card"] for e in tokens} == {"smollm2-135m-chat"}
    streamed = "".join(e["text"] for e in tokens)
    # one content delta per token, each sent before the step finished, then the answer's rest
    assert deltas[: len(tokens)] == [e["text"] for e in tokens]
    assert order[: order.index("step_finished")].count("content") >= len(tokens)
    content = "".join(deltas)
    assert content.startswith(streamed) and streamed.strip()
    assert "weak model" in content[len(streamed) :]  # the answer's caveat, sent once at the end
    assert content.count(streamed) == 1
    assert events[-1]["type"] == "result" and events[-1]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.models
def test_the_page_shows_the_answer_as_it_is_written(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.base_url + "/")
            page.wait_for_selector("#model option[value='vader-sentiment']", state="attached")
            page.evaluate(WATCH_ANSWER)
            page.fill("#prompt", POEM)
            page.press("#prompt", "Enter")
            page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT_MS * 3)
            page.locator(".turn .answer").filter(has_text="weak model").wait_for(timeout=TIMEOUT_MS)
            shown = page.evaluate("window.__answers")
        finally:
            browser.close()
    assert errors == [], errors
    growing = [text for text in shown if text and text != shown[-1]]
    assert len(growing) > 3, shown  # the answer grew piece by piece before it was whole
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(growing))
    assert len(growing[0]) < len(growing[-1]) and "weak model" in shown[-1]
