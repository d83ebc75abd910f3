"""Capability profiles: real models on their aptitude tests, versioned by the card's digest."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from orchestrator.cards import card_digest
from orchestrator.cards.probes.aptitude import Probe, check_probes, load_probes
from orchestrator.cards.probes.checks import chance_corrected, score_case
from orchestrator.cards.profile import attach_profile, profile_path
from orchestrator.cards.zoo import Zoo, builtin_cards_dir
from orchestrator.cli.main import app
from orchestrator.execution.profiling import profile_card


def builtin(name):
    return Zoo.load().get(name).card.model_copy(update={"profile": None})


def test_every_offline_task_has_an_aptitude_test_with_checks():
    for entry in Zoo.load():
        if entry.available:
            probes = load_probes(entry.card.task)
            assert len(probes) >= 3, entry.card.task
            assert all(p.instruction and (p.all_cases() or p.pairs) for p in probes)
            assert check_probes(probes, entry.card) == [], entry.card.task


def test_scores_against_references():
    assert score_case("cer", "No parking after 6 PM", "NO PARKING\nAFTER 6 PM") == 1.0
    assert score_case("wer", "red green blue", "red") == pytest.approx(1 / 3)
    assert score_case("label", "German", [{"label": "german", "score": 0.9}]) == 1.0
    assert score_case("label", "positive", "positive and negative") == 0.0
    assert score_case("keywords", ["cat"], "a cat and a cup", others=["cup"]) == 0.0
    source = "one two three four five six seven eight nine ten"
    assert score_case("summary", {"reference": "one two"}, source, source=source) == 0.0
    assert score_case("summary", {"reference": "one two"}, "one two", source=source) == 1.0
    assert chance_corrected([1.0, 0.0], ["positive", "negative"]) == 0.0
    assert chance_corrected([1.0, 1.0], ["positive", "negative"]) == 1.0


def test_language_card_passes_language_probes_and_fails_sentiment_ones():
    record = profile_card(builtin("lingua-langid"))
    scores = {p["instruction"]: p["score"] for p in record["probes"]}
    assert scores["which language is this text written in"] == 1.0
    assert scores["is this review positive or negative"] == 0.0
    assert record["card_digest"] == card_digest(builtin("lingua-langid"))
    assert record["latency_s"] >= 0 and float(record["usd_per_call"]) >= 0


def test_face_detector_on_a_sample_photo_and_on_rendered_text():
    probes = [
        Probe("find the faces", {"image_sample": "astronaut"}, {"count": 1}),
        Probe("faces in text", {"image_text": "Quarterly report"}, {"count": 0}),
        Probe("too many faces", {"image_sample": "astronaut"}, {"count": 5}),
    ]
    record = profile_card(builtin("haar-faces"), probes)
    assert [p["score"] for p in record["probes"]] == [1.0, 1.0, 0.0]
    assert record["mean_score"] == round(2 / 3, 4)


def test_profile_is_attached_only_while_the_card_is_unchanged(tmp_path):
    source = builtin_cards_dir() / "lingua-langid.yaml"
    card_file = tmp_path / "langid-copy.yaml"
    card_file.write_text(source.read_text().replace("name: lingua-langid", "name: langid-copy"))
    runner = CliRunner()
    first = runner.invoke(app, ["profile", "langid-copy", "--cards", str(tmp_path)])
    assert first.exit_code == 0, first.output
    written = json.loads(profile_path(card_file).read_text())
    assert written["mean_score"] == 0.5 and len(written["probes"]) == 6
    card = Zoo.load([tmp_path]).get("langid-copy").card
    assert card.profile is not None and card.profile.mean_score == 0.5
    again = runner.invoke(app, ["profile", "langid-copy", "--cards", str(tmp_path)])
    assert "profile is current" in again.output
    # Editing the card makes its profile stale: not attached, and profiled again on request.
    card_file.write_text(card_file.read_text().replace("strength: 0.85", "strength: 0.8"))
    assert Zoo.load([tmp_path]).get("langid-copy").card.profile is None
    redo = runner.invoke(app, ["profile", "langid-copy", "--cards", str(tmp_path)])
    assert "profiling" in redo.output and "current" not in redo.output


def test_attach_profile_ignores_missing_files(tmp_path):
    card = builtin("vader-sentiment")
    assert attach_profile(card, tmp_path / "vader.yaml").profile is None
    shutil.copy(builtin_cards_dir() / "vader-sentiment.yaml", tmp_path / "v.yaml")
    assert attach_profile(card, None) is card


def test_every_builtin_offline_card_has_a_current_profile():
    stale = [
        e.card.name
        for e in Zoo.load()
        if e.available and e.card.backend.kind != "openai" and e.card.profile is None
    ]
    assert not stale, f"profile missing or stale; run: orchestrator profile {' '.join(stale)}"
