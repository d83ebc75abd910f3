"""The one small interface every model backend implements, and the registry of backend kinds.

A card's ``backend.kind`` names a registered :class:`Backend`: it says whether the card's model
can run here (:func:`unavailable_reason`, used by the zoo) and loads it (:func:`load_tool`, in a
worker). The built-in backends live in :mod:`orchestrator.execution.backends`, one module per
kind, and are registered in :data:`BACKENDS` by ``module:Class`` reference, imported on first
use; other packages add theirs the same way, by :func:`register_backend` or by an entry point in
the ``orchestrator.backends`` group. Each backend declares the pydantic ``spec`` of its cards'
``backend`` field, which card validation looks up by ``kind``. Each backend module imports its
heavy library (transformers, diffusers, openai) lazily, inside ``load``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from orchestrator.cards.card import ToolCard
from orchestrator.errors import PluginError, UnknownBackend
from orchestrator.plugins import Registry, locate_module

__all__ = [
    "BACKENDS",
    "Backend",
    "CallContext",
    "Tool",
    "Usage",
    "backend_kinds",
    "backend_spec",
    "get_backend",
    "load_tool",
    "missing_packages",
    "pull_hint",
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
    ``on_text``, when set, asks a tool that generates text to stream it: the tool calls it with
    each piece as it is made, and the pieces joined are exactly its text output. A tool that
    cannot stream ignores it.
    """

    scratch: Path
    max_tokens: int | None = None
    timeout_s: float | None = None
    usage: Usage = field(default_factory=Usage)
    on_text: Callable[[str], None] | None = None


class Tool(Protocol):
    """A loaded model. Inputs and outputs are keyed by the card's IO names.

    Values by type: text -> ``str``; audio, image -> path of a file (``str``);
    json -> any JSON value.
    """

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]: ...


class Backend(Protocol):
    """How to check and load the models of one backend kind.

    ``spec`` is the pydantic model of a card's ``backend`` field for this kind: its ``kind``
    field is ``Literal["<the kind>"]`` and ``load`` receives cards whose backend is one.
    """

    spec: ClassVar[type[BaseModel]]

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


def _instance(found: Any) -> Backend:
    """A registered backend class is instantiated once; an instance is kept as it is."""
    backend: Backend = found() if isinstance(found, type) else found
    return backend


BACKENDS: Registry[Backend] = Registry(
    "orchestrator.backends",
    UnknownBackend,
    {
        "transformers": (
            "orchestrator.execution.backends.transformers_pipeline:TransformersPipelineBackend"
        ),
        "diffusers": "orchestrator.execution.backends.diffusers_pipeline:DiffusersPipelineBackend",
        "openai": "orchestrator.execution.backends.openai_chat:OpenAIChatBackend",
        "python": "orchestrator.execution.backends.python_entry:PythonEntryBackend",
        "replay": "orchestrator.execution.backends.replay:ReplayBackend",
        "mcp": "orchestrator.execution.backends.mcp_client:McpToolBackend",
        "hf-inference": "orchestrator.execution.backends.hf_inference:HfInferenceBackend",
    },
    finish=_instance,
)
"""The backend kinds, built-in and from installed packages (group ``orchestrator.backends``)."""


def register_backend(kind: str, backend: Backend | type | str) -> None:
    """Register a backend (instance, class, or lazy ``module:Class`` reference) under ``kind``."""
    BACKENDS.register(kind, backend)  # type: ignore[arg-type]  # a class is instantiated on get


def get_backend(kind: str) -> Backend:
    """The backend registered under ``kind``, imported on first use."""
    return BACKENDS.get(kind)


def backend_kinds() -> list[str]:
    """Every backend kind a card may name, sorted."""
    return BACKENDS.names()


def backend_spec(kind: str) -> type[BaseModel]:
    """The pydantic spec a card's ``backend`` of this ``kind`` is validated by."""
    backend = get_backend(kind)
    spec = getattr(backend, "spec", None)
    if not (isinstance(spec, type) and issubclass(spec, BaseModel)):
        where = f"{type(backend).__module__}.{type(backend).__qualname__}"
        raise PluginError(
            f"backend kind '{kind}' ({where}) declares no pydantic spec: give its class a "
            "'spec' attribute, the pydantic model of its cards' backend field"
        )
    return spec


def unavailable_reason(card: ToolCard) -> str | None:
    """Why ``card`` cannot run here now (missing package, weights, endpoint), or None."""
    missing = missing_packages(card)
    if missing:
        return f"missing Python packages: {', '.join(missing)} (pip install them)"
    return get_backend(card.backend.kind).unavailable_reason(card)


def pull_hint(name: str) -> str:
    """The one command that downloads the weights of a card (by card name or hub id)."""
    return f"orchestrator pull {name}"


def load_tool(card: ToolCard) -> Tool:
    """Load the model of ``card`` and return it ready to call."""
    return get_backend(card.backend.kind).load(card)
