"""Answer: render each step's outputs as text and aggregate them into the final answer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.tasks import task_type

__all__ = ["StepResult", "compose_answer", "render_output", "render_value"]

_MAX_JSON_CHARS = 400


@dataclass(frozen=True)
class StepResult:
    """The accepted outputs of one step and the card that made them."""

    step: str
    instruction: str
    card: ToolCard
    outputs: dict[str, Any]

    @property
    def label(self) -> str:
        return self.card.result_label or task_type(self.card.task).label


def render_value(io_type: str, value: Any) -> str:
    """A short human reading of one value of the given IO type."""
    if io_type == "text":
        return str(value).strip()
    if io_type in ("audio", "image"):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "; ".join(_render_record(v) for v in value[:5])
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_JSON_CHARS else text[: _MAX_JSON_CHARS - 3] + "..."


def _render_record(record: dict[str, Any]) -> str:
    parts = []
    for key, value in record.items():
        if isinstance(value, float):
            value = round(value, 3)
        elif isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} values]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def render_output(result: StepResult) -> str:
    """The reading of a step's primary output (the card's first output)."""
    primary = result.card.primary_output()
    if primary.name not in result.outputs:
        return ""
    return render_value(primary.type, result.outputs[primary.name])


def compose_answer(results: Iterable[StepResult], *, spoken: bool = False) -> str:
    """One sentence per step result: 'Transcript: ... Language: French.'.

    ``spoken`` leaves out file paths (for a text that will be read aloud).
    """
    sentences = []
    for result in results:
        primary = result.card.primary_output()
        if spoken and primary.type in ("audio", "image"):
            continue
        text = render_output(result)
        if primary.type in ("audio", "image"):
            text = Path(text).name
        sentence = f"{result.label}: {text}"
        sentences.append(sentence if sentence.endswith((".", "!", "?")) else sentence + ".")
    return " ".join(sentences)
