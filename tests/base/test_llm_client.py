"""The one LLM client (orchestrator.llm): its retry policy, its deadline, its error mapping.

No mocks: every test talks HTTP to a real server on 127.0.0.1 started here
(:class:`ScriptedEndpoint`, a ``http.server`` speaking OpenAI's chat-completions format), which
answers from a script (429 with Retry-After, 5xx, 400, a slow answer) and records when each
request came. The last tests run each of the four callers (chat backend, LLM planner, LLM
router, LLM scorer) against a 429 to show they all go through the same policy.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.budget import Budget, Ledger
from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, load_tool
from orchestrator.errors import CallTimedOut, ChatEndpointError
from orchestrator.llm import LlmClient, is_retryable, retry_after_s
from orchestrator.metered_llm import metered
from orchestrator.planning import Example, ToolSet, ToolSpec
from orchestrator.planning.llm import LlmPlanner
from orchestrator.routing.llm import LLMPolicy
from orchestrator.routing.policy import Option, StepView
from orchestrator.selection.llm_scorer import LLMScorer


@dataclass
class Answer:
    """One scripted answer: an HTTP status with headers, or a reply text after ``delay_s``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = "ok"
    delay_s: float = 0.0


class ScriptedEndpoint:
    """A real HTTP server answering chat completions from a script, then ``Answer()`` forever."""

    def __init__(self, script: list[Answer], default: Answer | None = None) -> None:
        self.script = list(script)
        self.default = default or Answer()
        self.times: list[float] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                endpoint.times.append(time.monotonic())
                length = int(self.headers.get("content-length", 0))
                json.loads(self.rfile.read(length) or b"{}")
                answer = endpoint.script.pop(0) if endpoint.script else endpoint.default
                time.sleep(answer.delay_s)
                if answer.status == 200:
                    body = _completion(answer.text)
                else:
                    error = {"message": f"scripted {answer.status}", "type": "scripted"}
                    body = {"error": error}
                data = json.dumps(body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


@pytest.fixture
def endpoint():
    made: list[ScriptedEndpoint] = []

    def make(*script: Answer, default: Answer | None = None) -> ScriptedEndpoint:
        made.append(ScriptedEndpoint(list(script), default))
        return made[-1]

    yield make
    for server in made:
        server.close()


HI = [{"role": "user", "content": "Hi"}]


def _client(url: str, **options: Any) -> LlmClient:
    return LlmClient(url, "scripted", caller="test", **options)


# -- the retry policy ---------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(endpoint):
    server = endpoint(Answer(429, {"Retry-After": "1.2"}))
    reply = _client(server.url).create(HI, max_tokens=4, timeout_s=10)
    assert reply.choices[0].message.content == "ok"
    assert len(server.times) == 2
    assert 1.1 <= server.gaps()[0] < 3.0  # the default backoff alone would wait 0.5 s


def test_retry_after_ms_wins_over_retry_after(endpoint):
    server = endpoint(Answer(503, {"retry-after-ms": "700", "Retry-After": "30"}))
    _client(server.url).create(HI, max_tokens=4, timeout_s=10)
    assert len(server.times) == 2
    assert 0.65 <= server.gaps()[0] < 2.5


def test_without_retry_after_the_waits_grow(endpoint):
    server = endpoint(Answer(500), Answer(502))
    seen: list[tuple[int, str, float]] = []
    _client(server.url).create(
        HI,
        max_tokens=4,
        timeout_s=10,
        on_retry=lambda n, e, w: seen.append((n, type(e).__name__, w)),
    )
    assert [(n, w) for n, _, w in seen] == [(1, 0.5), (2, 1.0)]
    assert seen[0][1] == "InternalServerError"
    first, second = server.gaps()
    assert 0.45 <= first < 2.0 and 0.95 <= second < 3.0


def test_a_wait_past_the_deadline_is_not_slept(endpoint):
    server = endpoint(Answer(429, {"Retry-After": "5"}))
    started = time.monotonic()
    with pytest.raises(ChatEndpointError, match="would pass the deadline") as caught:
        _client(server.url).create(HI, max_tokens=4, timeout_s=1.5)
    assert time.monotonic() - started < 1.0  # gave up at once instead of sleeping 5 s
    assert caught.value.status == 429 and "HTTP 429: scripted 429" in str(caught.value)
    assert len(server.times) == 1


def test_a_very_long_retry_after_is_not_waited_for(endpoint):
    server = endpoint(Answer(429, {"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(ChatEndpointError, match="asks to wait 3600 s"):
        _client(server.url).create(HI, max_tokens=4, timeout_s=None)
    assert time.monotonic() - started < 1.0 and len(server.times) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_are_not_retried(endpoint, status):
    server = endpoint(Answer(status))
    with pytest.raises(ChatEndpointError, match=f"HTTP {status}") as caught:
        _client(server.url).create(HI, max_tokens=4, timeout_s=10)
    assert caught.value.status == status and not isinstance(caught.value, CallTimedOut)
    assert len(server.times) == 1


@pytest.mark.parametrize("status", [408, 409])
def test_408_and_409_are_retried(endpoint, status):
    server = endpoint(Answer(status, {"Retry-After": "0"}))
    reply = _client(server.url).create(HI, max_tokens=4, timeout_s=10)
    assert reply.choices[0].message.content == "ok" and len(server.times) == 2


def test_three_tries_then_the_last_error(endpoint):
    server = endpoint(default=Answer(503, {"Retry-After": "0.1"}))
    with pytest.raises(ChatEndpointError, match=r"HTTP 503.*no further try: after 3 tries"):
        _client(server.url).create(HI, max_tokens=4, timeout_s=10)
    assert len(server.times) == 3


def test_the_sdk_does_not_retry_on_its_own(endpoint):
    server = endpoint()
    assert _client(server.url).sdk().max_retries == 0


# -- the error mapping --------------------------------------------------------------------------


def test_a_timeout_is_call_timed_out_and_not_retried(endpoint):
    server = endpoint(default=Answer(text="late", delay_s=1.5))
    started = time.monotonic()
    with pytest.raises(CallTimedOut, match=r"test: model 'scripted' at .* timed out after 0.3 s"):
        _client(server.url).create(HI, max_tokens=4, timeout_s=0.3)
    assert time.monotonic() - started < 1.2
    assert len(server.times) == 1
    assert issubclass(CallTimedOut, ChatEndpointError) and issubclass(CallTimedOut, TimeoutError)


def test_unreachable_is_a_chat_endpoint_error_without_status():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ChatEndpointError, match="is unreachable") as caught:
        _client(f"http://127.0.0.1:{port}/v1").create(HI, max_tokens=4, timeout_s=3)
    assert caught.value.status is None


def test_retry_after_parsing_of_an_http_date():
    import httpx
    import openai

    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(429, headers={"Retry-After": when}, request=request)
    exc = openai.RateLimitError("slow down", response=response, body=None)
    assert 25 <= (retry_after_s(exc) or 0) <= 31
    assert is_retryable(exc)
    assert not is_retryable(openai.APITimeoutError(request=request))


def test_from_section_names_the_key_variable_of_a_remote_endpoint(monkeypatch):
    monkeypatch.delenv("SOME_PROVIDER_KEY", raising=False)
    section = LlmPlannerSection("https://llm.example.com/v1", "m", "SOME_PROVIDER_KEY", 5.0)
    with pytest.raises(ChatEndpointError, match="set SOME_PROVIDER_KEY"):
        LlmClient.from_section(section)
    monkeypatch.setenv("SOME_PROVIDER_KEY", "sk-test")
    client = LlmClient.from_section(section)
    assert (client.api_key, client.timeout_s) == ("sk-test", 5.0)
    local = LlmPlannerSection("http://127.0.0.1:1/v1", "m", "SOME_PROVIDER_KEY", 5.0)
    monkeypatch.delenv("SOME_PROVIDER_KEY")
    assert LlmClient.from_section(local).api_key == "not-needed"


@dataclass
class LlmPlannerSection:
    base_url: str
    model: str
    api_key_env: str
    timeout_s: float


# -- inside a run: the budget's deadline --------------------------------------------------------


def test_a_paid_call_stops_at_the_runs_deadline(endpoint):
    server = endpoint(Answer(429, {"Retry-After": "4"}))
    ledger = Ledger(Budget(seconds=6))  # planning may take a third: 2 s
    started = time.monotonic()
    with metered(ledger) as meter, pytest.raises(ChatEndpointError, match="pass the deadline"):
        _client(server.url, timeout_s=30).paid(HI, max_tokens=4, usd_of=lambda _: 0)
    assert time.monotonic() - started < 1.5
    assert meter.spent.calls == 1 and len(server.times) == 1  # the one try was paid


def test_a_paid_call_is_retried_and_each_try_paid(endpoint):
    server = endpoint(Answer(429, {"Retry-After": "0.3"}))
    ledger = Ledger(Budget(seconds=60))
    with metered(ledger) as meter:
        reply = _client(server.url, timeout_s=30).paid(HI, max_tokens=4, usd_of=lambda _: 0)
    assert reply.text == "ok" and reply.tokens == 7
    assert meter.spent.calls == 2 and len(server.times) == 2


# -- every caller goes through it ---------------------------------------------------------------

RATE_LIMITED = Answer(429, {"Retry-After": "0.8"})


def _went_through_the_policy(server: ScriptedEndpoint) -> None:
    assert len(server.times) == 2, "the 429 was not retried"
    assert server.gaps()[0] >= 0.75, "Retry-After was not honoured"


def test_the_chat_backend_retries_a_429(endpoint, tmp_path: Path):
    server = endpoint(RATE_LIMITED, default=Answer(text="Paris"))
    card = ToolCard.model_validate(
        {
            "name": "scripted-chat",
            "task": "text-generation",
            "description": "a scripted chat endpoint on this machine",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": "scripted", "base_url": server.url},
        }
    )
    out = load_tool(card)({"prompt": "Capital of France?"}, CallContext(scratch=tmp_path))
    assert out == {"text": "Paris"}
    _went_through_the_policy(server)


def test_the_llm_planner_retries_a_429(endpoint):
    plan = {
        "nodes": ["weather_query", "send_sms"],
        "links": [{"source": "weather_query", "target": "send_sms"}],
    }
    server = endpoint(RATE_LIMITED, default=Answer(text=json.dumps(plan)))
    tools = ToolSet(
        [ToolSpec("weather_query", "Query the weather"), ToolSpec("send_sms", "Send an SMS")],
        {("weather_query", "send_sms")},
        [Example("Weather in Rome, texted", ("weather_query", "send_sms"), ())],
    )
    result = LlmPlanner(base_url=server.url, model="scripted").plan_tools(
        "Weather in Oslo, by SMS", tools
    )
    assert result.planner == "llm" and result.nodes == ["weather_query", "send_sms"]
    assert result.notes[0] == "retry: attempt 1 failed: RateLimitError", result.notes
    _went_through_the_policy(server)


def test_the_llm_router_retries_a_429(endpoint):
    server = endpoint(
        RATE_LIMITED, default=Answer(text="<think>cheap</think><route>cheap-a</route>")
    )
    free = Decimal(0)
    options = (
        Option(0, "cheap-a", 0.8, 0.5, free, True),
        Option(1, "strong", 0.95, 0.5, free, True),
    )
    decision = LLMPolicy(model="scripted", base_url=server.url).start(
        StepView("s1", "text-generation", "Which?", options)
    )
    assert (decision.policy, decision.candidate) == ("llm", 0), decision.reason
    _went_through_the_policy(server)


def test_the_llm_scorer_retries_a_429(endpoint):
    server = endpoint(RATE_LIMITED, default=Answer(text="7"))
    card = ToolCard.model_validate(
        {
            "name": "scripted-chat",
            "task": "text-generation",
            "description": "a scripted chat endpoint",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": "scripted", "base_url": server.url},
        }
    )
    rating, reply = LLMScorer(model="scripted", base_url=server.url).rate(card, "Say hi")
    assert (rating, reply) == (0.7, "7")
    _went_through_the_policy(server)
