from orchestrator.answer import StepResult, compose_answer, render_value
from orchestrator.cards import ToolCard


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
