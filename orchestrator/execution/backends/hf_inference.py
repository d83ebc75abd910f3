"""Backend for models hosted by Hugging Face Inference Providers, through ``InferenceClient``.

The card names the provider (``hf-inference``, ``auto``, ``together``, ...), the model's hub id,
the environment variable that holds the token (``HF_TOKEN`` by default) and optionally a
``base_url``: a server laid out like the router's ``hf-inference`` route, where the model
answers at ``{base_url}/models/{model}`` (and chat at ``.../v1/chat/completions``); a server on
this machine needs no token. ``task`` is the InferenceClient task the card calls (text
classification, speech recognition, image classification, image-to-text, text-to-image,
text-to-speech, translation, summarization, chat).

Inputs and outputs map to the card's IO types as the local backends do: the first text, image
or audio input is what is sent; a text output gets the answer's text (a classifier's top
label), a json output the whole answer (every label and score), an image or audio output a file
written under ``ctx.scratch``. A call is priced by the card's ``cost.usd_per_call`` like any
card; it ends within ``timeout_s`` (cut to the seconds the budget left for it, ``ctx.timeout_s``),
and its retries (429, 5xx, connection, the server's Retry-After) follow the policy of
:func:`orchestrator.llm.with_retries`, which never sleeps past that deadline.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.errors import CallTimedOut, ChatEndpointError, UserError
from orchestrator.llm import RETRY_STATUS, is_local_url, with_retries

__all__ = ["HF_TASKS", "HfInferenceBackend", "HfInferenceSpec", "HfInferenceTool", "model_url"]

HF_TASKS: dict[str, str] = {
    "text-classification": "text_classification",
    "automatic-speech-recognition": "automatic_speech_recognition",
    "image-classification": "image_classification",
    "image-to-text": "image_to_text",
    "text-to-image": "text_to_image",
    "text-to-speech": "text_to_speech",
    "translation": "translation",
    "summarization": "summarization",
    "text-generation": "chat_completion",
    "chat": "chat_completion",
}
"""The tasks this backend calls, each with its ``InferenceClient`` method."""

TOKENS_URL = "https://huggingface.co/settings/tokens"


class HfInferenceSpec(BaseModel):
    """A model served by a Hugging Face Inference Provider (the card's ``backend`` field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hf-inference"]
    task: Literal[tuple(HF_TASKS)]  # type: ignore[valid-type]
    model: str = Field(min_length=1, description="the model's hub id, e.g. org/name")
    provider: str = Field(default="hf-inference", description="an Inference Provider, or auto")
    token_env: str = Field(default="HF_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    base_url: str | None = Field(default=None, description="default: the Hugging Face router")
    timeout_s: float = Field(default=60.0, gt=0, description="time limit of one call, retries in")
    max_tokens: int = Field(default=256, gt=0, description="chat: the longest reply")
    options: dict[str, Any] = Field(default_factory=dict, description="extra method arguments")


class HfInferenceBackend:
    """Calls hosted models with ``huggingface_hub.InferenceClient``."""

    spec = HfInferenceSpec

    def unavailable_reason(self, card: ToolCard) -> str | None:
        """No huggingface_hub, or no token where one is needed; never touches the network."""
        if importlib.util.find_spec("huggingface_hub") is None:
            return "the 'huggingface_hub' package is not installed (pip install huggingface_hub)"
        spec = _spec(card)
        if _token(spec) is None and not _local(spec):
            return _no_token(spec)
        return None

    def load(self, card: ToolCard) -> Tool:
        """A tool calling the card's model; raises UserError when the token is missing."""
        spec = _spec(card)
        token = _token(spec)
        if token is None and not _local(spec):
            raise UserError(f"card {card.name}: {_no_token(spec)}")
        return HfInferenceTool(card, spec, token)


@dataclass
class HfInferenceTool:
    """A hosted model: the card's inputs sent by one InferenceClient method, its answer mapped."""

    card: ToolCard
    spec: HfInferenceSpec
    token: str | None

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        spec = self.spec
        limit = spec.timeout_s if ctx.timeout_s is None else min(spec.timeout_s, ctx.timeout_s)
        deadline = time.monotonic() + limit
        method = HF_TASKS[spec.task]
        argument, options = self._request(inputs, ctx)

        def attempt() -> Any:
            from huggingface_hub import InferenceClient

            left = max(deadline - time.monotonic(), 0.05)
            client = InferenceClient(provider=spec.provider, token=self.token, timeout=left)
            return getattr(client, method)(argument, model=self.target(), **options)

        with online():
            answer = with_retries(
                attempt,
                retryable=is_retryable,
                failed=lambda exc, note: self.error(exc, note, limit),
                catch=Exception,
                deadline=deadline,
            )
        return self._outputs(answer, ctx)

    def target(self) -> str:
        """What the client is given as ``model``: the hub id, or the URL at ``base_url``."""
        return model_url(self.spec) or self.spec.model

    def where(self) -> str:
        place = self.spec.base_url or f"provider '{self.spec.provider}'"
        return f"{self.card.name}: model '{self.spec.model}' at {place}"

    def error(self, exc: BaseException, note: str, limit: float) -> Exception:
        """The project's error for a failed call, saying what to fix."""
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

        where = self.where()
        if isinstance(exc, InferenceTimeoutError | TimeoutError):
            return CallTimedOut(f"{where} timed out after {limit:.3g} s{note}")
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code
            if status in (401, 403):
                return ChatEndpointError(
                    f"{where} refused the token in ${self.spec.token_env} (HTTP {status}); set "
                    f"it to a token allowed to call Inference Providers ({TOKENS_URL})",
                    status=status,
                )
            if status == 404:
                why = f"is not served there (HTTP 404); {_not_served(self.spec)}"
                return ChatEndpointError(f"{where} {why}", status=404)
            why = f"answered HTTP {status}: {_first_line(exc)}{note}"
            return ChatEndpointError(f"{where} {why}", status=status)
        if isinstance(exc, ValueError) and "not supported" in str(exc):
            return ChatEndpointError(f"{where}: {exc}; {_not_served(self.spec)}")
        if _transport_error(exc):
            return ChatEndpointError(f"{where} is unreachable: {exc}{note}")
        return ChatEndpointError(f"{where}: {type(exc).__name__}: {exc}")

    def _request(self, inputs: dict[str, Any], ctx: CallContext) -> tuple[Any, dict[str, Any]]:
        """The method's first argument (text, file path or chat messages) and its options."""
        spec = self.spec
        options = dict(spec.options)
        wanted = {"automatic-speech-recognition": "audio"}.get(spec.task, "text")
        if spec.task in ("image-classification", "image-to-text"):
            wanted = "image"
        value = self._first(inputs, wanted)
        if value is None:
            raise UserError(f"card {self.card.name}: a {spec.task} call needs a {wanted} input")
        if wanted != "text":
            return Path(value), options
        if HF_TASKS[spec.task] != "chat_completion":
            return str(value), options
        messages = []
        system = inputs.get("system")
        if isinstance(system, str) and system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": str(value)})
        cap = spec.max_tokens if ctx.max_tokens is None else min(spec.max_tokens, ctx.max_tokens)
        options["max_tokens"] = cap
        return messages, options

    def _first(self, inputs: dict[str, Any], io_type: str) -> Any:
        for io in self.card.inputs:
            if io.type == io_type and io.name != "system" and inputs.get(io.name) not in (None, ""):
                return inputs[io.name]
        return None

    def _outputs(self, answer: Any, ctx: CallContext) -> dict[str, Any]:
        text, data = _text_and_data(self.spec.task, answer, ctx)
        result: dict[str, Any] = {}
        for io in self.card.outputs:
            if io.type == "text" and text is not None:
                result[io.name] = text
            elif io.type == "json":
                result[io.name] = data
            elif io.type in ("image", "audio"):
                result[io.name] = _saved(answer, io.type, ctx.scratch)
        return result


def _text_and_data(task: str, answer: Any, ctx: CallContext) -> tuple[str | None, Any]:
    """The answer's text (None for media) and its JSON form."""
    if task in ("text-classification", "image-classification"):
        labels = [{"label": item.label, "score": float(item.score)} for item in answer]
        return (labels[0]["label"] if labels else ""), labels
    if task == "automatic-speech-recognition":
        return answer.text, {"text": answer.text}
    if task == "image-to-text":
        return answer.generated_text, {"generated_text": answer.generated_text}
    if task == "translation":
        return answer.translation_text, {"translation_text": answer.translation_text}
    if task == "summarization":
        return answer.summary_text, {"summary_text": answer.summary_text}
    if task in ("text-generation", "chat"):
        usage = getattr(answer, "usage", None)
        if usage is not None:
            ctx.usage.input_tokens += int(usage.prompt_tokens or 0)
            ctx.usage.output_tokens += int(usage.completion_tokens or 0)
        if not answer.choices or answer.choices[0].message.content is None:
            raise ChatEndpointError("the chat model returned no text")
        reply = answer.choices[0].message.content
        return reply, {"text": reply}
    return None, None


_AUDIO_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def _saved(answer: Any, io_type: str, scratch: Path) -> str:
    """The generated image (PIL) or audio (bytes) written under ``scratch``; its path."""
    scratch.mkdir(parents=True, exist_ok=True)
    if io_type == "image":
        path = scratch / f"image-{uuid.uuid4().hex}.png"
        answer.save(path, format="PNG")
        return str(path)
    data = bytes(answer)
    suffix = next((ext for magic, ext in _AUDIO_MAGIC if data.startswith(magic)), ".mp3")
    path = scratch / f"audio-{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return str(path)


_ONLINE = threading.Lock()


@contextmanager
def online() -> Iterator[None]:
    """huggingface_hub's offline mode lifted for the duration of a hosted call.

    Workers run with ``HF_HUB_OFFLINE=1`` so that no local model downloads anything; that flag
    makes huggingface_hub refuse every request, the provider's included. A hosted card's call
    is the network use its card asked for (and the user approved), so it is let through; the
    flag is back on when the call ends. One hosted call at a time per process.
    """
    from huggingface_hub import constants

    with _ONLINE:
        was = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = was


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, HTTP 408/409/429 and 5xx get another try; a timeout does not."""
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

    if isinstance(exc, InferenceTimeoutError | TimeoutError | OfflineModeIsEnabled):
        return False
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code
        return status in RETRY_STATUS or status >= 500
    return _transport_error(exc)


def _transport_error(exc: BaseException) -> bool:
    """An error of the HTTP client's transport (refused, reset), not an HTTP answer."""
    if isinstance(exc, ConnectionError):
        return True
    return any(kind.__name__ == "TransportError" for kind in type(exc).__mro__)


def model_url(spec: HfInferenceSpec) -> str | None:
    """Where the model answers at ``base_url`` (None: the provider's own route)."""
    if not spec.base_url:
        return None
    return f"{spec.base_url.rstrip('/')}/models/{spec.model}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _not_served(spec: HfInferenceSpec) -> str:
    return (
        f"check that provider '{spec.provider}' serves {spec.model} for {spec.task} "
        f"(https://huggingface.co/{spec.model}, 'Inference Providers'), or set the card's "
        "provider to one that does, or to auto"
    )


def _no_token(spec: HfInferenceSpec) -> str:
    return (
        f"set {spec.token_env} in the environment to a Hugging Face token ({TOKENS_URL}) "
        "to call Inference Providers (or point the card's base_url at a local server)"
    )


def _token(spec: HfInferenceSpec) -> str | None:
    return os.environ.get(spec.token_env) or None


def _local(spec: HfInferenceSpec) -> bool:
    return bool(spec.base_url) and is_local_url(spec.base_url or "")


def _spec(card: ToolCard) -> HfInferenceSpec:
    if not isinstance(card.backend, HfInferenceSpec):
        raise TypeError(f"card {card.name} is not an hf-inference card")
    return card.backend
