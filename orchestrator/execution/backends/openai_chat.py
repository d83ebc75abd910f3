"""Backend for a chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...).

The card names the model, the endpoint (``base_url``, default ``$OPENAI_BASE_URL``, else the
OpenAI API) and the environment variable that holds the API key. A server on this machine
(localhost) needs no key. The tool takes the card's first text input as the user message and
returns the reply as the card's first text output; it reports token usage in ``ctx.usage``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from orchestrator.cards import OpenAIBackend, ToolCard
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.errors import CardDefect, CardError, ChatEndpointError

__all__ = ["OpenAIChatBackend"]

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
RETRY_ATTEMPTS = 3
LOCAL_KEY = "not-needed"  # the SDK insists on some key; local servers ignore it


class OpenAIChatBackend:
    """Chat completions through the ``openai`` SDK against any OpenAI-compatible endpoint."""

    spec = OpenAIBackend

    def unavailable_reason(self, card: ToolCard) -> str | None:
        spec = _spec(card)
        if importlib.util.find_spec("openai") is None:
            return "the 'openai' package is not installed (pip install openai)"
        base_url = endpoint_url(spec)
        if not os.environ.get(spec.api_key_env) and not is_local_url(base_url):
            return (
                f"set {spec.api_key_env} in the environment to the API key of {base_url} "
                f"(or point the card's base_url at a local server)"
            )
        return None

    def load(self, card: ToolCard) -> Tool:
        spec = _spec(card)
        try:
            from openai import OpenAI
        except ImportError as exc:
            raise ImportError("the openai backend needs the 'openai' package") from exc
        base_url = endpoint_url(spec)
        api_key = os.environ.get(spec.api_key_env)
        if not api_key:
            if not is_local_url(base_url):
                raise ChatEndpointError(f"{card.name}: {self.unavailable_reason(card)}")
            api_key = LOCAL_KEY
        # Retries are ours (bounded, transport errors / 429 / 5xx only), not the SDK's.
        client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        return ChatTool(
            client=client,
            spec=spec,
            card_name=card.name,
            base_url=base_url,
            prompt_name=_first_text(card.inputs, "input", card.name),
            system_name=_optional_input(card, "system"),
            output_name=_first_text(card.outputs, "output", card.name),
        )


@dataclass
class ChatTool:
    """A loaded chat model: one user message in, the assistant's reply out."""

    client: Any
    spec: OpenAIBackend
    card_name: str
    base_url: str
    prompt_name: str
    system_name: str | None
    output_name: str

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        prompt = inputs.get(self.prompt_name)
        if not isinstance(prompt, str):
            raise TypeError(f"input '{self.prompt_name}' must be text, got {type(prompt).__name__}")
        system = inputs.get(self.system_name) if self.system_name else None
        system = system or self.spec.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        max_tokens = self.spec.max_tokens
        if ctx.max_tokens is not None:
            max_tokens = min(max_tokens, ctx.max_tokens)
        response = self._create(messages, max_tokens, ctx.timeout_s)
        if response.usage is not None:
            ctx.usage.input_tokens += response.usage.prompt_tokens or 0
            ctx.usage.output_tokens += response.usage.completion_tokens or 0
        if not response.choices:
            raise ChatEndpointError(f"{self._where()} returned no choices")
        choice = response.choices[0]
        text = choice.message.content
        if text is None:
            refusal = getattr(choice.message, "refusal", None)
            why = f"refused: {refusal}" if refusal else f"finish_reason={choice.finish_reason}"
            raise ChatEndpointError(f"{self._where()} returned no text ({why})")
        return {self.output_name: text}

    def _create(
        self, messages: list[dict[str, str]], max_tokens: int, timeout: float | None
    ) -> Any:
        import openai
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            stop_after_delay,
            wait_exponential,
        )

        stop = stop_after_attempt(RETRY_ATTEMPTS)
        if timeout is not None:
            stop = stop | stop_after_delay(timeout)
        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=0.5, max=4),  # 0.5 s, then 1 s
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        request: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.spec.temperature,
        }
        if timeout is not None:  # else the SDK's default; an explicit None would mean "never"
            request["timeout"] = timeout
        try:
            return retrying(self.client.chat.completions.create, **request)
        except openai.APITimeoutError as exc:
            raise ChatEndpointError(f"{self._where()} timed out after {timeout} s") from exc
        except openai.APIConnectionError as exc:
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            raise ChatEndpointError(f"{self._where()} is unreachable: {exc}{cause}") from exc
        except openai.APIStatusError as exc:
            raise ChatEndpointError(
                f"{self._where()} answered HTTP {exc.status_code}: {_error_message(exc)}"
            ) from exc
        except openai.OpenAIError as exc:
            raise ChatEndpointError(f"{self._where()}: {exc}") from exc

    def _where(self) -> str:
        return f"{self.card_name}: model '{self.spec.model}' at {self.base_url}"


def endpoint_url(spec: OpenAIBackend) -> str:
    """The endpoint a card talks to: its base_url, else $OPENAI_BASE_URL, else the OpenAI API."""
    return spec.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_URL


def is_local_url(url: str) -> bool:
    """True when ``url`` points at this machine (loopback), where servers need no API key."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return False  # retrying would overrun the caller's time limit
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def _error_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc.message)


def _spec(card: ToolCard) -> OpenAIBackend:
    if not isinstance(card.backend, OpenAIBackend):
        raise TypeError(f"card {card.name} is not an openai card")
    return card.backend


def _first_text(ios: list[Any], side: str, card_name: str) -> str:
    for io in ios:
        if io.type == "text" and not (side == "input" and io.optional):
            return str(io.name)
    field = "inputs" if side == "input" else "outputs"
    message = f"an openai chat card needs a (required) text {side}, e.g. prompt -> text"
    raise CardError([CardDefect(None, f"{card_name}.{field}", message)])


def _optional_input(card: ToolCard, name: str) -> str | None:
    return next((io.name for io in card.inputs if io.name == name and io.type == "text"), None)
