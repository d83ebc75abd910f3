"""The web chat page of ``orchestrator serve``, used in a real headless Chromium (Playwright).

Debian's ``chromium`` package is driven through its executable path (no downloaded browser).
Screenshots go to ``$ORCHESTRATOR_TEST_ARTIFACTS`` (default: ``test-artifacts/`` in the repo).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _server_tools import SENTIMENT, png_bytes
from _server_tools import start_module_server as _start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("ORCHESTRATOR_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
TIMEOUT_MS = 90_000

# Records every status a step row shows, in order, even when two arrive in one stream read.
WATCH_STATUSES = """
window.__statuses = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.classList && r.target.classList.contains("status")) {
      for (const n of r.addedNodes) window.__statuses.push(n.textContent);
    }
  }
}).observe(document.getElementById("conversation"), {childList: true, subtree: true});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("web-server"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    """One page for the module: the tests are turns of one conversation, in order."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base_url + "/")
    page.wait_for_selector("#model option[value='vader-sentiment']", state="attached")
    page.evaluate(WATCH_STATUSES)
    yield page
    assert errors == [], errors
    page.close()


def _ask(page, text: str, turn: int) -> object:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = page.locator(".turn").nth(turn - 1).locator(".answer")
    answer.filter(has_text=".").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT_MS)
    return page.locator(".turn").nth(turn - 1)


def test_request_shows_plan_models_progress_and_answer(page):
    turn = _ask(page, SENTIMENT, 1)
    assert turn.locator(".user").inner_text() == SENTIMENT
    assert "text-classification" in turn.locator(".plan li").first.inner_text()
    row = turn.locator("tr[data-step='s1']")
    assert row.locator(".model").inner_text() == "vader-sentiment"
    assert row.locator(".status").inner_text() == "ok"
    assert float(row.locator("td.num").first.inner_text()) >= 0
    assert row.locator("td.num").nth(1).inner_text().startswith("$")
    assert turn.locator(".answer").inner_text() == "Sentiment of 'I love this sunny day': positive."
    statuses = page.evaluate("window.__statuses")
    assert statuses[:3] == ["waiting", "running", "ok"], statuses  # shown live, step by step
    assert page.locator("#spent").inner_text() != "$0"
    assert page.locator("#left").inner_text() == "9 calls"  # the server's budget: 10 calls
    assert "budget left 9 calls" in turn.locator(".cost").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat-sentiment.png"), full_page=True)


def test_produced_audio_can_be_played(page):
    turn = _ask(page, "Read this aloud: 'good morning to you'", 2)
    assert turn.locator("tr[data-step='s1'] .model").inner_text() == "piper-joe-en"
    audio = turn.locator(".media audio")
    audio.wait_for(timeout=TIMEOUT_MS)
    duration = audio.evaluate(
        """a => new Promise((ok, fail) => {
            if (a.readyState >= 1) return ok(a.duration);
            a.addEventListener("loadedmetadata", () => ok(a.duration));
            a.addEventListener("error", () => fail(new Error("audio did not load")));
        })"""
    )
    assert 0.3 < duration < 10


def test_attached_image_is_used_and_the_produced_image_shown(page, tmp_path):
    photo = tmp_path / "box.png"
    photo.write_bytes(png_bytes())
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('attached').textContent === 'box.png'")
    turn = _ask(page, "How many faces are in this photo?", 3)
    assert "attached: box.png" in turn.locator(".user").inner_text()
    assert turn.locator("tr[data-step='s1'] .model").inner_text() == "haar-faces"
    image = turn.locator(".media img")
    image.wait_for(timeout=TIMEOUT_MS)
    width = image.evaluate(
        "img => img.complete ? img.naturalWidth : new Promise(ok => img.onload = () => "
        "ok(img.naturalWidth))"
    )
    assert width == 96
    page.set_viewport_size({"width": 1100, "height": 1250})
    image.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "web-chat.png"))


def test_a_bad_request_shows_the_servers_message(page):
    page.click("#settings summary")
    page.fill("#budget-calls", "50")
    page.fill("#prompt", SENTIMENT)
    page.press("#prompt", "Enter")
    error = page.locator("#error")
    error.wait_for(timeout=TIMEOUT_MS)
    assert "above this server's limit" in error.inner_text()
    assert page.input_value("#prompt") == SENTIMENT  # kept, to fix and send again
    assert page.locator(".turn").count() == 3
    page.fill("#budget-calls", "")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    proc = _start(tmp_path_factory.mktemp("web-keyed"), env={"ORCHESTRATOR_API_KEY": "page-key"})
    try:
        yield proc
    finally:
        proc.stop()


def test_page_asks_for_the_key_and_then_works(browser, keyed_server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        page.goto(keyed_server.base_url + "/")
        error = page.locator("#error")
        error.wait_for(timeout=TIMEOUT_MS)
        assert "API key" in error.inner_text()
        page.click("#settings summary")
        page.fill("#api-key", "page-key")
        page.press("#api-key", "Tab")  # "change": the key is stored and the models reload
        page.wait_for_selector("#model option[value='piper-joe-en']", state="attached")
        assert not error.is_visible()
        turn = _ask(page, "Read this aloud: 'keys keep strangers out'", 1)
        assert turn.locator("tr[data-step='s1'] .status").inner_text() == "ok"
        audio = turn.locator(".media audio")
        audio.wait_for(timeout=TIMEOUT_MS)
        assert audio.get_attribute("src").startswith("blob:")  # fetched with the key
        # The key lives in this tab's sessionStorage: kept on reload, gone in another tab.
        stored = page.evaluate(
            "[sessionStorage.getItem('orchestrator-api-key'),"
            " localStorage.getItem('orchestrator-api-key')]"
        )
        assert stored == ["page-key", None]
        page.reload()
        assert page.input_value("#api-key") == "page-key"
        other = context.new_page()
        other.goto(keyed_server.base_url + "/")
        assert other.input_value("#api-key") == ""
        other.locator("#error").wait_for(timeout=TIMEOUT_MS)
        assert "API key" in other.locator("#error").inner_text()
    finally:
        context.close()


# --- other sites: a cross-site upload and a page reached by a rebound name get nothing ---------

ATTACKER_PAGE = """<!doctype html><html><body><script>
async function attack(target) {
  const form = new FormData();
  const bytes = Uint8Array.from(atob(PNG_BASE64), (c) => c.charCodeAt(0));
  form.append("file", new Blob([bytes], { type: "image/png" }), "stolen.png");
  form.append("purpose", "user_data");
  // A "simple" request: the browser sends it without asking the server first (no preflight).
  await fetch(target + "/v1/files", { method: "POST", mode: "no-cors", body: form });
  return "sent";
}
</script></body></html>"""


@pytest.fixture
def attacker_site(server):
    """Another site on this machine (http://localhost:PORT, where the server is 127.0.0.1)."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    html = ATTACKER_PAGE.replace("PNG_BASE64", repr(base64.b64encode(png_bytes()).decode()))

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever)
    thread.start()
    try:
        yield f"http://localhost:{site.server_address[1]}/"
    finally:
        site.shutdown()
        thread.join()
        site.server_close()


def test_a_page_of_another_site_cannot_upload(browser, server, attacker_site):
    uploads = server.workdir / "runs" / "uploads"
    before = sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []
    page = browser.new_page()
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/v1/files" in r.url else None)
    try:
        page.goto(attacker_site)
        assert page.evaluate(f"attack({server.base_url!r})") == "sent"
        page.wait_for_timeout(300)
    finally:
        page.close()
    assert answers == [403]  # the browser sent it; the server refused it
    after = sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []
    assert after == before


def test_a_page_reached_by_a_rebound_name_gets_nothing(browser, server):
    """DNS rebinding: the browser resolves an attacker's name to this machine."""
    port = server.base_url.rsplit(":", 1)[1]
    rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1"
    rebound = browser.browser_type.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
    try:
        page = rebound.new_page()
        answer = page.goto(f"http://rebind.test:{port}/")
        assert answer is not None and answer.status == 421
        status = page.evaluate("fetch('/v1/models').then((r) => r.status)")
        assert status == 421
    finally:
        rebound.close()
