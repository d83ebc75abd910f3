"""What ``orchestrator mcp`` offers, without the protocol: its tools, resources and calls.

:class:`McpService` runs the ``run`` tool on one shared orchestrator (as ``orchestrator run``
does) and a card tool on that card alone (a one-card zoo planned by :class:`CardPlanner`, sharing
the sandboxed workers), and turns results into MCP content. :mod:`orchestrator.server.mcp`
serves it. Calls block: the server runs them in threads.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget
from orchestrator.cards import ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.config import Config
from orchestrator.errors import InvalidBudget, UserError
from orchestrator.file_kinds import sniff
from orchestrator.plan import FileArg, Plan, Subtask, TextArg

__all__ = [
    "CardPlanner",
    "McpService",
    "ToolRefused",
    "card_input_schema",
    "card_text",
    "fed_inputs",
    "run_budget",
]

log = logging.getLogger("orchestrator.server")

RUN_TOOL = "run"
CARD_SCHEME = "card://"
FED_TYPES = ("text", "image", "audio")  # input types a tool argument can carry
OK_STATUSES = ("ok", "partial")

RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "what you want done, in plain words"},
        "files": {
            "type": "array",
            "items": {"type": "string"},
            "description": "paths of files on the server's machine to attach (images, audio, text)",
        },
        "budget_usd": {
            "type": ["number", "string"],
            "description": "money limit in US dollars, e.g. 0.05 (default: the server's)",
        },
        "max_seconds": {"type": "number", "minimum": 0, "description": "wall-clock limit"},
        "max_calls": {"type": "integer", "minimum": 0, "description": "limit on model calls"},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}


class ToolRefused(UserError):
    """A tool call the server refuses before running anything: the message says what to fix."""


# --- card tools -----------------------------------------------------------------------------------


def fed_inputs(card: ToolCard) -> list[Any]:
    """The card inputs a step fills: the first input of each type (text, image, audio).

    The pipeline hands a step one value per type, to the first input of that type (see
    :mod:`orchestrator.pipeline.step`), so those are the card tool's arguments.
    """
    seen: set[str] = set()
    fed = []
    for io in card.inputs:
        if io.type in seen:
            continue
        seen.add(io.type)
        if io.type in FED_TYPES:
            fed.append(io)
    return fed


def _unfed_required(card: ToolCard) -> list[str]:
    fed = {io.name for io in fed_inputs(card)}
    seen: set[str] = set()
    missing = []
    for io in card.inputs:
        if not io.optional and io.name not in fed and io.type not in seen:
            missing.append(f"{io.name}:{io.type}")
        seen.add(io.type)
    return missing


def card_input_schema(card: ToolCard) -> dict[str, Any]:
    """The JSON schema of a card tool's arguments (image and audio: a file path)."""
    properties: dict[str, Any] = {}
    required = []
    for io in fed_inputs(card):
        description = io.description or io.name
        if io.type != "text":
            description = f"path of an {io.type} file on the server's machine: {description}"
        properties[io.name] = {"type": "string", "description": description}
        if not io.optional:
            required.append(io.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


class CardPlanner:
    """Plans one call of a card tool: one subtask on that card, its arguments as they were given."""

    name = "mcp-card"

    def __init__(self, card: ToolCard, arguments: dict[str, str]) -> None:
        self.card = card
        self.arguments = arguments

    def plan(self, request: str, zoo: Zoo, *, files: Any = ()) -> Plan:
        """The one-step plan (``request`` is only its instruction)."""
        args: dict[str, Any] = {}
        for io in fed_inputs(self.card):
            value = self.arguments.get(io.name)
            if value is None:
                continue
            if io.type == "text":
                args[io.type] = TextArg(value=value)
            else:
                args[io.type] = FileArg(path=str(Path(value).expanduser().resolve()))
        subtask = Subtask(
            id="s1", task=self.card.task, instruction=request, args=args, cards=[self.card.name]
        )
        return Plan(request=request, subtasks=[subtask], planner=self.name)


def _card_arguments(card: ToolCard, arguments: dict[str, Any]) -> dict[str, str]:
    """The arguments of a card tool, checked: strings, known names, files that exist."""
    fed = {io.name: io for io in fed_inputs(card)}
    unknown = sorted(set(arguments) - set(fed))
    if unknown:
        raise ToolRefused(
            f"{card.name} takes {', '.join(fed) or 'no arguments'}; "
            f"unknown argument(s): {', '.join(unknown)}"
        )
    checked: dict[str, str] = {}
    for name, io in fed.items():
        value = arguments.get(name)
        if value is None:
            if not io.optional:
                raise ToolRefused(f"{card.name} needs the argument '{name}' ({io.type})")
            continue
        if not isinstance(value, str):
            raise ToolRefused(f"argument '{name}' must be a string, got {type(value).__name__}")
        if io.type != "text":
            _check_file(value, f"argument '{name}'")
        checked[name] = value
    return checked


def _check_file(path: str, what: str) -> None:
    if not Path(path).expanduser().is_file():
        where = "is a folder" if Path(path).expanduser().is_dir() else "does not exist"
        raise ToolRefused(
            f"{what}: the file '{path}' {where} on the server's machine; give the path of an "
            "existing file (absolute, or relative to the folder the server runs in)"
        )


# --- the run tool ---------------------------------------------------------------------------------


def run_budget(arguments: dict[str, Any], default: Budget) -> Budget:
    """The run's budget: the default, with the limits the call gives."""
    usd = arguments.get("budget_usd")
    try:
        money = default.usd if usd is None else Decimal(str(usd))
    except InvalidOperation:
        raise ToolRefused(f"budget_usd must be an amount like 0.05, got {usd!r}") from None
    seconds = arguments.get("max_seconds")
    calls = arguments.get("max_calls")
    if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int)):
        raise ToolRefused(f"max_calls must be a whole number, got {calls!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise ToolRefused(f"max_seconds must be a number of seconds, got {seconds!r}")
    try:
        return Budget(
            usd=money,
            seconds=default.seconds if seconds is None else seconds,
            tokens=default.tokens,
            calls=default.calls if calls is None else calls,
        )
    except (InvalidBudget, ValueError) as exc:
        raise ToolRefused(str(exc)) from None


def _run_arguments(arguments: dict[str, Any]) -> tuple[str, list[Path]]:
    unknown = sorted(set(arguments) - set(RUN_SCHEMA["properties"]))
    if unknown:
        raise ToolRefused(
            f"run takes prompt, files, budget_usd, max_seconds, max_calls; unknown argument(s): "
            f"{', '.join(unknown)}"
        )
    prompt = arguments.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ToolRefused("run needs a 'prompt': say what you want done, in plain words")
    files = arguments.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ToolRefused("'files' must be a list of file paths (strings)")
    for path in files:
        _check_file(path, "files")
    return prompt, [Path(f).expanduser() for f in files]


# --- results --------------------------------------------------------------------------------------


def _media(path: Path) -> tuple[str, str] | None:
    """(io type, mime type) of an image or audio file, by its content."""
    try:
        with path.open("rb") as handle:
            kind = sniff(handle.read(16))
    except OSError:
        return None
    return (kind.io_type, kind.mime) if kind else None


def _link(types: Any, path: Path) -> Any:
    media = _media(path)
    return types.ResourceLink(
        uri=path.resolve().as_uri(),
        name=path.name,
        mime_type=media[1] if media else None,
        description="a file the run made, on the server's machine",
    )


def _file_content(types: Any, path: Path) -> Any:
    media = _media(path)
    if media is None:
        return _link(types, path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    if media[0] == "image":
        return types.ImageContent(data=data, mime_type=media[1])
    return types.AudioContent(data=data, mime_type=media[1])


def _refused(types: Any, message: str) -> Any:
    return types.CallToolResult(
        content=[types.TextContent(text=message)],
        structured_content={"status": "rejected", "message": message},
        is_error=True,
    )


def _summary(result: Any) -> dict[str, Any]:
    return {
        "status": result.status,
        "run_id": result.run_id,
        "message": result.message,
        "spent": result.spent,
        "budget_left": result.budget_left,
        "artifacts": [str(p) for p in result.artifacts],
    }


def _error_text(result: Any) -> str:
    text = result.message or result.answer or f"the run ended with status {result.status}"
    return f"{result.status}: {text}"


# --- the service ----------------------------------------------------------------------------------


class McpService:
    """What the MCP server does, without the protocol: tools, resources, calls (blocking)."""

    def __init__(self, config: Config, zoo: Zoo, *, orchestrator: Any = None) -> None:
        from orchestrator.pipeline.orchestrator import Orchestrator

        self.config = config
        self.zoo = zoo
        self._own = orchestrator is None
        self.orchestrator = orchestrator or Orchestrator(config, zoo=zoo)
        self.cards = self._card_tools()

    def _card_tools(self) -> dict[str, ToolCard]:
        cards: dict[str, ToolCard] = {}
        for entry in sorted(self.zoo, key=lambda e: e.card.name):
            card = entry.card
            if not entry.available:
                continue
            if card.name == RUN_TOOL:
                log.warning("card 'run' is not offered as an MCP tool: the name is the run tool's")
                continue
            missing = _unfed_required(card)
            if missing:
                log.warning(
                    "card '%s' is not offered as an MCP tool: a step cannot fill its input(s) %s",
                    card.name,
                    ", ".join(missing),
                )
                continue
            cards[card.name] = card
        return cards

    def tools(self, types: Any) -> list[Any]:
        """The run tool, then one tool per available card."""
        tools = [
            types.Tool(
                name=RUN_TOOL,
                title="Run a request on the orchestrator",
                description=(
                    "Plan a request, pick a model per subtask from the local zoo, run them in a "
                    "sandbox within a budget, and answer. Attach files by their path on the "
                    "server's machine."
                ),
                input_schema=RUN_SCHEMA,
            )
        ]
        for card in self.cards.values():
            tools.append(
                types.Tool(
                    name=card.name,
                    title=f"{card.name} ({card.task})",
                    description=f"{card.description} (runs this model alone; inputs: "
                    + ", ".join(f"{io.name}: {io.type}" for io in fed_inputs(card))
                    + "; image and audio inputs are file paths on the server's machine)",
                    input_schema=card_input_schema(card),
                )
            )
        return tools

    def call(
        self, types: Any, name: str, arguments: dict[str, Any], cancel: threading.Event
    ) -> Any:
        """Call a tool to its result (an error result for a refused call or a failed run)."""
        try:
            if name == RUN_TOOL:
                return self._run(types, arguments, cancel)
            if name in self.cards:
                return self._call_card(types, self.cards[name], arguments, cancel)
        except UserError as exc:  # refused arguments, or a run the pipeline refuses to start
            return _refused(types, str(exc))
        known = ", ".join([RUN_TOOL, *self.cards])
        return _refused(types, f"no tool '{name}' here; the tools are: {known}")

    def _run(self, types: Any, arguments: dict[str, Any], cancel: threading.Event) -> Any:
        prompt, files = _run_arguments(arguments)
        budget = run_budget(arguments, self.config.budget.to_budget())
        result = self.orchestrator.run(prompt, budget=budget, files=files, cancel=cancel)
        summary = _summary(result)
        if result.status not in OK_STATUSES:
            content = [types.TextContent(text=_error_text(result))]
            return types.CallToolResult(content=content, structured_content=summary, is_error=True)
        content = [types.TextContent(text=result.answer)]
        content += [_link(types, Path(p)) for p in result.artifacts if Path(p).is_file()]
        return types.CallToolResult(content=content, structured_content=summary)

    def _call_card(
        self, types: Any, card: ToolCard, arguments: dict[str, Any], cancel: threading.Event
    ) -> Any:
        from orchestrator.pipeline.orchestrator import Orchestrator

        checked = _card_arguments(card, arguments)
        instruction = next((v for k, v in checked.items() if k in _text_names(card)), card.task)
        single = Orchestrator(
            self.config,
            zoo=Zoo.from_cards([card]),
            planner=CardPlanner(card, checked),
            scorer=self.orchestrator.scorer,
            executor=self.orchestrator.executor,
            policy=self.orchestrator.policy,
            durable=False,
        )
        result = single.run(
            instruction, budget=self.config.budget.to_budget(), files=[], cancel=cancel
        )
        summary = _summary(result)
        step = result.steps[0] if result.steps else None
        if result.status not in OK_STATUSES or step is None or step.outputs is None:
            content = [types.TextContent(text=_error_text(result))]
            return types.CallToolResult(content=content, structured_content=summary, is_error=True)
        summary["card"] = card.name
        summary["outputs"] = {k: _plain(v) for k, v in step.outputs.items()}
        return types.CallToolResult(
            content=_output_content(types, card, step.outputs), structured_content=summary
        )

    def resources(self, types: Any) -> list[Any]:
        """Every card of the zoo (available or not) as ``card://NAME``."""
        return [
            types.Resource(
                uri=f"{CARD_SCHEME}{entry.card.name}",
                name=entry.card.name,
                title=f"tool card {entry.card.name}",
                description=entry.card.description,
                mime_type="text/yaml",
            )
            for entry in sorted(self.zoo, key=lambda e: e.card.name)
        ]

    def read(self, uri: str) -> str:
        """The text of a ``card://NAME`` resource; an unknown one raises :class:`UserError`."""
        name = uri[len(CARD_SCHEME) :] if uri.startswith(CARD_SCHEME) else None
        if name is None or name not in self.zoo:
            known = ", ".join(f"{CARD_SCHEME}{e.card.name}" for e in self.zoo)
            raise UserError(f"no resource '{uri}' here; the resources are: {known}")
        return card_text(self.zoo.get(name))

    def close(self) -> None:
        """Stop the worker processes and close the run store (if this service made them)."""
        if self._own:
            self.orchestrator.close()


def _text_names(card: ToolCard) -> set[str]:
    return {io.name for io in fed_inputs(card) if io.type == "text"}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def _output_content(types: Any, card: ToolCard, outputs: dict[str, Any]) -> list[Any]:
    """A card's outputs as content: text, JSON text, image or audio."""
    content = []
    for io in card.outputs:
        if io.name not in outputs:
            continue
        value = outputs[io.name]
        if io.type in ("image", "audio") and isinstance(value, str) and Path(value).is_file():
            content.append(_file_content(types, Path(value)))
        elif io.type == "text" and isinstance(value, str):
            content.append(types.TextContent(text=value))
        else:
            content.append(types.TextContent(text=json.dumps({io.name: _plain(value)})))
    return content


def card_text(entry: Any) -> str:
    """A card's YAML (its file as written), then its profile summary as comment lines."""
    import yaml

    card = entry.card
    if card.source is not None and card.source.is_file():
        text = card.source.read_text(encoding="utf-8")
    else:
        data = card.model_dump(mode="json", exclude={"profile"}, exclude_defaults=True)
        text = yaml.safe_dump(data, sort_keys=False)
    lines = [text.rstrip("\n"), ""]
    profile = card.profile
    if profile is None or not profile.probes:
        lines.append("# profile: not profiled yet (orchestrator profile " + card.name + ")")
    else:
        lines.append(
            f"# profile: mean score {profile.mean_score:.2f} over {len(profile.probes)} probes"
            + (f", median {profile.latency_s:.4g} s per call" if profile.latency_s else "")
            + (f", ${profile.usd_per_call} per call" if profile.usd_per_call is not None else "")
        )
    if not entry.available:
        lines.append(f"# unavailable here: {entry.unavailable}")
    return "\n".join(lines) + "\n"
