"""The text reports: progress lines, plan notes, failed steps, a stored run in full."""

from __future__ import annotations

import io

from rich.console import Console

from orchestrator.cli.report import EventPrinter
from orchestrator.events import Event, PlanMade, StepFinished

PLAN = {
    "request": "Is it positive?",
    "planner": "llm>embedded",
    "notes": ["unreachable: APIConnectionError after 3 attempts", "fallback: [embedded] planner"],
    "subtasks": [
        {
            "id": "s1",
            "task": "text-classification",
            "instruction": "x" * 500,
            "deps": [],
            "args": {"text": {"kind": "text", "value": "I love it"}},
        }
    ],
}


def _printed(*events: Event) -> str:
    sink = io.StringIO()
    printer = EventPrinter(Console(file=sink, width=400, color_system=None))
    for event in events:
        printer(event)
    return sink.getvalue()


def test_plan_shows_the_planner_and_its_notes_and_clips_long_instructions():
    out = _printed(PlanMade(plan=PLAN))
    assert "Plan (planner: llm>embedded)" in out
    assert "note unreachable: APIConnectionError after 3 attempts" in out
    assert "note fallback: [embedded] planner" in out  # brackets are text, not markup
    assert "x" * 200 + "..." in out and "x" * 201 not in out


def test_a_failed_step_shows_its_status_without_markup_tags():
    failed = StepFinished(
        step="s1",
        candidate=0,
        card="sum-hang",
        seq=1,
        plan_no=0,
        status="failed",
        error="timed out after 30.2 s; worker killed [pid 7]",
        seconds=30.2,
        load_seconds=0.0,
        usd="0",
        tokens=0,
        calls=1,
    )
    over = failed.model_copy(update={"status": "over_budget", "error": "needs [more]"})
    out = _printed(failed, over)
    assert "[red]" not in out and "[/red]" not in out
    assert "failed s1 sum-hang: timed out after 30.2 s; worker killed [pid 7]" in out
    assert "over_budget s1 sum-hang: needs [more]" in out
