"""Backend for a Python entry point: ``module:factory``, called with the card's options."""

from __future__ import annotations

from orchestrator.cards import PythonBackend, ToolCard
from orchestrator.cards.backend import Tool
from orchestrator.plugins import import_entry, locate_module

__all__ = ["PythonEntryBackend"]


class PythonEntryBackend:
    """Loads ``factory(options) -> Tool`` from an importable module."""

    spec = PythonBackend

    def unavailable_reason(self, card: ToolCard) -> str | None:
        """Why the entry module cannot be found, or None.

        It is looked for as a file, never imported here: importing runs a card's code, which
        happens only in its sandboxed worker.
        """
        spec = _spec(card)
        module_name = spec.entry.partition(":")[0]
        folder = [str(card.code_folder)] if card.code_folder else []
        if locate_module(module_name, folder) is None:
            where = f" (looked in the installed modules and {folder[0]})" if folder else ""
            return f"entry module '{module_name}' cannot be imported{where}"
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
