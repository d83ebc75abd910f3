"""Model backends: one small interface (:class:`Backend`), one module per backend kind.

The registry is explicit and the built-in backends use it too. Each backend module imports its
heavy library (transformers, diffusers, openai) lazily, inside ``load``.
"""

from __future__ import annotations

from orchestrator.cards import ToolCard
from orchestrator.execution.backends._base import (
    Backend,
    CallContext,
    Tool,
    Usage,
    missing_packages,
    resolve_model_path,
)
from orchestrator.plugins import import_entry

__all__ = [
    "Backend",
    "CallContext",
    "Tool",
    "UnknownBackend",
    "Usage",
    "get_backend",
    "load_tool",
    "missing_packages",
    "register_backend",
    "resolve_model_path",
    "unavailable_reason",
]

_REGISTRY: dict[str, Backend | str] = {
    "transformers": (
        "orchestrator.execution.backends.transformers_pipeline:TransformersPipelineBackend"
    ),
    "diffusers": "orchestrator.execution.backends.diffusers_pipeline:DiffusersPipelineBackend",
    "openai": "orchestrator.execution.backends.openai_chat:OpenAIChatBackend",
    "python": "orchestrator.execution.backends.python_entry:PythonEntryBackend",
    "replay": "orchestrator.execution.backends.replay:ReplayBackend",
}


class UnknownBackend(KeyError):
    """No backend is registered under this kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown backend kind '{kind}'; known: {', '.join(sorted(_REGISTRY))}")


def register_backend(kind: str, backend: Backend | str) -> None:
    """Register a backend instance, or a lazy ``module:Class`` reference, under ``kind``."""
    _REGISTRY[kind] = backend


def get_backend(kind: str) -> Backend:
    """The backend registered under ``kind``, imported on first use."""
    try:
        entry = _REGISTRY[kind]
    except KeyError:
        raise UnknownBackend(kind) from None
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
