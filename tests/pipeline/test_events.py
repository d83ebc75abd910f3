"""The typed progress events: what a real run emits, and how events read and round-trip."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from orchestrator import Budget
from orchestrator.events import (
    Answered,
    Decided,
    Event,
    PlanMade,
    Rejected,
    RunEvent,
    Selected,
    StepFinished,
    StepStarted,
    parse_event,
)

RUN_EVENT = TypeAdapter(RunEvent)


def test_every_event_of_a_real_run_is_typed_and_round_trips(orchestrator):
    events = []
    result = orchestrator.run(
        "Is this sentence positive or negative: what a lovely day",
        budget=Budget(calls=5),
        on_event=events.append,
    )
    assert result.status == "ok", result.answer
    kinds = [type(e) for e in events]
    assert kinds[0] is PlanMade and kinds[-1] is Answered
    for kind in (Selected, Decided, StepStarted, StepFinished):
        assert kind in kinds, kinds
    for event in events:
        # each is a member of the pipeline's union, and survives JSON both ways
        assert RUN_EVENT.validate_python(event.wire()) == event
        assert parse_event(event.model_dump_json()) == event
    finished = next(e for e in events if isinstance(e, StepFinished))
    assert finished.card == "vader-sentiment" and finished.status == "ok"
    assert finished.outputs is not None and finished.outputs["label"] == "positive"
    answered = events[-1]
    assert answered.outcome == "ok" and answered.answer == result.answer


def test_a_refused_request_emits_rejected_then_answer(orchestrator):
    events = []
    result = orchestrator.run("Translate this into Klingon: hello", on_event=events.append)
    assert result.status in ("rejected", "unservable")
    assert [type(e) for e in events] == [Rejected, Answered]
    assert events[0].outcome == result.status
    # the answer of a refused run has no files: the member is left out, not sent as null
    assert "artifacts" not in events[1].wire()
    assert parse_event(events[1].model_dump_json()) == events[1]


def test_members_left_out_when_absent_and_mapping_reads():
    failed = StepFinished(
        step="s1",
        candidate=0,
        card="c",
        seq=1,
        plan_no=0,
        seconds=0.5,
        load_seconds=0.0,
        usd="0",
        tokens=0,
        calls=1,
        error="boom",
        status="failed",
    )
    data = failed.wire()
    assert data["type"] == "step_finished" and data["error"] == "boom"
    assert "outputs" not in data and "traceback" not in data
    # callbacks written for dict events still read them
    assert failed["step"] == "s1" and failed.get("outputs") is None
    assert failed.get("nothing", "default") == "default"
    with pytest.raises(KeyError):
        failed["nothing"]


def test_a_wrong_event_is_refused():
    with pytest.raises(ValidationError):
        parse_event({"type": "step_started", "step": "s1"})  # no card, no task
    with pytest.raises(ValidationError):
        parse_event('{"type": "no_such_event"}')
    with pytest.raises(ValidationError):
        TypeAdapter(Event).validate_python({"type": "plan", "plan": {}, "extra": 1})
