"""A planner-level view of tools: names, descriptions, IO types, a tool graph and worked examples.

The zoo's tool cards are one source of tools; a benchmark's tool set (TaskBench format:
``tool_desc.json`` + ``graph_desc.json`` + requests with gold ``task_nodes``/``task_links``) is
another. Planners that plan over tool names (not over typed card arguments) take a ``ToolSet``
and return a ``ToolPlan``: the tools to call, in order, and which output feeds which input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UserError

__all__ = ["Example", "ToolPlan", "ToolSet", "ToolSpec", "load_examples", "check_tool_plan"]

_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*[:.]?\s*(?:call\s+\S+\s*(?:to\s+)?)?", re.IGNORECASE)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does, and (when known) the IO types it reads and makes."""

    name: str
    description: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # e.g. ("Train", "Travel"): the tools of one plan share one


@dataclass(frozen=True)
class Example:
    """A solved request: the tools called, in order, and the links between them."""

    request: str
    tools: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()
    steps: tuple[str, ...] = ()  # one short instruction per tool, when the data has them


@dataclass
class ToolSet:
    """Tools, the graph of which tool may feed which, and examples to learn from."""

    tools: list[ToolSpec]
    links: set[tuple[str, str]] = field(default_factory=set)
    examples: list[Example] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name = {t.name: t for t in self.tools}
        if len(self._by_name) != len(self.tools):
            raise UserError("tool names in a tool set must be unique")

    def names(self) -> list[str]:
        return [t.name for t in self.tools]

    def get(self, name: str) -> ToolSpec | None:
        return self._by_name.get(name)

    def with_examples(self, examples: Iterable[Example]) -> ToolSet:
        """The same tools and graph with other examples (e.g. one fold's training part)."""
        return ToolSet(self.tools, self.links, list(examples))

    @classmethod
    def from_taskbench(cls, tool_desc: Path, graph_desc: Path | None = None) -> ToolSet:
        """Read TaskBench-format ``tool_desc.json`` and (optionally) ``graph_desc.json``."""
        tools_data = _read_json(tool_desc)
        tools = []
        for node in tools_data.get("nodes", []):
            if not isinstance(node, dict) or "id" not in node:
                raise UserError(f"{tool_desc}: every node needs an 'id'")
            tools.append(
                ToolSpec(
                    name=str(node["id"]),
                    description=str(node.get("desc", "")),
                    inputs=tuple(str(t) for t in node.get("input-type", [])),
                    outputs=tuple(str(t) for t in node.get("output-type", [])),
                    domains=_domains(node.get("domain", [])),
                )
            )
        links: set[tuple[str, str]] = set()
        if graph_desc is not None:
            for link in _read_json(graph_desc).get("links", []):
                links.add((str(link["source"]), str(link["target"])))
        if not tools:
            raise UserError(f"{tool_desc}: no tools under 'nodes'")
        return cls(tools, links)

    @classmethod
    def from_zoo(cls, zoo: object) -> ToolSet:
        """One tool per task of the zoo, typed by the cards' inputs and outputs."""
        from orchestrator.cards.tasks import task_type

        tools: dict[str, ToolSpec] = {}
        for entry in zoo:  # type: ignore[attr-defined]
            card = entry.card
            if card.task in tools:
                continue
            description = f"{task_type(card.task).description} {card.description}"
            inputs = tuple(io.type for io in card.inputs if not io.optional)
            tools[card.task] = ToolSpec(card.task, description, inputs, tuple(card.output_types()))
        links = {
            (a.name, b.name)
            for a in tools.values()
            for b in tools.values()
            if a.name != b.name and set(a.outputs) & set(b.inputs)
        }
        return cls(list(tools.values()), links)


@dataclass
class ToolPlan:
    """Tools to call, in order, and (source, target) links: the output of source feeds target."""

    request: str
    nodes: list[str]
    links: list[tuple[str, str]]
    planner: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "request": self.request,
            "task_nodes": [{"task": n} for n in self.nodes],
            "task_links": [{"source": s, "target": t} for s, t in self.links],
            "planner": self.planner,
            "notes": list(self.notes),
        }


def check_tool_plan(plan: ToolPlan, tools: ToolSet) -> None:
    """Raise PlanError for unknown tools, links between tools not in the plan, or a cycle."""
    from orchestrator.errors import PlanError

    known = set(tools.names())
    unknown = [n for n in plan.nodes if n not in known]
    if unknown:
        raise PlanError(f"unknown tools: {', '.join(unknown)}; use only names from the tool list")
    if not plan.nodes:
        raise PlanError("the plan has no tools; name at least one tool")
    in_plan = set(plan.nodes)
    for source, target in plan.links:
        if source not in in_plan or target not in in_plan:
            raise PlanError(f"link {source} -> {target} names a tool that is not a node")
    graph: dict[str, set[str]] = {}
    for source, target in plan.links:
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise PlanError(f"the links have a cycle through {node} -> {nxt}")
            if nxt not in state:
                visit(nxt)
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node)


def load_examples(path: Path) -> list[Example]:
    """Read TaskBench-format requests (JSON lines with user_request, task_nodes, task_links)."""
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append(
                Example(
                    request=str(row["user_request"]).strip(),
                    tools=tuple(str(n["task"]) for n in row.get("task_nodes", [])),
                    links=tuple(
                        (str(k["source"]), str(k["target"])) for k in row.get("task_links", [])
                    ),
                    steps=tuple(_step_text(s) for s in row.get("task_steps", [])),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a TaskBench request row ({exc})") from exc
    return examples


def _domains(value: object) -> tuple[str, ...]:
    """A node's domain field: one name or a list of names."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(d) for d in value) if isinstance(value, list) else ()


def _step_text(step: object) -> str:
    return _STEP_PREFIX.sub("", str(step)).strip()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object with 'nodes'")
    return data
