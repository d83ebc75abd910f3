"""The hf-inference backend: the real ``InferenceClient`` against a local HTTP server.

The server (started here, in a thread) answers in the Inference API's request/response format
with REAL offline models, the project's built-in cards run in this process: VADER sentiment
(``vader-sentiment``) for text classification and EfficientNet-Lite0 (``efficientnet-lite0``)
for image classification. It also serves ``/api/models/ID`` as the Hub API does, for
``cards new --from-hub ID --provider P`` through ``HF_ENDPOINT``. No mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import Config, Orchestrator
from orchestrator.budget import Budget
from orchestrator.cards import ToolCard, card_from_yaml
from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason
from orchestrator.cards.zoo import Zoo
from orchestrator.errors import ChatEndpointError, UserError
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.plan import Plan, Subtask, TextArg

VADER = "local/vader-sentiment"
BUSY = "local/busy-vader"  # answers 429 with Retry-After first, then as VADER
EFFICIENTNET = "local/efficientnet-lite0"
PRICE = Decimal("0.0125")


@dataclass
class Served:
    """What the local server runs and what it saw."""

    tools: dict[str, Any] = field(default_factory=dict)  # model id -> (card, loaded tool)
    busy: list[float] = field(default_factory=list)  # Retry-After of the next 429s, in order
    requests: list[str] = field(default_factory=list)  # paths of the inference requests
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tool(self, model: str) -> Any:
        from orchestrator.cards import load_card
        from orchestrator.cards.card import builtin_cards_dir

        name = {VADER: "vader-sentiment", BUSY: "vader-sentiment"}.get(model, model.split("/")[1])
        with self.lock:
            if name not in self.tools:
                self.tools[name] = load_tool(load_card(builtin_cards_dir() / f"{name}.yaml"))
            return self.tools[name]


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # the Hub API's model info
            if self.path.startswith("/api/models/"):
                model = self.path.removeprefix("/api/models/").split("?")[0]
                tag = {VADER: "text-classification", EFFICIENTNET: "image-classification"}
                if model in tag:
                    self._send(
                        200,
                        {"id": model, "modelId": model, "pipeline_tag": tag[model], "tags": []},
                    )
                    return
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

        def do_POST(self) -> None:  # the Inference API: POST /models/{id}
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            model = self.path.removeprefix("/models/")
            served.requests.append(self.path)
            if model == BUSY and served.busy:
                wait = served.busy.pop(0)
                self._send(429, {"error": "rate limited"}, {"Retry-After": f"{wait:g}"})
                return
            if model in (VADER, BUSY):
                text = json.loads(body)["inputs"]
                out = served.tool(model)({"text": text}, CallContext(scratch=Path("/tmp")))
                scores = out["scores"]
                named = {"positive": "pos", "negative": "neg", "neutral": "neu"}
                ranked = sorted(
                    ({"label": lab, "score": scores[key]} for lab, key in named.items()),
                    key=lambda item: item["score"] if item["label"] != out["label"] else 2.0,
                    reverse=True,
                )
                self._send(200, [ranked])  # the API answers a batch of one input
                return
            if model == EFFICIENTNET:  # raw image bytes, as the client sends them
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "in.png"
                    path.write_bytes(body)
                    out = served.tool(model)({"image": str(path)}, CallContext(Path(folder)))
                self._send(200, [{"label": t["label"], "score": t["score"]} for t in out["top5"]])
                return
            self._send(404, {"error": f"Model {model} does not exist"})

    return Handler


@pytest.fixture(scope="module")
def hub() -> Iterator[tuple[str, Served]]:
    served = Served()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def hosted_card(base_url: str | None, model: str = VADER, **backend: Any) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": "hosted-sentiment",
            "task": "text-classification",
            "description": "tells whether a text sounds positive or negative, hosted",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "label", "type": "text"}, {"name": "scores", "type": "json"}],
            "backend": {
                "kind": "hf-inference",
                "task": "text-classification",
                "model": model,
                "base_url": base_url,
                **backend,
            },
            "cost": {"usd_per_call": str(PRICE), "latency_s": 0.2, "load_s": 0},
            "requires": {"packages": ["huggingface_hub"]},
        }
    )


class FixedPlan:
    """Classifies the given texts, one step each."""

    name = "fixed"

    def __init__(self, *texts: str) -> None:
        self.texts = texts

    def plan(self, request: str, zoo: Zoo, *, files: Any = ()) -> Plan:
        steps = [
            Subtask(
                id=f"s{n}",
                task="text-classification",
                instruction="how does it sound",
                args={"text": TextArg(value=text)},
            )
            for n, text in enumerate(self.texts, 1)
        ]
        return Plan(request=request, planner=self.name, subtasks=steps)


def _run(tmp_path: Path, card: ToolCard, budget: Budget, *texts: str) -> Any:
    folder = tmp_path / "cards"
    folder.mkdir(exist_ok=True)
    data = card.model_dump(mode="json", exclude_none=True)
    (folder / f"{card.name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = Config(runs_dir=tmp_path / "runs", approve={card.name: True})
    with Orchestrator(
        config,
        zoo=Zoo.load([folder], builtin=False),
        executor=InProcessExecutor(),
        planner=FixedPlan(*texts),
        durable=False,
    ) as orch:
        return orch.run("how do these sound?", budget=budget)


def test_a_hosted_card_runs_end_to_end_and_each_call_is_billed_its_price(hub, tmp_path):
    base, served = hub
    card = hosted_card(base)
    assert card.backend.kind == "hf-inference" and unavailable_reason(card) is None
    happy, sad = "I love this wonderful sunny day!", "This is a terrible, awful mess."
    result = _run(tmp_path, card, Budget(usd="1"), happy, sad)
    assert result.status == "ok", result.message
    labels = {step.step: step.outputs["label"] for step in result.steps}
    assert labels == {"s1": "positive", "s2": "negative"}  # VADER's real answers
    assert Decimal(str(result.spent["usd"])) == 2 * PRICE
    assert all(Decimal(step.usd) == PRICE for step in result.steps)


def test_a_429_with_retry_after_is_retried_and_answers(hub):
    base, served = hub
    served.busy[:] = [0.3]
    before = len(served.requests)
    tool = load_tool(hosted_card(base, BUSY))
    started = time.monotonic()
    out = tool({"text": "What a great result"}, CallContext(Path("/tmp"), timeout_s=10))
    assert out["label"] == "positive"
    assert len(served.requests) - before == 2  # the 429, then the answer
    assert time.monotonic() - started >= 0.3  # the server's Retry-After was waited


def test_a_retry_that_would_pass_the_budgets_time_is_not_made(hub, tmp_path):
    base, served = hub
    served.busy[:] = [30.0]
    before = len(served.requests)
    started = time.monotonic()
    result = _run(tmp_path, hosted_card(base, BUSY), Budget(seconds=5), "Nice!")
    took = time.monotonic() - started
    assert result.status != "ok"
    (step,) = result.steps
    error = step.attempts[-1]["error"]
    assert "HTTP 429" in error and "would pass the deadline" in error, error
    assert len(served.requests) - before == 1  # no second try
    assert took < 5
    served.busy.clear()


def test_a_missing_token_names_the_variable_to_set(monkeypatch):
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    card = hosted_card(None, token_env="MY_HF_TOKEN", provider="together")
    reason = unavailable_reason(card)
    assert reason is not None and "set MY_HF_TOKEN" in reason
    with pytest.raises(UserError, match="set MY_HF_TOKEN in the environment"):
        load_tool(card)


def test_a_model_the_server_does_not_serve_says_what_to_fix(hub):
    base, _ = hub
    tool = load_tool(hosted_card(base, "local/not-here"))
    with pytest.raises(ChatEndpointError, match="not served there .*provider") as caught:
        tool({"text": "hello"}, CallContext(Path("/tmp"), timeout_s=10))
    assert caught.value.status == 404


@pytest.mark.slow
@pytest.mark.models
def test_image_classification_answers_with_the_real_model(hub, tmp_path):
    from PIL import Image, ImageDraw

    base, served = hub
    picture = tmp_path / "disc.png"
    image = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(image).ellipse((40, 40, 184, 184), fill="orange")
    image.save(picture)
    card = ToolCard.model_validate(
        {
            "name": "hosted-imagenet",
            "task": "image-classification",
            "description": "says what a picture shows, hosted on a provider",
            "inputs": [{"name": "image", "type": "image"}],
            "outputs": [{"name": "label", "type": "text"}, {"name": "top", "type": "json"}],
            "backend": {
                "kind": "hf-inference",
                "task": "image-classification",
                "model": EFFICIENTNET,
                "base_url": base,
            },
        }
    )
    out = load_tool(card)({"image": str(picture)}, CallContext(tmp_path, timeout_s=60))
    local = served.tool(EFFICIENTNET)({"image": str(picture)}, CallContext(tmp_path))
    assert out["label"] == local["label"]
    assert [t["label"] for t in out["top"]] == [t["label"] for t in local["top5"]]


def test_cards_new_from_hub_with_a_provider_drafts_a_valid_hosted_card(hub, tmp_path):
    base, _ = hub
    target = tmp_path / "drafted.yaml"
    env = {**os.environ, "HF_ENDPOINT": base, "HF_HUB_OFFLINE": "0"}
    command = [sys.executable, "-m", "orchestrator", "cards", "new", "--from-hub", VADER]
    done = subprocess.run(
        [*command, "--provider", "hf-inference", "-o", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    card = card_from_yaml(target.read_text(encoding="utf-8"), target)
    assert card.backend.kind == "hf-inference"
    assert (card.task, card.backend.task, card.backend.provider) == (
        "text-classification",
        "text-classification",
        "hf-inference",
    )
    assert [io.type for io in card.outputs] == ["text", "json"]
    unknown = subprocess.run(
        [*command[:-1], "local/missing", "--provider", "together"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "knows no model 'local/missing'" in unknown.stderr
