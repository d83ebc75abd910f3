"""Backend for a Python entry point: ``module:factory``, called with the card's options."""

from __future__ import annotations

import importlib.util

from orchestrator._lazy import import_entry
from orchestrator.backends._base import Tool
from orchestrator.cards import PythonBackend, ToolCard

__all__ = ["PythonEntryBackend"]


class PythonEntryBackend:
    """Loads ``factory(options) -> Tool`` from an importable module."""

    def unavailable_reason(self, card: ToolCard) -> str | None:
        spec = _spec(card)
        module_name = spec.entry.partition(":")[0]
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return f"entry module '{module_name}' cannot be imported"
        return None

    def load(self, card: ToolCard) -> Tool:
        spec = _spec(card)
        factory = import_entry(spec.entry)
        if not callable(factory):
            raise TypeError(
                f"entry {spec.entry} is a {type(factory).__name__}, not a factory function"
            )
        tool: Tool = factory(dict(spec.options))
        if not callable(tool):
            raise TypeError(
                f"{spec.entry} returned {_shown(tool)}, not a callable; the factory must return "
                "a function (inputs, ctx) -> outputs"
            )
        return tool


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _spec(card: ToolCard) -> PythonBackend:
    if not isinstance(card.backend, PythonBackend):
        raise TypeError(f"card {card.name} is not a python card")
    return card.backend
