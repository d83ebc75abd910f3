"""Cards for the tools an MCP server lists: each tool's JSON input schema mapped to card inputs.

:func:`draft_mcp_cards` takes the server (the ``backend`` fields an ``mcp`` card gives it: a stdio
``command`` or a ``url``) and its tools as listed (name, description, input schema, output schema)
and drafts one card per tool. A property of type ``string`` becomes a text input of the same
name; ``integer``, ``number`` and ``boolean`` become text inputs the backend converts (recorded
in the card's ``backend.arguments``); required properties are required inputs. What cannot be
mapped (an object, an array, a property with no type) is never dropped silently: an optional
one is left out and named in the card's limitations and in the draft's notes; a required one
means the tool gets no card, and the notes say why. A tool with an output schema gets an
optional json output beside its text output (change the text output to image or audio when the
tool returns those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.cards.card import ToolCard

__all__ = ["DraftedCard", "draft_mcp_cards"]

_CONVERTED = ("integer", "number", "boolean")
_STOP = set(
    "a an the of in to and or for with on by is it its how many has have that this from at as "
    "be are was given what which".split()
)


@dataclass
class DraftedCard:
    """One tool's card as YAML (None when the tool could not be mapped) and notes about it."""

    tool: str
    name: str
    text: str | None
    notes: list[str] = field(default_factory=list)


def _card_name(prefix: str, tool: str) -> str:
    base = re.sub(r"[^a-z0-9.-]+", "-", tool.lower()).strip("-.") or "tool"
    return f"{prefix}-{base}" if prefix else base


def _schema_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # e.g. ["string", "null"]: the optional form of one type
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and isinstance(schema.get("anyOf"), list):
        kinds = [s.get("type") for s in schema["anyOf"] if isinstance(s, dict)]
        kinds = [k for k in kinds if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else None


def _inputs(
    schema: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, str], list[str], list[str]]:
    """(card inputs, converted argument types, optional ones left out, required ones unmapped)."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    inputs: list[dict[str, Any]] = []
    converted: dict[str, str] = {}
    left_out: list[str] = []
    blocking: list[str] = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = _schema_type(prop)
        problem = None
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            problem = f"'{name}' is not a card input name (lower-case letters, digits, _)"
        elif kind not in ("string", *_CONVERTED):
            problem = f"'{name}' is of type {kind or 'unknown'}, which no card input carries"
        if problem is not None:
            (blocking if name in required else left_out).append(problem)
            continue
        entry: dict[str, Any] = {"name": name, "type": "text"}
        description = str(prop.get("description") or prop.get("title") or "").strip()
        if kind in _CONVERTED:
            converted[name] = str(kind)
            description = f"{description} ({kind})".strip()
        if description:
            entry["description"] = description
        if name not in required:
            entry["optional"] = True
        inputs.append(entry)
    return inputs, converted, left_out, blocking


def _tags(tool: str, description: str) -> list[str]:
    words = re.findall(r"[a-z][a-z0-9]+", f"{tool.replace('_', ' ')} {description}".lower())
    return list(dict.fromkeys(w for w in words if w not in _STOP and len(w) > 2))[:12]


def _draft(
    tool: dict[str, Any], server: dict[str, Any], name: str, cost: dict[str, Any]
) -> DraftedCard:
    tool_name = str(tool["name"])
    drafted = DraftedCard(tool_name, name, None)
    inputs, converted, left_out, blocking = _inputs(tool.get("input_schema") or {})
    if blocking:
        drafted.notes.append("no card: required " + "; ".join(blocking))
        return drafted
    if not any(not io.get("optional") for io in inputs) and inputs:
        inputs[0].pop("optional")  # a card needs one input the pipeline fills
    if not inputs:
        drafted.notes.append("no card: the tool takes no input a card can carry")
        return drafted
    drafted.notes += [f"left out optional {problem}" for problem in left_out]
    description = " ".join(str(tool.get("description") or "").split())
    if len(description) < 10:
        description = f"MCP tool {tool_name}. {description}".strip()
    outputs: list[dict[str, Any]] = [{"name": "result", "type": "text"}]
    if tool.get("output_schema"):
        outputs.append({"name": "structured", "type": "json", "optional": True})
    data: dict[str, Any] = {
        "name": name,
        "task": re.sub(r"[^a-z0-9]+", "-", tool_name.lower()).strip("-") or "mcp-tool",
        "description": description[:600],
        "inputs": inputs,
        "outputs": outputs,
        "backend": {"kind": "mcp", "tool": tool_name, **server},
        "cost": cost,
        "tags": ["mcp", *_tags(tool_name, description)],
    }
    if converted:
        data["backend"]["arguments"] = converted
    if left_out:
        data["limitations"] = [f"cannot pass {problem}" for problem in left_out]
    try:
        ToolCard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        drafted.notes.append(f"no card: the draft is not valid ({where}: {first['msg']})")
        return drafted
    header = (
        f"# Drafted from the MCP tool '{tool_name}'; check description, outputs (text unless "
        "the tool returns images, audio or JSON) and cost.\n"
    )
    drafted.text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return drafted


def draft_mcp_cards(
    server: dict[str, Any],
    tools: list[dict[str, Any]],
    *,
    prefix: str = "",
    usd_per_call: Decimal = Decimal(0),
    timeout_s: float = 30.0,
) -> list[DraftedCard]:
    """One drafted card per tool (see the module); ``server`` holds the backend's server fields."""
    server = {**server, "timeout_s": timeout_s}
    cost = {"usd_per_call": str(usd_per_call), "latency_s": 1.0, "load_s": 0.1}
    return [_draft(tool, server, _card_name(prefix, str(tool["name"])), cost) for tool in tools]
