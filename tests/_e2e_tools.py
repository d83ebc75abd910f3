"""Tools for the end-to-end tests, loaded in worker processes by python-entry cards."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext


def load_broken(options: dict[str, Any]) -> Any:
    """A tool that always raises, like a model whose runtime breaks on every input."""

    def tool(inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        raise RuntimeError(options.get("message", "model exploded"))

    return tool
