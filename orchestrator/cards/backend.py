"""The one small interface every model backend implements, and the registry of backend kinds.

A card's ``backend.kind`` names a registered :class:`Backend`: it says whether the card's model
can run here (:func:`unavailable_reason`, used by the zoo) and loads it (:func:`load_tool`, in a
worker). The built-in backends live in :mod:`orchestrator.execution.backends`, one module per
kind, and are registered here by ``module:Class`` reference, imported on first use; other
packages register theirs the same way (:func:`register_backend`). Each backend module imports
its heavy library (transformers, diffusers, openai) lazily, inside ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.cards.card import ToolCard
from orchestrator.errors import UnknownBackend
from orchestrator.plugins import import_entry, locate_module

__all__ = [
    "Backend",
    "CallContext",
    "Tool",
    "Usage",
    "get_backend",
    "load_tool",
    "missing_packages",
    "register_backend",
    "unavailable_reason",
]


@dataclass
class Usage:
    """Tokens a call consumed, reported by backends that count them."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class CallContext:
    """What a tool gets besides its inputs.

    ``scratch`` is the only folder a tool writes to: audio and image outputs are files there.
    ``max_tokens`` caps generation (derived from the budget); ``usage`` is filled by the tool.
    """

    scratch: Path
    max_tokens: int | None = None
    timeout_s: float | None = None
    usage: Usage = field(default_factory=Usage)


class Tool(Protocol):
    """A loaded model. Inputs and outputs are keyed by the card's IO names.

    Values by type: text -> ``str``; audio, image -> path of a file (``str``);
    json -> any JSON value.
    """

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]: ...


class Backend(Protocol):
    """How to check and load the models of one backend kind."""

    def unavailable_reason(self, card: ToolCard) -> str | None:
        """Why this card cannot run on this machine now, or None when it can."""
        ...

    def load(self, card: ToolCard) -> Tool:
        """Load the model (in the worker process) and return it ready to call."""
        ...


def missing_packages(card: ToolCard) -> list[str]:
    """Modules the card requires that its worker could not import (found, never imported)."""
    folder = [str(card.code_folder)] if card.code_folder else []
    return [name for name in card.requires.packages if locate_module(name, folder) is None]


_REGISTRY: dict[str, Backend | str] = {
    "transformers": (
        "orchestrator.execution.backends.transformers_pipeline:TransformersPipelineBackend"
    ),
    "diffusers": "orchestrator.execution.backends.diffusers_pipeline:DiffusersPipelineBackend",
    "openai": "orchestrator.execution.backends.openai_chat:OpenAIChatBackend",
    "python": "orchestrator.execution.backends.python_entry:PythonEntryBackend",
    "replay": "orchestrator.execution.backends.replay:ReplayBackend",
}


def register_backend(kind: str, backend: Backend | str) -> None:
    """Register a backend instance, or a lazy ``module:Class`` reference, under ``kind``."""
    _REGISTRY[kind] = backend


def get_backend(kind: str) -> Backend:
    """The backend registered under ``kind``, imported on first use."""
    try:
        entry = _REGISTRY[kind]
    except KeyError:
        raise UnknownBackend(kind, _REGISTRY) from None
    if isinstance(entry, str):
        entry = _REGISTRY[kind] = import_entry(entry)()
    return entry


def unavailable_reason(card: ToolCard) -> str | None:
    """Why ``card`` cannot run here now (missing package, weights, endpoint), or None."""
    missing = missing_packages(card)
    if missing:
        return f"missing Python packages: {', '.join(missing)} (pip install them)"
    return get_backend(card.backend.kind).unavailable_reason(card)


def load_tool(card: ToolCard) -> Tool:
    """Load the model of ``card`` and return it ready to call."""
    return get_backend(card.backend.kind).load(card)
