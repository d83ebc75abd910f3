"""Plans: a DAG of subtasks whose arguments may reference earlier outputs.

HuggingGPT's plan ``[{"task", "id", "dep", "args": {"text" | "image" | "audio": value or
"<GENERATED>-N"}}]`` is the reference point; here the arguments are typed values, keyed by the IO
type they fill, and a reference names the step (and optionally the output) it reads.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import PlanError
from orchestrator.io_types import IOType

__all__ = [
    "Arg",
    "ComposeArg",
    "FileArg",
    "Plan",
    "PlanDraft",
    "RefArg",
    "Subtask",
    "TextArg",
    "parse_plan",
    "plan_json_schema",
]

_GENERATED = re.compile(r"^<GENERATED>-(\w+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextArg(_Strict):
    """A literal text given in the request."""

    kind: Literal["text"] = "text"
    value: str


class FileArg(_Strict):
    """A file named in or attached to the request."""

    kind: Literal["file"] = "file"
    path: str


class RefArg(_Strict):
    """The output of an earlier step (its first output of the needed type unless named)."""

    kind: Literal["ref"] = "ref"
    step: str
    output: str | None = None


class ComposeArg(_Strict):
    """A text composed from the results of several earlier steps (e.g. "read the answer aloud")."""

    kind: Literal["compose"] = "compose"
    steps: list[str] = Field(min_length=1)
    # An instruction put before the composed texts: a generator's prompt with its context
    # ("Write a reply to the text in note.png" and the text read from it). Empty: the texts alone.
    prompt: str = ""


Arg = Annotated[TextArg | FileArg | RefArg | ComposeArg, Field(discriminator="kind")]


class Subtask(_Strict):
    """One node of the plan."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    task: str
    instruction: str = Field(min_length=1)
    deps: list[str] = Field(default_factory=list)
    args: dict[IOType, Arg] = Field(default_factory=dict)
    # The cards that do this step's capability (empty: any card of the task may be chosen),
    # e.g. the sentiment card and not the language identifier, both text-classification.
    cards: list[str] = Field(default_factory=list)

    def referenced_steps(self) -> set[str]:
        """Ids of the steps whose outputs this subtask reads."""
        refs: set[str] = set()
        for arg in self.args.values():
            if isinstance(arg, RefArg):
                refs.add(arg.step)
            elif isinstance(arg, ComposeArg):
                refs.update(arg.steps)
        return refs


class Plan(_Strict):
    """A request broken into subtasks."""

    request: str
    subtasks: list[Subtask] = Field(min_length=1)
    planner: str = ""
    notes: list[str] = Field(default_factory=list)
    # What the request asks that this plan does not do, each with why and how to make it
    # possible (a capability no available card has, a given file no step reads).
    unserved: list[str] = Field(default_factory=list)

    def get(self, step_id: str) -> Subtask:
        for subtask in self.subtasks:
            if subtask.id == step_id:
                return subtask
        raise KeyError(step_id)

    def consumers(self, step_id: str) -> list[Subtask]:
        """Subtasks that read the output of ``step_id``."""
        return [s for s in self.subtasks if step_id in s.referenced_steps()]

    def topological_order(self) -> list[str]:
        """Step ids, every step after its dependencies; a cycle raises PlanError."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        by_id = {s.id: s for s in self.subtasks}

        def visit(step_id: str, path: list[str]) -> None:
            if state.get(step_id) == 2:
                return
            if state.get(step_id) == 1:
                cycle = " -> ".join(path[path.index(step_id) :] + [step_id])
                raise PlanError(f"the plan has a cycle: {cycle}; a step cannot need its own output")
            state[step_id] = 1
            for dep in by_id[step_id].deps:
                visit(dep, path + [step_id])
            state[step_id] = 2
            order.append(step_id)

        for subtask in self.subtasks:
            visit(subtask.id, [])
        return order


class PlanDraft(_Strict):
    """What a planner model is asked to write: the subtasks (the request is already known)."""

    subtasks: list[Subtask] = Field(min_length=1)


def plan_json_schema() -> dict[str, object]:
    """The JSON schema of ``PlanDraft``, for structured output (``response_format``)."""
    return PlanDraft.model_json_schema()


def parse_plan(data: object, request: str) -> Plan:
    """Read a plan from JSON data: the typed form, or HuggingGPT's list form.

    In the list form, a value ``"<GENERATED>-N"`` becomes a reference to step N, text values
    become literal text, image and audio values become files.
    """
    from pydantic import ValidationError

    if isinstance(data, list):
        data = {"request": request, "subtasks": [_from_hugginggpt(item) for item in data]}
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"malformed plan at {where}: {first['msg']}") from exc


def _from_hugginggpt(item: object) -> dict[str, object]:
    if not isinstance(item, dict):
        raise PlanError("each plan item must be an object with task, id, dep and args")
    deps = [str(d) for d in item.get("dep", []) if str(d) != "-1"]
    args: dict[str, object] = {}
    for io_type, value in dict(item.get("args", {})).items():
        match = _GENERATED.match(str(value))
        if match:
            args[io_type] = {"kind": "ref", "step": match.group(1)}
            if match.group(1) not in deps:
                deps.append(match.group(1))
        elif io_type == "text":
            args[io_type] = {"kind": "text", "value": str(value)}
        else:
            args[io_type] = {"kind": "file", "path": str(value)}
    return {
        "id": str(item.get("id")),
        "task": item.get("task"),
        "instruction": item.get("instruction") or item.get("task") or "",
        "deps": deps,
        "args": args,
    }
