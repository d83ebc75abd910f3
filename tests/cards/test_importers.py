"""Importers: Gorilla API records and Hugging Face model cards -> tool cards."""

from __future__ import annotations

import json

import pytest
import yaml

from orchestrator.cards import card_from_yaml
from orchestrator.cards.importers import (
    cards_from_gorilla,
    draft_from_hub,
    draft_from_readme,
    read_gorilla,
    slug,
    task_from_domain,
)
from orchestrator.errors import UserError

RECORDS = [
    {
        "domain": "Audio Automatic Speech Recognition",
        "functionality": "Transcription",
        "api_name": "Org/Whisper_Small",
        "description": "Transcribes English speech.",
        "performance": {"dataset": "LibriSpeech", "accuracy": "N/A"},
    },
    {
        "domain": "Natural Language Processing Sentence Similarity",
        "functionality": "Embeddings",
        "api_name": "Org/Whisper_Small",
        "description": "N/A",
    },
]


def test_domain_to_task_and_slugs():
    assert (
        task_from_domain("Natural Language Processing Text2Text Generation")
        == "text2text-generation"
    )
    assert task_from_domain("Reinforcement Learning") == "reinforcement-learning"
    assert slug("Helsinki-NLP/opus-mt-fr-en") == "helsinki-nlp--opus-mt-fr-en"


def test_gorilla_records_become_valid_cards(tmp_path):
    path = tmp_path / "api.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    imported = cards_from_gorilla(read_gorilla(path))
    first, second = imported
    assert first.card.name == "org--whisper_small" and second.card.name == "org--whisper_small-2"
    assert first.source_id == second.source_id == "Org/Whisper_Small"
    assert first.card.task == "automatic-speech-recognition"
    assert first.card.input_types() == {"audio"} and first.card.output_types() == {"text"}
    assert "LibriSpeech" in first.card.tags
    assert "Org/Whisper_Small" in second.card.description  # "N/A" replaced by a made-up one


def test_malformed_gorilla_line_names_the_line(tmp_path):
    path = tmp_path / "api.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(UserError, match=r"api.jsonl:2"):
        read_gorilla(path)


README = """---
license: apache-2.0
language: [en, fr]
pipeline_tag: translation
tags: [marian, seq2seq]
---

# opus-mt

A small Marian model that translates French text into English, trained on OPUS data.

## Usage
"""


def test_readme_front_matter_drafts_a_loadable_card(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    draft = draft_from_readme(readme, "Helsinki-NLP/opus-mt-fr-en")
    card = card_from_yaml(draft)
    assert card.name == "helsinki-nlp--opus-mt-fr-en" and card.task == "translation"
    assert card.description.startswith("A small Marian model")
    assert "license:apache-2.0" in card.tags and card.languages == ["en", "fr"]
    assert yaml.safe_load(draft)["backend"]["model"] == "Helsinki-NLP/opus-mt-fr-en"


def test_readme_without_pipeline_tag_says_what_to_add(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: mit\n---\nSome model that does things.\n")
    with pytest.raises(UserError, match="pipeline_tag"):
        draft_from_readme(readme)


def test_hub_model_not_in_the_local_cache_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="--from-readme"):
        draft_from_hub("nobody/no-such-model-here", cache_dir=tmp_path / "empty-cache")


def test_hub_model_card_is_read_from_the_local_cache(tmp_path):
    # The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/README.md}.
    repo = tmp_path / "models--Helsinki-NLP--opus-mt-fr-en"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "README.md").write_text(README)
    card = card_from_yaml(draft_from_hub("Helsinki-NLP/opus-mt-fr-en", cache_dir=tmp_path))
    assert card.task == "translation" and card.backend.model == "Helsinki-NLP/opus-mt-fr-en"


def test_cards_new_cli_writes_the_draft(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli.main import app

    readme = tmp_path / "README.md"
    readme.write_text(README)
    out = tmp_path / "card.yaml"
    args = ["cards", "new", "--from-readme", str(readme), "--model-id", "org/opus", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert card_from_yaml(out.read_text()).task == "translation"
    both = CliRunner().invoke(app, ["cards", "new"])
    assert both.exit_code == 2


def test_cards_new_refuses_to_overwrite_unless_forced(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli.main import app

    readme = tmp_path / "README.md"
    readme.write_text(README)
    out = tmp_path / "precious.yaml"
    out.write_text("precious\n")
    args = ["cards", "new", "--from-readme", str(readme), "--model-id", "org/m", "-o", str(out)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "exists; pass --force" in refused.output
    assert out.read_text() == "precious\n"
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert card_from_yaml(out.read_text()).backend.model == "org/m"


def test_malformed_front_matter_is_a_user_error_naming_the_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\npipeline_tag: [translation\nlicense: mit\n---\nSome text.\n")
    with pytest.raises(UserError) as info:
        draft_from_readme(readme, "org/m")
    message = str(info.value)
    assert message.startswith(f"{readme}: the front matter is not valid YAML")
    assert "at line" in message and "<unicode string>" not in message


def test_a_model_id_is_required_from_the_argument_or_the_front_matter(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\npipeline_tag: translation\n---\nA model that translates text.\n")
    with pytest.raises(UserError, match="--model-id ORG/NAME"):
        draft_from_readme(readme)
    named = readme.parent / "named.md"
    named.write_text("---\nmodel_name: org/named\npipeline_tag: translation\n---\nText.\n")
    assert yaml.safe_load(draft_from_readme(named))["backend"]["model"] == "org/named"
    indexed = readme.parent / "indexed.md"
    indexed.write_text(
        "---\nmodel-index: [{name: org/indexed, results: []}]\n"
        "pipeline_tag: translation\n---\nText.\n"
    )
    assert yaml.safe_load(draft_from_readme(indexed))["backend"]["model"] == "org/indexed"
