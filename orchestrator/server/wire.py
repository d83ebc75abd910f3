"""The OpenAI wire format of both servers: ``orchestrator serve`` and ``serve-llm``.

Every OpenAI object the two servers send is built here: the chat completion, its streamed
chunks framed as server-sent events (``data: {...}`` and ``data: [DONE]``), the model list,
and the error body ``{"error": {"message", "type", "param", "code"}}`` (see
:func:`install_error_handlers`). The orchestrator server's chunks and completions carry one
extra member, ``orchestrator``: its progress events (:mod:`orchestrator.events`).

Requests to ``orchestrator serve`` are pydantic models that refuse unknown fields (as OpenAI
does), except the sampling parameters a pipeline of tools has no use for, which are accepted
and ignored. Message content may be a string or a list of OpenAI content parts: ``text``,
``image_url`` (a ``data:`` URL), ``input_audio`` (base64 with its format) and ``file``
(``file_id`` of an upload, or ``file_data`` as a data URL with its ``filename``). One extra body
field, ``budget``, lowers the run's limits. Every error is a :class:`RequestRejected`.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from orchestrator.budget import Budget
from orchestrator.errors import RequestRejected

__all__ = [
    "DONE",
    "IGNORED_PARAMS",
    "AudioPart",
    "BudgetOverride",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "FilePart",
    "ImagePart",
    "ModelEntry",
    "ModelList",
    "StreamOptions",
    "TextPart",
    "Usage",
    "error_body",
    "install_error_handlers",
    "sse",
]

# OpenAI request parameters a served model or pipeline accepts and ignores.
IGNORED_PARAMS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "metadata",
        "modalities",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "safety_identifier",
        "seed",
        "service_tier",
        "store",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)

# Parameters of a chat model that do not apply to a pipeline of tools: accepted, ignored.
_IGNORED = IGNORED_PARAMS | {
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "stop",
    "response_format",
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Payload):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class ImageUrl(_Payload):
    """The ``image_url`` member: a ``data:image/...;base64,...`` URL."""

    url: str = Field(min_length=1)
    detail: str | None = None


class ImagePart(_Payload):
    """``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``."""

    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Payload):
    """The ``input_audio`` member: base64 data and its format."""

    data: str = Field(min_length=1)
    format: Literal["wav", "mp3", "flac", "ogg"]


class AudioPart(_Payload):
    """``{"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}``."""

    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Payload):
    """The ``file`` member: an uploaded ``file_id``, or ``file_data`` (data URL) + ``filename``."""

    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileRef:
        if (self.file_id is None) == (self.file_data is None):
            raise ValueError("give exactly one of 'file_id' and 'file_data'")
        return self


class FilePart(_Payload):
    """``{"type": "file", "file": {"file_id": "file-..."}}``."""

    type: Literal["file"]
    file: FileRef


ContentPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]


class ChatMessage(_Payload):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # What the openai SDK sends back when a client appends a received message as it is.
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs 'content'")
        return self

    def text(self) -> str:
        """The message's text (text parts joined by newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def file_parts(self) -> list[tuple[int, ImagePart | AudioPart | FilePart]]:
        """The message's attached files with their indexes in ``content``, in order."""
        if not isinstance(self.content, list):
            return []
        return [(i, p) for i, p in enumerate(self.content) if not isinstance(p, TextPart)]


class BudgetOverride(_Payload):
    """The extra body field ``budget``: limits for this run (each optional)."""

    usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tokens: int | None = Field(default=None, ge=0)
    calls: int | None = Field(default=None, ge=1)

    def within(self, default: Budget) -> Budget:
        """This override on top of the server's ``default``; raising a set limit is refused."""
        values: dict[str, Any] = {}
        for name in ("usd", "seconds", "tokens", "calls"):
            mine, cap = getattr(self, name), getattr(default, name)
            if mine is not None and cap is not None and mine > cap:
                raise RequestRejected(
                    400,
                    f"budget.{name} {mine} is above this server's limit of {cap}; "
                    f"a request may lower the limits, not raise them",
                    param=f"budget.{name}",
                    code="budget_above_limit",
                )
            values[name] = mine if mine is not None else cap
        return Budget(**values)


class StreamOptions(_Payload):
    """Options of a streamed answer."""

    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatRequest(_Payload):
    """A ``POST /v1/chat/completions`` body."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only one choice is supported")
    budget: BudgetOverride | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _IGNORED}
        return data

    def last_user(self) -> tuple[int, ChatMessage]:
        """The last user message and its index; none is a 400."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                return index, self.messages[index]
        raise RequestRejected(400, "messages must include a user message", param="messages")


# --- what the servers send ---------------------------------------------------------------------

