"""What the planner says when the zoo cannot serve a request (orchestrator.planning.advice)."""

from __future__ import annotations

import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.zoo import ZooEntry
from orchestrator.errors import NoCapableTool
from orchestrator.planning.advice import languages_fit, mentioned_languages, missing_advice
from orchestrator.planning.embedded import EmbeddedPlanner


def _card(name: str, task: str, languages: list[str]) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": task,
            "description": f"{name} does {task}",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "python", "entry": "x:y"},
            "languages": languages,
        }
    )


def test_language_names_become_codes_in_order_once():
    assert mentioned_languages("Translate from French into Japanese, not French") == ["fr", "ja"]
    assert mentioned_languages("Read this aloud") == []


def test_a_card_listing_no_languages_handles_all():
    assert languages_fit(_card("any", "translation", []), ["ja"])
    assert not languages_fit(_card("fr-en", "translation", ["fr", "en"]), ["ja"])
    assert languages_fit(_card("fr-en", "translation", ["fr", "en"]), ["fr"])


def test_advice_names_the_card_that_would_do_it_and_the_one_that_does_other_languages():
    entries = [
        ZooEntry(_card("fr-en", "translation", ["fr", "en"]), None),
        ZooEntry(_card("big-llm", "translation", []), None, unavailable="needs an API key"),
    ]
    advice = missing_advice("Translate hi into Japanese", "translation", entries, ["ja"], [])
    assert "needs translation" in advice and "for Japanese" in advice
    assert "fr-en only handles French, English" in advice
    assert "big-llm would, but it cannot run here (needs an API key)" in advice
    assert "add a tool card for a translation model that handles Japanese" in advice
    none = missing_advice("Draw a fox", "text-to-image", [], [], [])
    assert none.endswith(
        "the zoo has no card for it; add a tool card for a text-to-image model you have."
    )


@pytest.mark.parametrize(
    ("request_text", "named", "absent"),
    [
        ("Translate 'good morning' into Japanese", ["Japanese", "openai-gpt-4o-mini would"],
         ["opus-mt-fr-en would"]),
        ("Read 'bonjour tout le monde' aloud in French", ["French", "piper-joe-en only handles"],
         []),
        ("Caption drawing.png", ["blip-captioner would", "orchestrator pull"], ["rapidocr"]),
        ("Draw me a picture of a red fox", ["text-to-image", "sd-turbo would"], []),
        ("summarize notes.txt", ["summarization", "distilbart-cnn-summarizer would"], []),
    ],
)  # fmt: skip
def test_the_built_in_zoo_refuses_with_advice(builtin_zoo, request_text, named, absent):
    with pytest.raises(NoCapableTool) as refused:
        EmbeddedPlanner().plan(request_text, builtin_zoo)
    message = str(refused.value)
    for words in named:
        assert words in message, message
    for words in absent:
        assert words not in message, message


def test_the_servable_part_is_planned_and_the_rest_said(builtin_zoo):
    plan = EmbeddedPlanner().plan("Transcribe a.wav and translate it into German", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["automatic-speech-recognition"]
    [said] = plan.unserved
    assert "translation" in said and "for German" in said and "opus-mt-fr-en only handles" in said


def test_a_request_no_card_does_is_unservable_and_says_what_the_zoo_does(builtin_zoo):
    with pytest.raises(NoCapableTool) as refused:
        EmbeddedPlanner().plan("Book a table for two at an Italian restaurant", builtin_zoo)
    message = str(refused.value)
    assert "no card of the zoo does what" in message and "text-to-speech" in message
    assert "Add a tool card" in message
