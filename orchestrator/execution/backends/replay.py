"""Backend ``replay``: a model's recorded answer to a prompt, billed at its recorded cost.

Used to evaluate routing on logged benchmark runs (RouterBench): a call looks the prompt up in
the card's ``records`` file and returns that model's response as ``text`` and the recorded
price as ``billed_usd`` (the ledger settles what the provider billed). A prompt with no record
fails the call. Records files are read once per process and shared by every card that names
them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cards import ReplayBackend as ReplaySpec
from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext, Tool

__all__ = ["ReplayBackend", "ReplayTool", "prompt_digest", "read_records"]

_CACHE: dict[str, dict[str, dict[str, tuple[str, float]]]] = {}
_LOCK = threading.Lock()


def prompt_digest(prompt: str) -> str:
    """The key a prompt is looked up by (its text, stripped)."""
    return hashlib.sha256(prompt.strip().encode("utf-8")).hexdigest()


def read_records(path: str | Path) -> dict[str, dict[str, tuple[str, float]]]:
    """``{model: {prompt digest: (response, usd)}}`` from a records file (cached per path)."""
    key = str(Path(path).resolve())
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(Path(key))
        return _CACHE[key]


def _load(path: Path) -> dict[str, dict[str, tuple[str, float]]]:
    table: dict[str, dict[str, tuple[str, float]]] = {}
    if path.suffix == ".csv":
        csv.field_size_limit(sys.maxsize)
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                digest = prompt_digest(row["prompt"])
                for column, value in row.items():
                    if not column.endswith("|model_response"):
                        continue
                    model = column[: -len("|model_response")]
                    cost = row.get(f"{model}|total_cost", "")
                    if value and cost:
                        table.setdefault(model, {})[digest] = (value, float(cost))
        return table
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                table.setdefault(item["model"], {})[prompt_digest(item["prompt"])] = (
                    str(item["response"]),
                    float(item["usd"]),
                )
    return table


@dataclass
class ReplayTool:
    """Answers a prompt with the recorded response of one model."""

    model: str
    records: dict[str, tuple[str, float]]

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        prompt = str(next(iter(inputs.values()), ""))
        found = self.records.get(prompt_digest(prompt))
        if found is None:
            raise LookupError(f"no recorded answer of {self.model} for this prompt")
        response, usd = found
        ctx.usage.input_tokens += len(prompt.split())
        ctx.usage.output_tokens += len(response.split())
        return {"text": response, "billed_usd": usd}


class ReplayBackend:
    """Loads a :class:`ReplayTool` from the card's records file."""

    spec = ReplaySpec

    def unavailable_reason(self, card: ToolCard) -> str | None:
        spec = _spec(card)
        if not Path(spec.records).is_file():
            return f"records file {spec.records} not found"
        return None

    def load(self, card: ToolCard) -> Tool:
        spec = _spec(card)
        table = read_records(spec.records)
        if spec.model not in table:
            known = ", ".join(sorted(table)) or "none"
            raise LookupError(f"{spec.records} has no answers of '{spec.model}'; it has: {known}")
        return ReplayTool(spec.model, table[spec.model])


def _spec(card: ToolCard) -> ReplaySpec:
    if not isinstance(card.backend, ReplaySpec):
        raise TypeError(f"card {card.name} is not a replay card")
    return card.backend
