"""A small OpenAI-compatible HTTP server for one local text-generation tool card.

``serve("smollm2-135m-chat", "127.0.0.1", 8000)`` loads the card's model in this process and
answers ``GET /v1/models`` and ``POST /v1/chat/completions`` in OpenAI's wire format (streamed as
server-sent events or not), so any OpenAI client, the ``openai`` backend of this project and its
LLM planner can use a local model. One model on a CPU: calls to it are serialized with a lock.

Its wire format (completions, chunks, errors) is :mod:`orchestrator.server.wire`, shared with
``orchestrator serve``.

The conversation becomes the card's single text prompt (see :func:`build_inputs`). ``max_tokens``
(or ``max_completion_tokens``) caps generation; ``stop`` cuts the text afterwards;
``response_format`` json_object / json_schema adds a "JSON only" instruction to the prompt (or goes
to the card's optional json input ``json_schema``). ``temperature``, ``top_p``, ``seed``, ``tools``
and similar parameters are accepted and ignored: a tool takes no sampling options, its card's
``call_options`` decide. Streaming sends the answer as the model makes it, one content delta per
piece its tool streams (``CallContext.on_text``: the transformers and openai backends do; a tool
that does not stream sends its whole answer in one delta). With ``stop`` sequences, text that may
begin one is held back until it cannot, so no delta ever passes a stop.

Bad requests get a 4xx answer with a JSON body in OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``; a failing model gets a 500 with the same shape.
FastAPI and uvicorn are imported lazily (extra ``orchestrator[server]``).
"""

from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.cards import IOSpec, ToolCard, load_card
from orchestrator.cards.backend import CallContext, Tool, load_tool, unavailable_reason
from orchestrator.errors import NotServable, RequestRejected, UserError
from orchestrator.server.wire import (
    DONE,
    IGNORED_PARAMS,
    Completion,
    Delta,
    ModelEntry,
    ModelList,
    StreamOptions,
    Usage,
    error_body,
    install_error_handlers,
    sse,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "create_app",
    "resolve_card",
    "serve",
]

log = logging.getLogger(__name__)

SERVABLE_TASKS = ("text-generation", "text2text-generation")
SERVER_EXTRA_HINT = "pip install 'orchestrator[server]'"

# --- request payloads (OpenAI chat-completions wire format) ------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentPart(BaseModel):
    """One part of a multi-part message content; only ``text`` parts are understood."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(_Payload):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs 'content'")
        return self


class JsonSchemaSpec(_Payload):
    """The ``json_schema`` member of a ``response_format``."""

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Payload):
    """``{"type": "text" | "json_object" | "json_schema", "json_schema": {...}}``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class ChatCompletionRequest(_Payload):
    """A ``POST /v1/chat/completions`` body. Unknown parameters are refused, as OpenAI does."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int | None = Field(default=None, ge=1, le=1, description="only one choice is supported")
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_PARAMS}
        return data

    def token_limit(self) -> int | None:
        """The completion-token cap asked for, if any."""
        return self.max_completion_tokens or self.max_tokens

    def stop_sequences(self) -> list[str]:
        """The stop sequences asked for, as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


# --- how the conversation reaches the tool -----------------------------------------------------


@dataclass(frozen=True)
class _ToolShape:
    """Which of the card's inputs and output the server fills and reads."""

    prompt: str
    output: str
    system: str | None = None
    messages: str | None = None
    json_schema: str | None = None

    @classmethod
    def of(cls, card: ToolCard) -> _ToolShape:
        required_text = [io for io in card.inputs if io.type == "text" and not io.optional]
        text_out = [io for io in card.outputs if io.type == "text"]
        required_other = [io.name for io in card.inputs if not io.optional and io.type != "text"]
        if len(required_text) != 1 or not text_out or required_other:
            raise NotServable(
                f"card '{card.name}' must take exactly one required text input and give a text "
                f"output to be served as a chat model (it takes {_io_list(card.inputs)} and "
                f"gives {_io_list(card.outputs)})"
            )
        return cls(
            prompt=required_text[0].name,
            output=text_out[0].name,
            system=_optional(card, "system", "text"),
            messages=_optional(card, "messages", "json"),
            json_schema=_optional(card, "json_schema", "json"),
        )


def _optional(card: ToolCard, name: str, type_: str) -> str | None:
    return next((io.name for io in card.inputs if io.name == name and io.type == type_), None)


def _io_list(ios: list[IOSpec]) -> str:
    return ", ".join(f"{io.name}:{io.type}{'?' if io.optional else ''}" for io in ios)


