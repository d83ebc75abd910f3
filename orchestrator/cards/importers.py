"""Importers: other people's model lists turned into tool cards.

- Gorilla APIBench API records (``api.jsonl``: domain, functionality, api_name, description, ...)
  become :class:`ToolCard` objects in memory (:func:`cards_from_gorilla`).
- A Hugging Face model card (README.md with YAML front matter), read with huggingface_hub's
  ``ModelCard`` from a local file or the local hub cache, becomes a drafted card YAML
  (:func:`draft_from_readme`, :func:`draft_from_hub`), offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.cards import ToolCard, yaml_problem
from orchestrator.cards.backend import pull_hint
from orchestrator.errors import UserError

__all__ = [
    "ImportedCard",
    "cards_from_gorilla",
    "draft_from_hub",
    "draft_from_readme",
    "read_gorilla",
    "slug",
    "task_from_domain",
]

# Gorilla domains are "<area> <pipeline task>"; the area is dropped to get the task.
_AREAS = ("Natural Language Processing", "Computer Vision", "Multimodal", "Audio", "Tabular")

# Pipeline task -> (input types, output types). Unlisted tasks read and write text.
_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "automatic-speech-recognition": (("audio",), ("text",)),
    "audio-classification": (("audio",), ("json",)),
    "voice-activity-detection": (("audio",), ("json",)),
    "audio-to-audio": (("audio",), ("audio",)),
    "text-to-speech": (("text",), ("audio",)),
    "text-to-audio": (("text",), ("audio",)),
    "image-classification": (("image",), ("json",)),
    "zero-shot-image-classification": (("image", "text"), ("json",)),
    "object-detection": (("image",), ("json",)),
    "image-segmentation": (("image",), ("image",)),
    "depth-estimation": (("image",), ("image",)),
    "image-to-image": (("image",), ("image",)),
    "image-to-text": (("image",), ("text",)),
    "video-classification": (("image",), ("json",)),
    "visual-question-answering": (("image", "text"), ("text",)),
    "document-question-answer": (("image", "text"), ("text",)),
    "document-question-answering": (("image", "text"), ("text",)),
    "text-to-image": (("text",), ("image",)),
    "text-to-video": (("text",), ("image",)),
    "unconditional-image-generation": (("text",), ("image",)),
    "feature-extraction": (("text",), ("json",)),
    "sentence-similarity": (("text",), ("json",)),
    "token-classification": (("text",), ("json",)),
    "text-classification": (("text",), ("json",)),
    "zero-shot-classification": (("text",), ("json",)),
    "table-question-answering": (("text",), ("text",)),
    "tabular-classification": (("text",), ("json",)),
    "tabular-regression": (("text",), ("json",)),
}


def slug(text: str) -> str:
    """A card-name-safe form of ``text``: 'Org/Model_X' -> 'org--model_x'."""
    lowered = text.strip().lower().replace("/", "--")
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", lowered).strip("-._")
    return cleaned or "model"


def task_from_domain(domain: str) -> str:
    """'Natural Language Processing Sentence Similarity' -> 'sentence-similarity'."""
    rest = domain.strip()
    for area in _AREAS:
        if rest.startswith(area + " "):
            rest = rest[len(area) + 1 :]
            break
    return re.sub(r"[^a-z0-9]+", "-", rest.lower()).strip("-") or "other"


def _io(task: str, kind: str) -> list[dict[str, str]]:
    inputs, outputs = _IO.get(task, (("text",), ("text",)))
    types = inputs if kind == "in" else outputs
    prefix = "input" if kind == "in" else "output"
    return [{"name": f"{prefix}_{t}", "type": t} for t in types]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "" if value.strip().upper() == "N/A" else value.strip()
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value if _text(v))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items() if _text(v))
    return str(value)


@dataclass(frozen=True)
class ImportedCard:
    """A card built from someone else's record, and the record's own id (e.g. the api_name)."""

    card: ToolCard
    source_id: str
    domain: str


def read_gorilla(path: Path) -> list[dict[str, Any]]:
    """The records of a Gorilla ``api.jsonl`` file; a malformed line raises UserError."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not a JSON object ({exc.msg})") from exc
        if not isinstance(record, dict) or "api_name" not in record or "domain" not in record:
            raise UserError(f"{path}:{number}: an API record needs 'api_name' and 'domain'")
        records.append(record)
    return records


