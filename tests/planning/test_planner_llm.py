"""The LLM planner against the project's real OpenAI-compatible server running SmolLM2-135M.

No mocked HTTP: the server is a subprocess serving the real local model. SmolLM2-135M rarely
writes a valid plan, so these tests assert the recorded path (valid / invalid -> repair ->
fallback) and that whatever comes out is a valid plan.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _llm_server import CARD

from orchestrator.config import Config, LlmConfig
from orchestrator.errors import ConfigError, PlanError
from orchestrator.plan import PlanDraft, plan_json_schema
from orchestrator.planning import ToolSet, ToolSpec, get_planner, planner_from_config
from orchestrator.planning.embedded import EmbeddedPlanner
from orchestrator.planning.llm import (
    LlmPlanner,
    _plan_from_answer,
    _tool_plan_from_answer,
    check_named_files,
    extract_json,
)
from orchestrator.planning.toolset import Example, ToolPlan, check_tool_plan
from orchestrator.planning.validate import validate_plan

IMAGE_REQUEST = "Read the text in scan.png and tell me which language it is in"


@pytest.fixture(scope="module")
def server(llm_server: str) -> str:
    return f"{llm_server}/v1"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def _tiny_tools() -> ToolSet:
    tools = [
        ToolSpec("search_train", "Search for train tickets between two cities on a date"),
        ToolSpec("train_ticket_booking", "Book a train ticket"),
        ToolSpec("weather_query", "Query the weather forecast of a city"),
        ToolSpec("send_sms", "Send an SMS text message to a phone number"),
    ]
    links = {("search_train", "train_ticket_booking"), ("train_ticket_booking", "send_sms")}
    examples = [
        Example(
            "Book a train from Paris to Lyon on Monday",
            ("search_train", "train_ticket_booking"),
            (("search_train", "train_ticket_booking"),),
        ),
        Example(
            "What is the weather in Rome tomorrow, and text it to 555-0100",
            ("weather_query", "send_sms"),
            (("weather_query", "send_sms"),),
        ),
    ]
    return ToolSet(tools, links, examples)


# -- the real endpoint -------------------------------------------------------------------------


def test_truncated_answers_are_repaired_then_fall_back(server, builtin_zoo, tmp_path):
    # 12 tokens cannot hold a whole plan: both answers are cut off, so the path is certain.
    planner = LlmPlanner(base_url=server, model=CARD, max_tokens=12, examples=1)
    plan = planner.plan(IMAGE_REQUEST, builtin_zoo)
    kinds = [note.split(":", 1)[0] for note in plan.notes]
    assert kinds[:3] == ["invalid", "invalid", "fallback"], plan.notes
    assert "first answer" in plan.notes[0] and "repair answer" in plan.notes[1]
    assert plan.planner == "llm>embedded"
    embedded = EmbeddedPlanner().plan(IMAGE_REQUEST, builtin_zoo)
    assert plan.subtasks == embedded.subtasks
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    validate_plan(plan, builtin_zoo, base_dir=tmp_path)


def test_tool_set_plan_is_valid_whatever_the_model_writes(server):
    tools = _tiny_tools()
    planner = LlmPlanner(base_url=server, model=CARD, max_tokens=48, examples=2)
    request = "Book a train from Berlin to Munich on Friday"
    plan = planner.plan_tools(request, tools)
    check_tool_plan(plan, tools)  # never an invalid plan out
    kinds = [note.split(":", 1)[0] for note in plan.notes]
    legal = (
        ["valid"],
        ["invalid", "repaired"],
        ["invalid", "invalid", "fallback"],
    )
    assert any(kinds[: len(path)] == path for path in legal), plan.notes
    if "fallback" in kinds:
        assert plan.planner == "llm>embedded"
        assert plan.nodes == EmbeddedPlanner().plan_tools(request, tools).nodes
    else:
        assert plan.planner == "llm"


# -- transport errors, config ------------------------------------------------------------------


def test_unreachable_endpoint_is_retried_then_falls_back(builtin_zoo):
    planner = LlmPlanner(base_url=f"http://127.0.0.1:{_closed_port()}/v1", retries=3, timeout_s=5)
    plan = planner.plan(IMAGE_REQUEST, builtin_zoo)
    kinds = [note.split(":", 1)[0] for note in plan.notes]
    assert kinds[:4] == ["retry", "retry", "unreachable", "fallback"], plan.notes
    assert "APIConnectionError" in plan.notes[0]
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]


def test_planner_from_config_picks_llm_only_with_an_endpoint():
    assert isinstance(planner_from_config(Config()), EmbeddedPlanner)
    config = Config(llm=LlmConfig(base_url="http://127.0.0.1:9/v1", model="m", max_tokens=99))
    planner = planner_from_config(config)
    assert isinstance(planner, LlmPlanner)
    assert (planner.base_url, planner.model, planner.max_tokens) == (
        "http://127.0.0.1:9/v1",
        "m",
        99,
    )
    assert isinstance(planner.fallback, EmbeddedPlanner)
    # naming the embedded planner forces it even with an endpoint configured
    forced = config.model_copy(update={"planner": "embedded"})
    assert isinstance(planner_from_config(forced), EmbeddedPlanner)
    with pytest.raises(ConfigError, match="base_url"):
        planner_from_config(Config(planner="llm"))


def test_llm_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ORCHESTRATOR_LLM_MODEL", "tiny")
    config = Config().with_environment()
    assert config.llm.configured and config.llm.model == "tiny"
    assert get_planner("llm").base_url == "http://127.0.0.1:9/v1"


# -- reading and checking answers --------------------------------------------------------------


def test_extract_json_from_fences_and_prose():
    assert extract_json('Sure! ```json\n{"nodes": ["a"]}\n``` done') == {"nodes": ["a"]}
    assert extract_json('Plan: {"nodes": ["a", "b"]} hope it helps') == {"nodes": ["a", "b"]}
    with pytest.raises(PlanError, match="no complete JSON"):
        extract_json('{"subtasks": [{"id": "s1", "task": "ima')


def test_zoo_answers_are_checked_against_the_zoo(builtin_zoo):
    typed = {
        "subtasks": [
            {
                "id": "s1",
                "task": "image-to-text",
                "args": {"image": {"kind": "file", "path": "a.png"}},
            },
            {
                "id": 2,
                "task": "translation",
                "deps": ["s1"],
                "args": {"text": {"kind": "ref", "step": "s1"}},
            },
        ]
    }
    plan = _plan_from_answer(typed, "Read a.png and translate it")
    validate_plan(plan, builtin_zoo, check_files=False)
    assert [s.id for s in plan.subtasks] == ["s1", "2"]
    hugginggpt = [{"task": "image-to-text", "id": "1", "dep": [-1], "args": {"image": "a.png"}}]
    assert _plan_from_answer(hugginggpt, "Read a.png").subtasks[0].args["image"].path == "a.png"
    unknown = _plan_from_answer({"subtasks": [{"id": "s1", "task": "dance", "args": {}}]}, "x")
    with pytest.raises(PlanError, match="unknown task 'dance'"):
        validate_plan(unknown, builtin_zoo)
    cycle = {
        "subtasks": [
            {
                "id": "a",
                "task": "summarization",
                "deps": ["b"],
                "args": {"text": {"kind": "ref", "step": "b"}},
            },
            {
                "id": "b",
                "task": "translation",
                "deps": ["a"],
                "args": {"text": {"kind": "ref", "step": "a"}},
            },
        ]
    }
    with pytest.raises(PlanError, match="cycle"):
        validate_plan(_plan_from_answer(cycle, "x"), builtin_zoo)
    dangling = {
        "subtasks": [
            {"id": "a", "task": "summarization", "args": {"text": {"kind": "ref", "step": "z"}}}
        ]
    }
    with pytest.raises(PlanError, match="unknown step 'z'"):
        validate_plan(_plan_from_answer(dangling, "x"), builtin_zoo)


def test_tool_answers_are_checked_against_the_tool_set():
    tools = _tiny_tools()
    plan = _tool_plan_from_answer(
        {"task_nodes": [{"task": "search_train"}, "train_ticket_booking"]}, "r"
    )
    assert plan.links == [("search_train", "train_ticket_booking")]
    assert plan.notes == ["no links given: the tools form a chain"]
    check_tool_plan(plan, tools)
    bad = [
        (ToolPlan("r", ["fly"], []), "unknown tools: fly"),
        (ToolPlan("r", ["send_sms"], [("send_sms", "weather_query")]), "not a node"),
        (
            ToolPlan(
                "r",
                ["send_sms", "weather_query"],
                [("send_sms", "weather_query"), ("weather_query", "send_sms")],
            ),
            "cycle",
        ),
    ]
    for plan, message in bad:
        with pytest.raises(PlanError, match=message):
            check_tool_plan(plan, tools)


def test_structured_output_schema_is_the_plan_model():
    schema = plan_json_schema()
    assert schema["required"] == ["subtasks"]
    assert "Subtask" in schema["$defs"] and schema["additionalProperties"] is False
    assert PlanDraft.model_validate({"subtasks": [{"id": "s1", "task": "t", "instruction": "i"}]})


def test_examples_fit_the_request(builtin_zoo):
    planner = LlmPlanner(base_url="http://127.0.0.1:9/v1", examples=2)
    chosen = planner._zoo_examples("Transcribe lecture.wav and summarize it", builtin_zoo)
    assert chosen[0][0] == "Transcribe meeting.wav and summarize it"
    nearest = planner._tool_examples("Book a train from Oslo to Bergen", _tiny_tools())
    assert nearest[0].tools == ("search_train", "train_ticket_booking")


def test_files_the_request_does_not_name_are_refused():
    answer = {
        "subtasks": [
            {
                "id": "s1",
                "task": "image-to-text",
                "args": {"image": {"kind": "file", "path": "other.png"}},
            }
        ]
    }
    plan = _plan_from_answer(answer, "Read scan.png")
    with pytest.raises(PlanError, match="'other.png', which the request does not name"):
        check_named_files(plan)
    check_named_files(plan, [Path("/tmp/other.png")])  # attached files may be read


def test_odd_json_shapes_are_plan_errors_for_the_repair_round():
    for answer in ([{"task": "x", "id": 1, "args": [1, 2]}], {"subtasks": [{"args": 5}]}, 5):
        with pytest.raises(PlanError, match="plan"):
            _plan_from_answer(answer, "r")
    for answer in (
        {"nodes": []},
        {"nodes": ["a"], "links": "a->b"},
        {"nodes": ["a"], "links": [3]},
    ):
        with pytest.raises(PlanError):
            _tool_plan_from_answer(answer, "r")


# -- an LLM's plan goes through the same check as any plan (orchestrator.planning.checked_plan) ---
# The endpoint below is a real HTTP server on a local socket, spoken to by the real ``openai``
# client; its answer is scripted (tests/_scripted_llm.py), because a model that writes exactly
# the faulty plan each test needs cannot be had here.


def _llm_plan(subtasks: list[dict]) -> str:
    import json

    return json.dumps({"subtasks": subtasks})


_IMAGE_AS_TEXT = _llm_plan(
    [
        {
            "id": "s1",
            "task": "text-classification",
            "instruction": "which language is the text written in",
            "deps": [],
            "args": {"text": {"kind": "file", "path": "fr.png"}},
        }
    ]
)


def test_scripted_llm_plan_feeding_an_image_to_a_text_step_gets_a_reading_step(builtin_zoo):
    from _scripted_llm import ScriptedServer

    from orchestrator.planning import checked_plan

    request = "Which language is the text in fr.png written in?"
    with ScriptedServer(_IMAGE_AS_TEXT) as base_url:
        planner = LlmPlanner(base_url=base_url, model="scripted", retries=1)
        plan = planner.plan(request, builtin_zoo)
    assert plan.planner == "llm" and plan.notes[0].startswith("valid:")
    checked = checked_plan(
        plan, builtin_zoo, [], lambda: EmbeddedPlanner().plan(request, builtin_zoo)
    )
    reading, language = checked.subtasks
    assert reading.task == "image-to-text" and reading.args["image"].path == "fr.png"
    assert language.args["text"].step == reading.id and language.deps == [reading.id]
    assert checked.planner == "llm" and checked.notes[-1].startswith("repaired: step s1")


def test_scripted_llm_plan_leaving_a_file_unread_is_replaced(builtin_zoo):
    from _scripted_llm import ScriptedServer

    from orchestrator.planning import checked_plan

    request = "Transcribe one.wav and two.wav"
    answer = _llm_plan(
        [
            {
                "id": "s1",
                "task": "automatic-speech-recognition",
                "instruction": "transcribe one.wav",
                "deps": [],
                "args": {"audio": {"kind": "file", "path": "one.wav"}},
            }
        ]
    )
    with ScriptedServer(answer) as base_url:
        plan = LlmPlanner(base_url=base_url, model="scripted", retries=1).plan(request, builtin_zoo)
    checked = checked_plan(
        plan, builtin_zoo, [], lambda: EmbeddedPlanner().plan(request, builtin_zoo)
    )
    read = [a.path for s in checked.subtasks for a in s.args.values() if hasattr(a, "path")]
    assert sorted(read) == ["one.wav", "two.wav"] and checked.planner == "embedded"
    assert checked.notes[-1] == "replaced the llm plan: two.wav was given but no step reads it"


@pytest.mark.slow  # runs the OCR and language-identification models
def test_a_run_with_the_scripted_llm_plan_reads_the_image_first(builtin_zoo, tmp_path):
    from _scripted_llm import ScriptedServer

    from orchestrator import Orchestrator
    from orchestrator.cli.demo import render_text_png

    render_text_png("Le chat noir dort tranquillement sur le canape rouge", tmp_path / "fr.png")
    request = "Which language is the text in fr.png written in?"
    with ScriptedServer(_IMAGE_AS_TEXT) as base_url:
        planner = LlmPlanner(base_url=base_url, model="scripted", retries=1)
        config = Config(runs_dir=tmp_path / "runs")
        with Orchestrator(config, zoo=builtin_zoo, planner=planner) as orch:
            result = orch.run(request, base_dir=tmp_path)
    assert result.status == "ok", result.message
    assert [s.card for s in result.steps] == ["rapidocr", "lingua-langid"]
    assert "French" in result.answer and "chat noir" in result.answer
    assert any(n.startswith("repaired:") for n in result.plan.notes)
