import time

import pytest

from orchestrator.errors import NoCapableTool, PlanError, UserError
from orchestrator.plan import validate_plan
from planners import UnknownPlanner, get_planner
from planners.embedded import split_clauses

DEMO = (
    "Transcribe demo.wav, tell me which language it is in and whether it sounds positive "
    "or negative, then read the answer aloud"
)


@pytest.fixture(scope="module")
def planner():
    return get_planner("embedded")


def test_split_keeps_file_names_whole():
    assert split_clauses("Transcribe demo.wav. Then read it aloud") == [
        "Transcribe demo.wav",
        "read it aloud",
    ]


def test_demo_request_is_a_typed_chain(planner, builtin_zoo, tmp_path):
    (tmp_path / "demo.wav").write_bytes(b"RIFF")
    plan = planner.plan(DEMO, builtin_zoo)
    validate_plan(plan, builtin_zoo, base_dir=tmp_path)
    tasks = [s.task for s in plan.subtasks]
    assert tasks == [
        "automatic-speech-recognition",
        "text-classification",
        "text-classification",
        "text-to-speech",
    ]
    asr, lang, sentiment, tts = plan.subtasks
    assert asr.args["audio"].path == "demo.wav"
    # both classifications read the transcript, not each other's labels
    assert lang.args["text"].step == asr.id and sentiment.args["text"].step == asr.id
    # "the answer" composes every earlier result
    assert tts.args["text"].kind == "compose"
    assert tts.args["text"].steps == [asr.id, lang.id, sentiment.id]
    assert tts.deps == [asr.id, lang.id, sentiment.id]


def test_image_request(planner, builtin_zoo):
    plan = planner.plan(
        "Read the text in scan.png and tell me which language it is in", builtin_zoo
    )
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]
    assert plan.subtasks[1].args["text"].step == plan.subtasks[0].id


def test_quoted_text_is_the_input(planner, builtin_zoo):
    plan = planner.plan("Say 'good morning everyone' out loud", builtin_zoo)
    [tts] = plan.subtasks
    assert tts.task == "text-to-speech"
    assert tts.args["text"].value == "good morning everyone"


def test_planner_is_deterministic_and_fast(planner, builtin_zoo):
    start = time.perf_counter()
    plans = [planner.plan(DEMO, builtin_zoo) for _ in range(20)]
    per_request = (time.perf_counter() - start) / 20
    assert all(p == plans[0] for p in plans)
    assert per_request < 0.5


def test_empty_request(planner, builtin_zoo):
    with pytest.raises(UserError, match="empty"):
        planner.plan("   ", builtin_zoo)


def test_request_no_card_matches_lists_what_the_zoo_can_do(planner, builtin_zoo):
    with pytest.raises(NoCapableTool, match="automatic-speech-recognition"):
        planner.plan("Book me a flight to Lisbon for next Tuesday", builtin_zoo)


def test_missing_input_file_says_what_to_attach(planner, builtin_zoo):
    with pytest.raises(PlanError, match="needs an audio input.*name an audio file"):
        planner.plan("Transcribe the recording", builtin_zoo)


def test_unknown_planner_lists_known():
    with pytest.raises(UnknownPlanner, match="embedded"):
        get_planner("telepathy")
