"""Input checks and output file names shared by the built-in tools."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from orchestrator.cards.backend import CallContext

__all__ = ["file_input", "scratch_file", "text_input"]


def text_input(inputs: dict[str, Any], name: str = "text") -> str:
    """The text input ``name``; raise ValueError when it is missing, not text, or blank."""
    value = inputs.get(name)
    if not isinstance(value, str):
        raise ValueError(f"input '{name}' must be text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"input '{name}' is empty")
    return value


def file_input(inputs: dict[str, Any], name: str) -> Path:
    """The file named by input ``name`` (an image or audio path); it must exist."""
    value = inputs.get(name)
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError(f"input '{name}' must be the path of a file, got {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"input '{name}': no such file: {path}")
    return path


def scratch_file(ctx: CallContext, stem: str, suffix: str) -> Path:
    """A new, unique file path under ``ctx.scratch`` (the only folder a tool writes to)."""
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    return ctx.scratch / f"{stem}-{uuid.uuid4().hex[:12]}{suffix}"
