from orchestrator.cards import ToolCard
from orchestrator.pipeline.answer import StepResult, compose_answer, render_value


def card(name, outputs, label=None, task="text-classification") -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": task,
            "description": "a card for answer tests",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": n, "type": t} for n, t in outputs],
            "backend": {"kind": "python", "entry": "os.path:basename"},
            "result_label": label,
        }
    )


def test_answer_has_one_sentence_per_step_with_labels():
    lang = StepResult(
        "s1", "which language", card("l", [("label", "text")], "Language"), {"label": "French"}
    )
    speech = StepResult(
        "s2",
        "read aloud",
        card("t", [("audio", "audio")], task="text-to-speech"),
        {"audio": "/runs/x/speech-1.wav"},
    )
    assert compose_answer([lang, speech]) == "Language: French. Spoken audio: speech-1.wav."
    # a text to be read aloud leaves file names out
    assert compose_answer([lang, speech], spoken=True) == "Language: French."


def test_json_lists_of_records_render_compactly():
    rows = [{"label": "tabby", "score": 0.81234}, {"label": "tiger cat", "score": 0.1}]
    assert render_value("json", rows) == "label=tabby, score=0.812; label=tiger cat, score=0.1"
    long = render_value("json", {"vector": list(range(1000))})
    assert len(long) <= 400 and long.endswith("...")


def test_a_weak_writing_models_answer_carries_its_caveat():
    from orchestrator.plan import Plan, Subtask, TextArg

    def writer(name, strength):
        return ToolCard.model_validate(
            {
                "name": name,
                "task": "text-generation",
                "description": "a chat model for answer tests",
                "inputs": [{"name": "prompt", "type": "text"}],
                "outputs": [{"name": "text", "type": "text"}],
                "backend": {"kind": "python", "entry": "os.path:basename"},
                "limitations": ["often wrong on arithmetic"],
                "strength": strength,
            }
        )

    step = Subtask(
        id="s1", task="text-generation", instruction="17 times 23",
        args={"text": TextArg(value="what is 17 times 23")},
    )  # fmt: skip
    plan = Plan(request="what is 17 times 23", subtasks=[step], planner="test")
    weak = StepResult("s1", "17 times 23", writer("tiny", 0.15), {"text": "It is 1713."})
    strong = StepResult("s1", "17 times 23", writer("big", 0.85), {"text": "It is 391."})
    assert compose_answer([weak], plan=plan) == (
        "tiny answered: It is 1713. (Mind: tiny is a weak model: often wrong on arithmetic.)"
    )
    assert compose_answer([strong], plan=plan) == "big answered: It is 391."