def _gorilla_card(record: dict[str, Any], name: str) -> ToolCard:
    domain = _text(record.get("domain"))
    task = task_from_domain(domain)
    api_name = _text(record.get("api_name"))
    functionality = _text(record.get("functionality"))
    description = _text(record.get("description"))
    if len(description) < 10:
        description = f"{functionality or domain} model {api_name}".strip()
    performance = record.get("performance") or {}
    dataset = _text(performance.get("dataset")) if isinstance(performance, dict) else ""
    tags = [t for t in (domain, functionality, dataset) if t]
    data = {
        "name": name,
        "task": task,
        "description": description,
        "inputs": _io(task, "in"),
        "outputs": _io(task, "out"),
        "backend": {"kind": "transformers", "task": task, "model": api_name},
        "tags": tags,
    }
    return ToolCard.model_validate(data)


def cards_from_gorilla(records: Iterable[dict[str, Any]]) -> list[ImportedCard]:
    """Tool cards for Gorilla API records; repeated api_names get '-2', '-3' name suffixes."""
    out: list[ImportedCard] = []
    seen: dict[str, int] = {}
    for record in records:
        base = slug(_text(record.get("api_name")))
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        card = _gorilla_card(record, name)
        out.append(ImportedCard(card, _text(record.get("api_name")), _text(record.get("domain"))))
    return out


def _first_paragraph(markdown: str) -> str:
    for block in re.split(r"\n\s*\n", markdown):
        text = block.strip()
        if text and not text.startswith(("#", "|", "```", "<", "!", "-", "*")):
            return " ".join(text.split())
    return ""


def _model_name(meta: dict[str, Any]) -> str | None:
    """The model id a model card's front matter gives (``model_name`` or ``model-index``)."""
    name = meta.get("model_name")
    if not name:
        index = meta.get("model-index") or meta.get("model_index")
        if isinstance(index, list) and index and isinstance(index[0], dict):
            name = index[0].get("name")
    return str(name).strip() if isinstance(name, str | int) and str(name).strip() else None


def draft_from_readme(path: Path, model_id: str | None = None) -> str:
    """A drafted card YAML from a model card README.md (its front matter and first paragraph)."""
    from huggingface_hub import ModelCard

    if not path.is_file():
        raise UserError(f"no model card at {path}")
    try:
        card = ModelCard.load(path)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: the front matter is {yaml_problem(exc)}; fix it") from exc
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a model card README ({exc})") from exc
    meta = card.data.to_dict()
    task = meta.get("pipeline_tag")
    if not task:
        raise UserError(
            f"{path}: the front matter has no 'pipeline_tag'; add one (e.g. text-classification)"
        )
    model = model_id or _model_name(meta)
    if not model:
        raise UserError(
            f"{path}: the model card names no model id (no 'model_name' in its front matter); "
            "pass it: orchestrator cards new --from-readme PATH --model-id ORG/NAME"
        )
    description = _first_paragraph(card.text)
    if len(description) < 10:
        description = f"{task.replace('-', ' ')} model {model}. {description}".strip()
    tags = [str(t) for t in meta.get("tags") or []]
    if meta.get("license"):
        tags.append(f"license:{meta['license']}")
    languages = meta.get("language") or []
    languages = [languages] if isinstance(languages, str) else list(languages)
    draft: dict[str, Any] = {
        "name": slug(model),
        "task": task,
        "description": description[:600],
        "inputs": _io(task, "in"),
        "outputs": _io(task, "out"),
        "backend": {"kind": "transformers", "task": task, "model": model},
        "requires": {"packages": ["transformers", "torch"]},
        "languages": [str(x) for x in languages if len(str(x)) == 2],
        "tags": tags,
    }
    try:
        ToolCard.model_validate(draft)  # the draft must load as it is
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{path}: the drafted card is not valid ({where}: {first['msg']})") from exc
    header = f"# Drafted from the model card of {model}; check description, inputs and cost.\n"
    return header + yaml.safe_dump(draft, sort_keys=False, allow_unicode=True, width=100)


def draft_from_hub(model_id: str, cache_dir: Path | None = None) -> str:
    """A drafted card YAML from the README of ``model_id`` in the local hub cache (offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        readme = hf_hub_download(model_id, "README.md", local_files_only=True, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        raise UserError(
            f"the model card of {model_id} is not in the local hub cache; download it: "
            f"{pull_hint(model_id)} (or use --from-readme PATH)"
        ) from exc
    return draft_from_readme(Path(readme), model_id)
