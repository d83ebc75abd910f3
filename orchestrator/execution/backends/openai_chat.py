"""Backend for a chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...).

The card names the model, the endpoint (``base_url``, default ``$OPENAI_BASE_URL``, else the
OpenAI API) and the environment variable that holds the API key. A server on this machine
(localhost) needs no key. The tool takes the card's first text input as the user message and
returns the reply as the card's first text output; it reports token usage in ``ctx.usage``.
When the caller streams (``ctx.on_text``), the completion is asked for with ``stream=True`` and
each content delta is handed on as it comes; the text output is the deltas joined.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from orchestrator.cards import OpenAIBackend, ToolCard
from orchestrator.cards.backend import CallContext, Tool
from orchestrator.config import openai_base_url
from orchestrator.errors import CardDefect, CardError, ChatEndpointError
from orchestrator.llm import LlmClient, is_local_url

__all__ = ["OpenAIChatBackend", "endpoint_url", "is_local_url"]


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
        if importlib.util.find_spec("openai") is None:
            raise ImportError("the openai backend needs the 'openai' package")
        llm = LlmClient.from_section(spec, caller=card.name, base_url=endpoint_url(spec))
        return ChatTool(
            llm=llm,
            spec=spec,
            prompt_name=_first_text(card.inputs, "input", card.name),
            system_name=_optional_input(card, "system"),
            output_name=_first_text(card.outputs, "output", card.name),
        )


@dataclass
class ChatTool:
    """A loaded chat model: one user message in, the assistant's reply out."""

    llm: LlmClient
    spec: OpenAIBackend
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
        if ctx.on_text is not None:
            return {self.output_name: self._streamed(messages, max_tokens, ctx)}
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
        """One completion through the project's LLM client (its retries, its error mapping)."""
        return self.llm.create(
            messages, max_tokens=max_tokens, timeout_s=timeout, temperature=self.spec.temperature
        )

    def _streamed(self, messages: list[dict[str, str]], max_tokens: int, ctx: CallContext) -> str:
        """The reply streamed to ``ctx.on_text`` (see :meth:`LlmClient.stream`)."""
        assert ctx.on_text is not None
        reply = self.llm.stream(
            messages,
            max_tokens=max_tokens,
            on_text=ctx.on_text,
            timeout_s=ctx.timeout_s,
            temperature=self.spec.temperature,
        )
        ctx.usage.input_tokens += reply.prompt_tokens
        ctx.usage.output_tokens += reply.completion_tokens
        if not reply.text and reply.finish_reason not in ("stop", "length"):
            why = f"finish_reason={reply.finish_reason}"
            raise ChatEndpointError(f"{self._where()} returned no text ({why})")
        return reply.text

    def _where(self) -> str:
        return self.llm.where


def endpoint_url(spec: OpenAIBackend) -> str:
    """The endpoint a card talks to: its base_url, else $OPENAI_BASE_URL, else the OpenAI API."""
    return openai_base_url(spec.base_url)


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
