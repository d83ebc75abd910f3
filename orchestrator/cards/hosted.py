"""Drafting a card for a model hosted by a Hugging Face Inference Provider (``hf-inference`` kind).

:func:`draft_for_provider` asks the Hub API (``HfApi.model_info``, which honours
``HF_ENDPOINT``) for the model's ``pipeline_tag`` and writes a card YAML calling the model
through that provider: the task's typed inputs and outputs, a price per call to fill in, the
token variable and the network the card needs.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.cards.card import ToolCard
from orchestrator.cards.importers import slug
from orchestrator.errors import UserError

__all__ = ["HOSTED_IO", "draft_for_provider"]

_TEXT_IN = [{"name": "text", "type": "text", "description": "the text to work on"}]
_LABELS = [
    {"name": "label", "type": "text", "description": "the most likely label"},
    {"name": "scores", "type": "json", "description": "every label with its score"},
]

HOSTED_IO: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    "text-classification": (_TEXT_IN, _LABELS),
    "image-classification": (
        [{"name": "image", "type": "image", "description": "the picture to classify"}],
        _LABELS,
    ),
    "automatic-speech-recognition": (
        [{"name": "audio", "type": "audio", "description": "the recording to transcribe"}],
        [{"name": "text", "type": "text", "description": "the transcript"}],
    ),
    "image-to-text": (
        [{"name": "image", "type": "image", "description": "the picture to describe"}],
        [{"name": "text", "type": "text", "description": "what the picture shows"}],
    ),
    "text-to-image": (
        [{"name": "prompt", "type": "text", "description": "what to draw"}],
        [{"name": "image", "type": "image", "description": "the generated picture (PNG)"}],
    ),
    "text-to-speech": (
        [{"name": "text", "type": "text", "description": "the text to say"}],
        [{"name": "audio", "type": "audio", "description": "the spoken text"}],
    ),
    "translation": (_TEXT_IN, [{"name": "text", "type": "text", "description": "translation"}]),
    "summarization": (_TEXT_IN, [{"name": "summary", "type": "text", "description": "summary"}]),
    "text-generation": (
        [
            {"name": "prompt", "type": "text", "description": "the instruction or question"},
            {"name": "system", "type": "text", "optional": True, "description": "system message"},
        ],
        [{"name": "text", "type": "text", "description": "the model's reply"}],
    ),
}
"""The typed inputs and outputs of a drafted hosted card, by task (the Hub's pipeline tags)."""

# Pipeline tags of chat models that answer through chat completion.
_CHAT_TAGS = ("text-generation", "image-text-to-text", "conversational")


def draft_for_provider(model_id: str, provider: str, *, token_env: str = "HF_TOKEN") -> str:
    """A drafted card YAML calling ``model_id`` through Inference Provider ``provider``.

    Raises UserError when the Hub does not know the model, gives it no pipeline tag, or tags
    it with a task hosted cards do not cover.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(model_id)
    except RepositoryNotFoundError as exc:
        raise UserError(
            f"the Hub knows no model '{model_id}' (or it is private: set HF_TOKEN); check the id"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"cannot ask the Hub about {model_id}: {exc}") from exc
    tag = info.pipeline_tag
    if not tag:
        raise UserError(
            f"the Hub gives {model_id} no pipeline_tag, so its task is unknown; write the card "
            "by hand (see the hf-inference card example in README.md)"
        )
    task = "text-generation" if tag in _CHAT_TAGS else tag
    if task not in HOSTED_IO:
        raise UserError(
            f"{model_id} is a {tag} model; hf-inference cards cover {', '.join(sorted(HOSTED_IO))}"
        )
    inputs, outputs = HOSTED_IO[task]
    name = slug(f"{model_id}-{provider}")
    what = task.replace("-", " ")
    draft: dict[str, Any] = {
        "name": name,
        "task": task,
        "description": f"{what} with {model_id}, hosted by the Inference Provider {provider}",
        "inputs": inputs,
        "outputs": outputs,
        "backend": {
            "kind": "hf-inference",
            "task": task,
            "model": model_id,
            "provider": provider,
            "token_env": token_env,
            "timeout_s": 60,
        },
        "cost": {"usd_per_call": "0", "latency_s": 2.0, "load_s": 0.1, "memory_mb": 64},
        "requires": {"packages": ["huggingface_hub"], "network": True},
        "tags": [*(str(t) for t in (info.tags or [])[:12]), "hosted", "cloud"],
        "limitations": [f"needs network access and a Hugging Face token in ${token_env}"],
    }
    try:
        ToolCard.model_validate(draft)  # the draft must load as it is
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(
            f"the drafted card for {model_id} is not valid ({where}: {first['msg']})"
        ) from exc
    header = (
        f"# Drafted for {model_id} on Inference Provider {provider}; fill in cost.usd_per_call "
        "(the provider's price of one call) and check the description.\n"
    )
    return header + yaml.safe_dump(draft, sort_keys=False, allow_unicode=True, width=100)
