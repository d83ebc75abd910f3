"""The one small interface every model backend implements."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.cards import ToolCard
from orchestrator.plugins import locate_module

__all__ = ["Backend", "CallContext", "Tool", "Usage", "missing_packages", "resolve_model_path"]


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


def resolve_model_path(spec: str) -> str:
    """Resolve ``pkg://module/relative/path`` to a file inside an installed package.

    Any other spec (a hub id or a local path) is returned unchanged.
    """
    if not spec.startswith("pkg://"):
        return spec
    module, _, relative = spec[len("pkg://") :].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package '{module}' is not installed (needed for {spec})")
    # Found without importing it: some weight packages import heavy or absent extras.
    root = Path(next(iter(found.submodule_search_locations)))
    return str(root / relative) if relative else str(root)