DONE = "data: [DONE]\n\n"
"""The server-sent event that ends every stream."""


def sse(data: BaseModel | dict[str, Any]) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return f"data: {json.dumps(data)}\n\n"


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """An error in OpenAI's shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def rejection_body(exc: RequestRejected) -> dict[str, Any]:
    """The OpenAI error body of a rejected request."""
    return error_body(str(exc), exc.type_, param=exc.param, code=exc.code)


class _Sent(BaseModel):
    """An object a server sends; members in ``_sent_when_set`` go out only when given."""

    model_config = ConfigDict(extra="forbid")
    _sent_when_set: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name in self._sent_when_set - self.model_fields_set:
            data.pop(name, None)
        return data


class Usage(_Sent):
    """Token counts of one answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        """The usage of ``prompt`` input and ``completion`` output tokens."""
        total = prompt + completion
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


class Delta(_Sent):
    """What a chunk adds to the message (the first names the role; the last adds nothing)."""

    _sent_when_set = frozenset({"role", "content"})

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Sent):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Sent):
    """A ``chat.completion.chunk``; ``usage`` is sent (null until the last) when asked for."""

    _sent_when_set = frozenset({"usage", "orchestrator"})

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    orchestrator: dict[str, Any] | None = None


class AssistantMessage(_Sent):
    """The answer of a whole completion."""

    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class CompletionChoice(_Sent):
    """The one choice of a whole completion."""

    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(_Sent):
    """A ``chat.completion``."""

    _sent_when_set = frozenset({"orchestrator"})

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    orchestrator: dict[str, Any] | None = None


class Completion:
    """The chat-completion objects of one response, sharing its id, creation time and model."""

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def chunk(
        self,
        delta: Delta,
        finish: str | None = None,
        *,
        orchestrator: dict[str, Any] | None = None,
    ) -> str:
        """One chunk as a server-sent event (with ``usage: null`` when usage was asked for)."""
        extra: dict[str, Any] = {"usage": None} if self.include_usage else {}
        if orchestrator is not None:
            extra["orchestrator"] = orchestrator
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return sse(self._chunk(choices=[choice], **extra))

    def usage_chunk(self, usage: Usage) -> str:
        """The last chunk of a stream that asked for usage: no choices, the usage."""
        return sse(self._chunk(choices=[], usage=usage))

    def _chunk(self, **members: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, **members)

    def whole(
        self,
        content: str,
        finish: str,
        usage: Usage,
        *,
        orchestrator: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The whole ``chat.completion`` as JSON-ready data."""
        extra = {} if orchestrator is None else {"orchestrator": orchestrator}
        choice = CompletionChoice(message=AssistantMessage(content=content), finish_reason=finish)
        completion = ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=usage,
            **extra,
        )
        return completion.model_dump(mode="json")


class ModelEntry(_Sent):
    """One entry of ``GET /v1/models`` (``task`` and ``description`` when the server has them)."""

    _sent_when_set = frozenset({"task", "description"})

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    task: str | None = None
    description: str | None = None


class ModelList(_Sent):
    """The body of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelEntry]


# --- errors ------------------------------------------------------------------------------------


def install_error_handlers(app: Any) -> None:
    """Answer rejected, malformed and unrouted requests with errors in OpenAI's shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(RequestRejected)
    def _rejected(_request: Any, exc: RequestRejected) -> Any:
        return JSONResponse(rejection_body(exc), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Any, exc: RequestValidationError) -> Any:
        message, param = _validation_message(exc.errors())
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(HTTPException)
    def _http(_request: Any, exc: HTTPException) -> Any:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        body = error_body(str(exc.detail), kind)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


_NOT_AN_OBJECT = ("dict_type", "model_attributes_type", "model_type")


def _validation_message(errors: Any) -> tuple[str, str | None]:
    parts = []
    param = None
    for error in errors:
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            return f"the request body is not valid JSON: {detail}".rstrip(": "), None
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in _NOT_AN_OBJECT:
            return "the request body must be a JSON object (Content-Type: application/json)", None
        loc = [str(p) for p in error.get("loc", ()) if p != "body" and not _is_type_tag(p)]
        where = ".".join(loc) or "body"
        param = param or (where if loc else None)
        part = f"{where}: {error.get('msg', 'invalid')}"
        if part not in parts:
            parts.append(part)
    return "invalid request: " + "; ".join(parts), param


def _is_type_tag(part: object) -> bool:
    """Pydantic names the union member in an error's location (``str``, ``list[X]``); drop it."""
    text = str(part)
    return text in _TYPE_TAGS or "[" in text or text[:1].isupper()


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "function-after"})
