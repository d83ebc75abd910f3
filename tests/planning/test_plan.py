import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.errors import PlanError
from orchestrator.plan import Plan, parse_plan
from orchestrator.planning.validate import validate_plan


def make_card(name: str, task: str, inputs: list[str], outputs: list[str]) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": task,
            "description": f"test card {name} for {task}",
            "inputs": [{"name": f"in_{t}", "type": t} for t in inputs],
            "outputs": [{"name": f"out_{t}", "type": t} for t in outputs],
            "backend": {"kind": "python", "entry": "os.path:basename"},
        }
    )


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo.from_cards(
        [
            make_card("asr", "automatic-speech-recognition", ["audio"], ["text"]),
            make_card("tts", "text-to-speech", ["text"], ["audio"]),
            make_card("cls", "text-classification", ["text"], ["text"]),
        ]
    )


def plan_of(*subtasks: dict) -> Plan:
    return Plan.model_validate({"request": "r", "subtasks": list(subtasks)})


def step(id: str, task: str, deps=(), **args) -> dict:
    return {"id": id, "task": task, "instruction": f"do {task}", "deps": list(deps), "args": args}


def test_valid_chain_passes_and_orders(zoo, tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    plan = plan_of(
        step("2", "text-classification", ["1"], text={"kind": "ref", "step": "1"}),
        step("1", "automatic-speech-recognition", audio={"kind": "file", "path": "a.wav"}),
    )
    validate_plan(plan, zoo, base_dir=tmp_path)
    assert plan.topological_order() == ["1", "2"]


def test_a_named_file_whose_content_is_another_kind_is_refused(zoo, tmp_path):
    (tmp_path / "photo.wav").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 32)  # a JPEG
    plan = plan_of(
        step("1", "automatic-speech-recognition", audio={"kind": "file", "path": "photo.wav"})
    )
    with pytest.raises(PlanError, match="photo.wav is named as audio but its content is a JPG"):
        validate_plan(plan, zoo, base_dir=tmp_path)


def test_cycle_is_named(zoo):
    plan = plan_of(
        step("a", "text-classification", ["b"], text={"kind": "ref", "step": "b"}),
        step("b", "text-to-speech", ["a"], text={"kind": "ref", "step": "a"}),
    )
    with pytest.raises(PlanError, match="cycle: a -> b -> a"):
        validate_plan(plan, zoo)


def test_dangling_reference(zoo):
    plan = plan_of(step("a", "text-to-speech", ["zz"], text={"kind": "ref", "step": "zz"}))
    with pytest.raises(PlanError, match="unknown step 'zz'"):
        validate_plan(plan, zoo)


def test_reference_not_in_deps(zoo):
    plan = plan_of(
        step("a", "text-classification", text={"kind": "text", "value": "hi"}),
        step("b", "text-to-speech", text={"kind": "ref", "step": "a"}),
    )
    with pytest.raises(PlanError, match="does not list it in deps"):
        validate_plan(plan, zoo)


def test_unknown_task_lists_known(zoo):
    plan = plan_of(step("a", "video-editing", text={"kind": "text", "value": "x"}))
    with pytest.raises(PlanError, match="unknown task 'video-editing'.*text-to-speech"):
        validate_plan(plan, zoo)


def test_missing_file(zoo, tmp_path):
    plan = plan_of(
        step("a", "automatic-speech-recognition", audio={"kind": "file", "path": "no.wav"})
    )
    with pytest.raises(PlanError, match="audio file 'no.wav' not found$"):
        validate_plan(plan, zoo, base_dir=tmp_path)
    (tmp_path / "No.WAV").write_bytes(b"RIFF")  # typed in another case: the name is offered
    with pytest.raises(PlanError, match=r"'no.wav' not found; did you mean No.WAV\?"):
        validate_plan(plan, zoo, base_dir=tmp_path)


def test_duplicate_ids(zoo):
    plan = plan_of(
        step("a", "text-to-speech", text={"kind": "text", "value": "x"}),
        step("a", "text-to-speech", text={"kind": "text", "value": "y"}),
    )
    with pytest.raises(PlanError, match="unique"):
        validate_plan(plan, zoo)


def test_hugginggpt_format_is_read(zoo):
    plan = parse_plan(
        [
            {
                "task": "automatic-speech-recognition",
                "id": 0,
                "dep": [-1],
                "args": {"audio": "a.wav"},
            },
            {"task": "text-to-speech", "id": 1, "dep": [0], "args": {"text": "<GENERATED>-0"}},
        ],
        "say what a.wav says",
    )
    assert plan.subtasks[1].deps == ["0"]
    assert plan.subtasks[1].args["text"].kind == "ref"
    assert plan.subtasks[0].args["audio"].kind == "file"


def test_malformed_plan_json_says_where():
    with pytest.raises(PlanError, match="malformed plan at subtasks.0"):
        parse_plan({"request": "r", "subtasks": [{"id": "a"}]}, "r")
    with pytest.raises(PlanError, match="args.video"):
        parse_plan(
            {
                "request": "r",
                "subtasks": [step("a", "text-to-speech", video={"kind": "text", "value": "x"})],
            },
            "r",
        )