def _text_of(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise RequestRejected(
                400,
                f"this model takes text only; message {index} has a '{part.type}' part",
                param=f"messages.{index}.content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _json_hint(response_format: ResponseFormat | None) -> str:
    if response_format is None or response_format.type == "text":
        return ""
    spec = response_format.json_schema
    if response_format.type == "json_schema" and spec is not None and spec.schema_ is not None:
        return "Answer with JSON only, matching this JSON schema: " + json.dumps(spec.schema_)
    return "Answer with a JSON object only."


def build_inputs(request: ChatCompletionRequest, shape: _ToolShape) -> dict[str, Any]:
    """Turn the conversation into the tool's inputs.

    System (and developer) messages go to the card's optional ``system`` input when it has one,
    else they open the prompt. A single user turn is passed as it is; a longer conversation is
    rendered as a transcript with ``User:`` / ``Assistant:`` labels, ending with the last turn.
    A card with an optional json ``messages`` input also gets the whole conversation as a list.
    """
    texts = [(m.role, _text_of(m, i)) for i, m in enumerate(request.messages)]
    if not any(role == "user" for role, _ in texts):
        raise RequestRejected(400, "messages must include a user message", param="messages")
    system = [t for role, t in texts if role in ("system", "developer") and t.strip()]
    turns = [(role, t) for role, t in texts if role not in ("system", "developer")]
    inputs: dict[str, Any] = {}
    hint = _json_hint(request.response_format)
    if hint and shape.json_schema and request.response_format is not None:
        spec = request.response_format.json_schema
        inputs[shape.json_schema] = (spec.schema_ if spec else None) or {"type": "object"}
        hint = ""
    if hint:
        system.append(hint)
    preface: list[str] = []
    if system and shape.system:
        inputs[shape.system] = "\n\n".join(system)
    else:
        preface = system
    if len(turns) == 1 and turns[0][0] == "user":
        body = [turns[0][1]]
    else:
        body = [f"{role.capitalize()}: {text}" for role, text in turns]
    inputs[shape.prompt] = "\n\n".join(preface + body)
    if shape.messages:
        inputs[shape.messages] = [
            {"role": "system" if role == "developer" else role, "content": text}
            for role, text in texts
        ]
    return inputs


# --- the app -----------------------------------------------------------------------------------


@dataclass
class _Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> Usage:
        return Usage.of(self.prompt_tokens, self.completion_tokens)


class _ChatModel:
    """The loaded tool behind the endpoint, called one request at a time."""

    def __init__(self, card: ToolCard, tool: Tool, shape: _ToolShape) -> None:
        self.card = card
        self.tool = tool
        self.shape = shape
        self.lock = threading.Lock()

    def generate(
        self,
        request: ChatCompletionRequest,
        inputs: dict[str, Any],
        on_text: Callable[[str], None] | None = None,
    ) -> _Generation:
        """Run the tool on ``inputs`` (from :func:`build_inputs`), streaming to ``on_text``."""
        limit = request.token_limit()
        with self.lock, tempfile.TemporaryDirectory(prefix="llm-server-") as scratch:
            ctx = CallContext(scratch=Path(scratch), max_tokens=limit, on_text=on_text)
            try:
                outputs = self.tool(inputs, ctx)
            except Exception as exc:
                log.exception("model %s failed", self.card.name)
                raise RequestRejected(
                    500, f"the model failed: {type(exc).__name__}: {exc}", type_="server_error"
                ) from exc
        text = outputs.get(self.shape.output)
        if not isinstance(text, str):
            message = f"the model returned no text output '{self.shape.output}'"
            raise RequestRejected(500, message, type_="server_error")
        finish = "length" if limit is not None and ctx.usage.output_tokens >= limit else "stop"
        for stop in request.stop_sequences():
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        return _Generation(text, finish, ctx.usage.input_tokens, ctx.usage.output_tokens)


def _refuse_card_code(card: ToolCard) -> None:
    """Refuse a card that brings code: this server loads models in its own process.

    Code a card brings (a python entry, a model's own code) runs only in sandboxed workers.
    """
    if card.builtin:
        return
    options = getattr(card.backend, "options", {}) or {}
    if card.backend.kind == "python" or options.get("trust_remote_code"):
        what = "a python card"
        if card.backend.kind != "python":
            what = "a card running its model's code"
        raise NotServable(
            f"card '{card.name}' is {what}: serve-llm loads the model in this process, outside "
            "the sandbox, so it serves only built-in cards and cards without code of their own"
        )


def create_app(card: ToolCard) -> Any:
    """Load ``card``'s model in this process and return the FastAPI app that serves it."""
    fastapi = _require("fastapi")
    from fastapi.responses import StreamingResponse

    if card.task not in SERVABLE_TASKS:
        raise NotServable(
            f"card '{card.name}' is a '{card.task}' card; only text-generation cards can be "
            f"served as a chat model"
        )
    shape = _ToolShape.of(card)
    _refuse_card_code(card)
    reason = unavailable_reason(card)
    if reason:
        raise NotServable(f"card '{card.name}' is unavailable here: {reason}")
    model = _ChatModel(card, load_tool(card), shape)
    entry = ModelEntry(id=card.name, created=int(time.time()), owned_by="local")

    app = fastapi.FastAPI(title=f"orchestrator LLM server: {card.name}")
    install_error_handlers(app)

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return ModelList(data=[entry]).model_dump(mode="json")

    @app.get("/v1/models/{model_id}")
    def get_model(model_id: str) -> dict[str, Any]:
        _check_model(model_id, card.name)
        return entry.model_dump(mode="json")

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatCompletionRequest) -> Any:
        _check_model(body.model, card.name)
        inputs = build_inputs(body, shape)  # a bad request is refused before any stream opens
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        completion = Completion(card.name, include_usage=include_usage)
        if body.stream:
            events = _stream_events(completion, model, body, inputs)
            return StreamingResponse(events, media_type="text/event-stream")
        generation = model.generate(body, inputs)
        return completion.whole(generation.text, generation.finish_reason, generation.usage())

    return app


def _check_model(model_id: str, served: str) -> None:
    if model_id != served:
        raise RequestRejected(
            404,
            f"The model '{model_id}' does not exist; this server serves '{served}'",
            param="model",
            code="model_not_found",
        )


def _stream_events(
    completion: Completion,
    model: _ChatModel,
    request: ChatCompletionRequest,
    inputs: dict[str, Any],
) -> Iterator[str]:
    """The answer as ``chat.completion.chunk`` server-sent events as it is made, then ``[DONE]``.

    The model runs in a thread; each piece it streams becomes a content delta (held back while
    it may begin a stop sequence). Whatever of the final text was not sent comes in one last
    delta. A model that fails after the stream opened ends it with an error event.
    """
    pieces: queue.Queue[str | None] = queue.Queue()
    ended: dict[str, Any] = {}

    def work() -> None:
        try:
            ended["generation"] = model.generate(request, inputs, on_text=pieces.put)
        except Exception as exc:  # noqa: BLE001 - the stream is open: it ends with the error
            ended["error"] = exc
        finally:
            pieces.put(None)

    threading.Thread(target=work, name="serve-llm-generate", daemon=True).start()
    yield completion.chunk(Delta(role="assistant", content=""))
    held = _StopHold(request.stop_sequences())
    while (piece := pieces.get()) is not None:
        ready = held.feed(piece)
        if ready:
            yield completion.chunk(Delta(content=ready))
    if "error" in ended:
        yield sse(error_body(str(ended["error"]), "server_error"))
        yield DONE
        return
    generation: _Generation = ended["generation"]
    if generation.text.startswith(held.sent) and len(generation.text) > len(held.sent):
        yield completion.chunk(Delta(content=generation.text[len(held.sent) :]))
    yield completion.chunk(Delta(), generation.finish_reason)
    if completion.include_usage:
        yield completion.usage_chunk(generation.usage())
    yield DONE


class _StopHold:
    """Streamed text, released only where no stop sequence can begin or has begun."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.seen = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        """Add a piece; the text that may now be sent (often the piece itself)."""
        self.seen += piece
        cuts = [c for c in (self.seen.find(s) for s in self.stops) if c >= 0]
        end = min(cuts) if cuts else len(self.seen) - self.keep
        ready = self.seen[len(self.sent) : max(end, len(self.sent))]
        self.sent += ready
        return ready


# --- finding a card and serving it -------------------------------------------------------------


def resolve_card(name_or_path: str) -> ToolCard:
    """A card from a YAML path, or by name from the zoo (built-ins and configured card folders)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_card(path)
    from orchestrator.cards.approvals import Approvals
    from orchestrator.cards.zoo import Zoo
    from orchestrator.config import Config

    config = Config.load()
    zoo = Zoo.load(config.card_dirs, approvals=Approvals.from_config(config))
    try:
        return zoo.get(name_or_path).card
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; or give the path of a YAML card file") from None


MAX_BODY_BYTES = 4_000_000  # a chat request is text: a long conversation fits with room


def serve(
    card_name_or_path: str,
    host: str,
    port: int,
    *,
    api_key: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> None:
    """Serve one text-generation card over HTTP, OpenAI-compatible, until interrupted.

    The same guard as ``orchestrator serve`` stands in front (:mod:`orchestrator.server.guard`):
    Host header, cross-site browser requests, request bodies (at most :data:`MAX_BODY_BYTES`,
    30 s, 8 at once), and the key when one is given - required to listen beyond this machine.
    """
    from orchestrator.server import is_loopback
    from orchestrator.server.guard import AllowedHosts, BodyLimits, Guard

    uvicorn = _require("uvicorn")
    if not is_loopback(host) and not api_key:
        raise UserError(
            f"refusing to listen on {host} without an API key: anyone who can reach this "
            "machine could use the model. Set one (serve-llm --api-key-env NAME) or bind to "
            "127.0.0.1"
        )
    app = create_app(resolve_card(card_name_or_path))
    guarded = Guard(
        app,
        keys=[api_key] if api_key else [],
        limits=BodyLimits(MAX_BODY_BYTES),
        hosts=AllowedHosts(host, allowed_hosts or []),
    )
    uvicorn.run(guarded, host=host, port=port, log_level="info")


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise UserError(
            f"the LLM server needs '{module}', which is not installed: {SERVER_EXTRA_HINT}"
        ) from exc
