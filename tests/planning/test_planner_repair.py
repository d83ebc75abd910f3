"""The shared plan check (orchestrator.planning.repair): a plan is bridged by type or replaced."""

from __future__ import annotations

from pathlib import Path

from orchestrator.plan import FileArg, Plan, RefArg, Subtask, TextArg
from orchestrator.planning import checked_plan, plan_problems
from orchestrator.planning.embedded import EmbeddedPlanner
from orchestrator.planning.validate import validate_plan


def _plan(request: str, *subtasks: Subtask) -> Plan:
    return Plan(request=request, subtasks=list(subtasks), planner="scripted")


def _replacement(request: str, zoo, files=()):
    return lambda: EmbeddedPlanner().plan(request, zoo, files=files)


def test_an_image_given_to_a_text_classifier_gets_a_reading_step(builtin_zoo):
    request = "Which language is the text in fr.png written in?"
    plan = _plan(
        request,
        Subtask(
            id="s1",
            task="text-classification",
            instruction="which language is the text written in",
            args={"text": FileArg(path="fr.png")},
        ),
    )
    assert "is given image as its text input" in plan_problems(plan, builtin_zoo, [], request)[0]
    fixed = checked_plan(plan, builtin_zoo, [], _replacement(request, builtin_zoo))
    bridge, step = fixed.subtasks
    assert bridge.task == "image-to-text" and bridge.args == {"image": FileArg(path="fr.png")}
    assert step.id == "s1" and step.args == {"text": RefArg(step=bridge.id)}
    assert step.deps == [bridge.id]
    assert fixed.notes[-1].startswith("repaired: step s1 (text-classification) is given image")
    validate_plan(fixed, builtin_zoo, check_files=False)
    assert plan_problems(fixed, builtin_zoo, [], request) == []


def test_speech_fed_to_a_sentiment_step_is_transcribed_first(builtin_zoo):
    request = 'Say "what a lovely day" and tell me if it sounds positive'
    plan = _plan(
        request,
        Subtask(
            id="s1",
            task="text-to-speech",
            instruction="say it",
            args={"text": TextArg(value="what a lovely day")},
        ),
        Subtask(
            id="s2",
            task="text-classification",
            instruction="does it sound positive",
            deps=["s1"],
            args={"text": RefArg(step="s1")},
        ),
    )
    fixed = checked_plan(plan, builtin_zoo, [], _replacement(request, builtin_zoo))
    tasks = [(s.id, s.task) for s in fixed.subtasks]
    assert tasks[0] == ("s1", "text-to-speech") and tasks[-1] == ("s2", "text-classification")
    bridge = fixed.subtasks[1]
    assert bridge.task == "automatic-speech-recognition"
    assert bridge.args == {"audio": RefArg(step="s1")} and bridge.deps == ["s1"]
    assert fixed.subtasks[2].args == {"text": RefArg(step=bridge.id)}


def test_a_plan_leaving_a_file_unread_is_replaced_with_a_note(builtin_zoo):
    request = "transcribe one.wav and two.wav"
    plan = _plan(
        request,
        Subtask(
            id="s1",
            task="automatic-speech-recognition",
            instruction="transcribe one.wav",
            args={"audio": FileArg(path="one.wav")},
        ),
    )
    assert plan_problems(plan, builtin_zoo, [], request) == [
        "two.wav was given but no step reads it"
    ]
    fixed = checked_plan(plan, builtin_zoo, [], _replacement(request, builtin_zoo))
    read = sorted(a.path for s in fixed.subtasks for a in s.args.values() if isinstance(a, FileArg))
    assert read == ["one.wav", "two.wav"]
    assert fixed.planner == "embedded"
    assert fixed.notes[-1] == ("replaced the scripted plan: two.wav was given but no step reads it")


def test_an_attached_file_counts_like_a_named_one(builtin_zoo):
    request = "What language is this?"
    plan = _plan(
        request,
        Subtask(
            id="s1",
            task="text-classification",
            instruction="what language",
            args={"text": TextArg(value="What language is this?")},
        ),
    )
    files = [Path("/tmp/scan.png")]
    assert plan_problems(plan, builtin_zoo, files, request) == [
        "scan.png was given but no step reads it"
    ]
    fixed = checked_plan(plan, builtin_zoo, files, _replacement(request, builtin_zoo, files))
    assert any(FileArg(path="/tmp/scan.png") in s.args.values() for s in fixed.subtasks)


def test_a_sound_plan_comes_back_unchanged_and_said_files_are_no_problem(builtin_zoo):
    request = "Transcribe memo.wav"
    plan = EmbeddedPlanner().plan(request, builtin_zoo)
    assert checked_plan(plan, builtin_zoo, [], lambda: 1 / 0) is plan  # no replacement asked
    # A file the plan says it leaves out (and why) is accounted for.
    said = _plan(
        "Transcribe memo.wav and caption photo.png",
        *plan.subtasks,
    ).model_copy(update={"unserved": ["photo.png needs a captioner, which cannot run here"]})
    assert plan_problems(said, builtin_zoo, [], said.request) == []
