"""The wire format of ``orchestrator serve``: OpenAI chat-completions payloads and errors.

Requests are pydantic models that refuse unknown fields (as OpenAI does), except the sampling
parameters a pipeline of tools has no use for, which are accepted and ignored. Message content
may be a string or a list of OpenAI content parts: ``text``, ``image_url`` (a ``data:`` URL),
``input_audio`` (base64 with its format) and ``file`` (``file_id`` of an upload, or
``file_data`` as a data URL with its ``filename``). One extra body field, ``budget``, lowers the
run's limits. Every error is a :class:`RequestRejected` answered in OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.budget import Budget
from orchestrator.errors import RequestRejected
from orchestrator.server.single_model import IGNORED_PARAMS

__all__ = [
    "AudioPart",
    "BudgetOverride",
    "ChatMessage",
    "ChatRequest",
    "FilePart",
    "ImagePart",
    "TextPart",
    "error_body",
]

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


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """An error in OpenAI's shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
