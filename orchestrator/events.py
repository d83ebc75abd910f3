"""The progress events of a run: one pydantic model per kind, and the union :data:`Event`.

The pipeline emits :data:`RunEvent` values while it plans, selects, routes and runs steps
(``Orchestrator.run(prompt, on_event=...)`` receives them); the HTTP server adds
:class:`RunStarted` and :class:`BudgetReport` to its stream and ends it with :class:`RunSummary`.
Consumers tell them apart by class (``isinstance`` or ``match``). On the wire each is its JSON
object with a ``type`` member (``event.wire()``); :func:`parse_event` reads one back.

An event also reads as a mapping (``event["step"]``, ``event.get("error")``), so callbacks
written for the dict events of earlier versions keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_serializer

__all__ = [
    "Answered",
    "BudgetReport",
    "Decided",
    "Event",
    "PlanMade",
    "PullProgress",
    "Rejected",
    "RunEvent",
    "RunStarted",
    "RunSummary",
    "Selected",
    "StepFinished",
    "StepStarted",
    "TokenDelta",
    "TokensDiscarded",
    "parse_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Members sent only when they have a value (the others are sent as null).
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name in self._omitted_when_none:
            if data.get(name, 0) is None:
                del data[name]
        return data

    def wire(self) -> dict[str, Any]:
        """The event as JSON-ready data, as the server streams it."""
        return self.model_dump(mode="json")

    def __getitem__(self, name: str) -> Any:
        data = self.model_dump()
        if name not in data:
            raise KeyError(name)
        return data[name]

    def get(self, name: str, default: Any = None) -> Any:
        """A member by name, ``default`` when the event has no such member (mapping style)."""
        return self.model_dump().get(name, default)


class Rejected(_Event):
    """The request was refused before anything ran (``outcome``: rejected or unservable)."""

    type: Literal["rejected"] = "rejected"
    message: str
    outcome: Literal["rejected", "unservable"]


class PlanMade(_Event):
    """A valid plan (``Plan.model_dump(mode="json")``); a re-plan emits another."""

    type: Literal["plan"] = "plan"
    plan: dict[str, Any]


class Selected(_Event):
    """The ranked candidate cards of every subtask, by subtask id.

    The pipeline sends ``{"candidates": [...], "rejected": [...]}`` per subtask; the server
    streams the top candidates only (a list of ``{"card", "score", "why"}``).
    """

    type: Literal["select"] = "select"
    selections: dict[str, Any]


class Decided(_Event):
    """One router decision about one subtask."""

    type: Literal["decision"] = "decision"
    step: str
    action: str
    card: str | None
    reason: str
    policy: str


class StepStarted(_Event):
    """A step's call to its card begins (a step refused before its call never starts)."""

    type: Literal["step_started"] = "step_started"
    step: str
    card: str
    task: str


class StepFinished(_Event):
    """One attempt at a step ended: ``status`` ok, failed or over_budget, with what it cost."""

    _omitted_when_none = frozenset({"traceback", "outputs", "input_tokens", "output_tokens"})

    type: Literal["step_finished"] = "step_finished"
    step: str
    candidate: int
    card: str
    seq: int
    plan_no: int
    seconds: float
    load_seconds: float
    usd: str
    tokens: int
    calls: int
    error: str | None
    status: Literal["ok", "failed", "over_budget"]
    traceback: str | None = None
    outputs: dict[str, Any] | None = None
    input_tokens: int | None = None  # of ``tokens``, when the card reports them apart
    output_tokens: int | None = None


class TokenDelta(_Event):
    """A piece of text a step's card generated, sent as it is made (text-generation cards).

    The pieces of one attempt (``step``, ``seq``) joined are exactly its text output. They are
    progress, not yet the answer: the router still judges the finished output, and a discarded
    attempt is announced by :class:`TokensDiscarded`.
    """

    type: Literal["token"] = "token"
    step: str
    card: str
    seq: int
    text: str


class TokensDiscarded(_Event):
    """The text streamed by one attempt at a step is not the step's result: drop it.

    Sent when the attempt failed, or when the router did not accept it (a retry, an
    escalation, a second opinion); a later attempt may stream again.
    """

    type: Literal["tokens_discarded"] = "tokens_discarded"
    step: str
    seq: int
    reason: str


class Answered(_Event):
    """The answer and the run's outcome; ``artifacts`` are the files it made."""

    _omitted_when_none = frozenset({"artifacts"})

    type: Literal["answer"] = "answer"
    answer: str
    outcome: str
    artifacts: list[str] | None = None


class RunStarted(_Event):
    """First event of a server stream: the run's id, the model asked for, its limits."""

    type: Literal["run"] = "run"
    run_id: str
    model: str
    budget: dict[str, Any]


class BudgetReport(_Event):
    """Sent by the server after each step: spent so far, what is left of each limit."""

    type: Literal["budget"] = "budget"
    spent: dict[str, Any]
    left: dict[str, Any]
    limits: dict[str, Any]


class RunSummary(_Event):
    """Last event of a server answer: the run's status, plan, steps, cost and files."""

    type: Literal["result"] = "result"
    run_id: str
    status: str
    message: str
    plan: dict[str, Any] | None
    steps: list[dict[str, Any]]
    spent: dict[str, Any]
    budget_left: dict[str, Any]
    files: list[dict[str, str]]


class PullProgress(_Event):
    """A card's weights are downloading (``[models] auto_pull``): bytes so far of the total."""

    type: Literal["pull"] = "pull"
    card: str
    repo: str
    files: int
    done_bytes: int
    total_bytes: int


RunEvent = Annotated[
    Rejected
    | PlanMade
    | Selected
    | Decided
    | StepStarted
    | StepFinished
    | Answered
    | PullProgress
    | TokenDelta
    | TokensDiscarded,
    Field(discriminator="type"),
]
"""An event the pipeline emits while it runs."""

Event = Annotated[
    Rejected
    | PlanMade
    | Selected
    | Decided
    | StepStarted
    | StepFinished
    | Answered
    | RunStarted
    | BudgetReport
    | RunSummary
    | PullProgress
    | TokenDelta
    | TokensDiscarded,
    Field(discriminator="type"),
]
"""Any progress event: the pipeline's, and those the server adds to its stream."""

_EVENT: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: str | bytes | dict[str, Any]) -> Any:
    """An event from its JSON text or its ``wire()`` data (a wrong one raises ValidationError)."""
    if isinstance(data, dict):
        return _EVENT.validate_python(data)
    return _EVENT.validate_json(data)
