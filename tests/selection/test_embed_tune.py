"""Tuning the selection encoder on a zoo's own evidence (real MiniLM, a tiny zoo, one epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.embed import EmbeddingCache, MiniLMEmbedder
from orchestrator.errors import UserError
from orchestrator.plan import Plan
from orchestrator.selection.capability import card_text
from orchestrator.selection.embed_tune import (
    MANIFEST,
    TunedEmbedder,
    label_text,
    tune_encoder,
    tuning_pairs,
)
from orchestrator.selection.rank import CapabilityScorer, rank_open, select_for_subtask

# name, task, domain tag, description, passed probes
ZOO = [
    (
        "whisper-small",
        "automatic-speech-recognition",
        "Audio Automatic Speech Recognition",
        "Converts recorded speech in audio files into written text.",
        [
            "transcribe this voice memo",
            "write down what is said in the recording",
            "turn the podcast episode into a transcript",
            "what words are spoken in this audio clip",
            "caption the lecture recording with text",
        ],
    ),
    (
        "detr-resnet",
        "object-detection",
        "Computer Vision Object Detection",
        "Finds objects in pictures and returns their boxes and labels.",
        [
            "locate every car in the street photo",
            "draw boxes around the people in this image",
            "find where the dogs are in the picture",
            "count the bicycles visible in the photo",
            "detect the items on the shelf image",
        ],
    ),
    (
        "opus-fr-en",
        "translation",
        "Natural Language Processing Translation",
        "Translates French text into English text.",
        [
            "put this french letter into english",
            "translate the menu from french",
            "what does this french sentence mean in english",
            "convert the french product description to english",
            "render the paris news article in english",
        ],
    ),
    (
        "bart-cnn",
        "summarization",
        "Natural Language Processing Summarization",
        "Condenses long documents into a short summary.",
        [
            "give me the gist of this report",
            "shorten the meeting notes to three sentences",
            "summarize the long article",
            "write a brief overview of the paper",
            "boil the chapter down to its key points",
        ],
    ),
    (
        "sst2-sentiment",
        "text-classification",
        "Natural Language Processing Text Classification",
        "Labels the sentiment of a review as positive or negative.",
        [
            "is this review happy or angry",
            "does the customer like the product",
            "rate the mood of the tweet",
            "tell me whether the comment is positive",
            "classify the feedback as good or bad",
        ],
    ),
    (
        "speecht5-tts",
        "text-to-speech",
        "Audio Text-to-Speech",
        "Reads text aloud, producing a spoken audio file.",
        [
            "say this sentence out loud",
            "make an audio file of the announcement being read",
            "give the paragraph a voice",
            "produce spoken audio for this greeting",
            "narrate the story aloud",
        ],
    ),
]


def make_card(name, task, domain, description, probes, failed=()) -> ToolCard:
    profile = CapabilityProfile(
        card_digest="test",
        probes=[ProbeResult(instruction=p, score=1.0) for p in probes]
        + [ProbeResult(instruction=p, score=0.0) for p in failed],
    )
    return ToolCard.model_validate(
        {
            "name": name,
            "task": task,
            "description": description,
            "inputs": [{"name": "x", "type": "text"}],
            "outputs": [{"name": "y", "type": "text"}],
            "backend": {"kind": "python", "entry": "os.path:basename"},
            "tags": [domain],
            "profile": profile.model_dump() if probes or failed else None,
        }
    )


CARDS = [make_card(*row) for row in ZOO]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One encoder tuned on the tiny zoo (1 epoch), shared by the tests of this module."""
    out = tmp_path_factory.mktemp("enc") / "tuned"
    return tune_encoder(CARDS, out, epochs=1, seed=0)


def _cos_own_vs_others(embedder) -> tuple[float, float]:
    """Mean cosine of each probe to its own card's text, and to the other cards' texts."""
    texts = [card_text(c) for c in CARDS]
    probes = [(p, i) for i, row in enumerate(ZOO) for p in row[4]]
    cards = embedder.embed(texts)
    sims = embedder.embed([p for p, _ in probes]) @ cards.T
    own = np.array([sims[k, i] for k, (_, i) in enumerate(probes)])
    others = np.array([np.delete(sims[k], i).mean() for k, (_, i) in enumerate(probes)])
    return float(own.mean()), float(others.mean())


def test_pairs_take_passed_probes_and_task_labels():
    card = make_card(*ZOO[0], failed=["translate this french text"])
    pairs = tuning_pairs([card])
    text = card_text(card)
    assert len(pairs) == 6  # five passed probes and the card's own label pair; the failed one out
    assert ("transcribe this voice memo", text) in pairs
    assert (text, "Audio Automatic Speech Recognition") in pairs
    assert all(a != "translate this french text" for a, _ in pairs)
    # Without a tag naming the task more fully, the task name in words is the label.
    plain = card.model_copy(update={"tags": ["speech", "asr"]})
    assert label_text(plain) == "automatic speech recognition"


def test_too_few_pairs_are_refused_with_what_to_do(tmp_path):
    cards = [make_card(name, task, dom, desc, []) for name, task, dom, desc, _ in ZOO]
    with pytest.raises(UserError, match=r"6 pairs from 6 cards, at least 20 needed.*profile"):
        tune_encoder(cards, tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


def test_tuned_encoder_loads_is_named_apart_and_pulls_probes_to_their_card(tuned):
    manifest = json.loads((tuned.path / MANIFEST).read_text())
    assert manifest["base"] == MiniLMEmbedder.name and manifest["pairs"] == tuned.pairs == 36
    assert manifest["epochs"] == 1 and manifest["zoo_digest"] == tuned.digest
    embedder = TunedEmbedder(tuned.path)
    assert embedder.name.startswith("tuned-all-MiniLM-L6-v2:")
    assert embedder.name != MiniLMEmbedder.name
    before_own, before_others = _cos_own_vs_others(MiniLMEmbedder())
    after_own, after_others = _cos_own_vs_others(embedder)
    assert after_own > before_own  # probes moved towards their own card's text
    assert after_own - after_others > before_own - before_others  # and apart from the others


def test_tuning_is_deterministic_for_a_seed(tuned, tmp_path):
    again = tune_encoder(CARDS, tmp_path / "again", epochs=1, seed=0)
    texts = ["read the invoice aloud", "find the cats in the photo"]
    first = TunedEmbedder(tuned.path).embed(texts)
    second = TunedEmbedder(again.path).embed(texts)
    assert again.digest == tuned.digest
    assert np.allclose(first, second, atol=1e-5)


def test_not_a_tuned_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a tuned encoder folder"):
        TunedEmbedder(tmp_path)
    with pytest.raises(UserError, match="not a tuned encoder folder"):
        tune_encoder(CARDS, tmp_path)  # an unrelated, non-empty folder is not overwritten
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_scorer_with_the_tuned_encoder_ranks_held_out_requests(tuned, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path))
    scorer = CapabilityScorer(encoder=tuned.path)
    assert scorer.cache is not None and scorer.cache.path == tmp_path / "embeddings.sqlite"
    zoo = Zoo.from_cards(CARDS)
    for request, right in [
        ("please transcribe the interview tape", "whisper-small"),
        ("where are the trucks in this aerial photo", "detr-resnet"),
        ("condense this long email thread into a summary", "bart-cnn"),
    ]:
        top = rank_open(request, zoo, scorer, k=3)
        assert top[0].card.name == right, [c.card.name for c in top]
        assert "learned ranker" in top[0].parts.explain()
    # A card added later: only its own texts are embedded (a fresh scorer, the same disk cache).
    extra = make_card(
        "marian-de-en",
        "translation",
        "Natural Language Processing Translation",
        "Translates German text into English text.",
        [],
    )
    later = CapabilityScorer(encoder=tuned.path)
    later.index([*CARDS, extra])
    assert later.cache is not None and 1 <= later.cache.embedded_count <= 2


def test_cli_tunes_the_zoo_and_the_config_makes_runs_use_it(tmp_path, monkeypatch):
    from orchestrator.cli.main import app
    from orchestrator.config import Config
    from orchestrator.pipeline.orchestrator import Orchestrator

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(tmp_path / "orchestrator.toml"))
    (tmp_path / "orchestrator.toml").write_text("")
    extra = tmp_path / "cards"
    extra.mkdir()
    (extra / "mine.yaml").write_text(
        "name: mine\ntask: summarization\ndescription: Shortens long reports into key points.\n"
        "inputs: [{name: text, type: text}]\noutputs: [{name: summary, type: text}]\n"
        "backend: {kind: python, entry: 'os.path:basename'}\n"
    )
    out = tmp_path / "enc"
    args = ["cards", "tune-encoder", "--cards", str(extra), "--out", str(out), "--epochs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in result.output and "selection_encoder" in result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["cards"] == len(Zoo.load([extra])) and manifest["pairs"] >= 20
    # A folder of someone else's files is not overwritten.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "a.txt").write_text("x")
    refused = CliRunner().invoke(app, ["cards", "tune-encoder", "--out", str(tmp_path / "busy")])
    assert refused.exit_code == 2 and "not a tuned encoder folder" in refused.output

    config = Config(runs_dir=tmp_path / "runs", selection_encoder=out)
    zoo = Zoo.from_cards(CARDS)
    with Orchestrator(config, zoo=zoo, durable=False) as orch:
        assert orch.scorer.encoder == out
        step = {"id": "s1", "task": "summarization", "instruction": "sum up the report"}
        step["args"] = {"text": {"kind": "text", "value": "a long report"}}
        plan = Plan.model_validate({"request": "r", "subtasks": [step]})
        chosen = select_for_subtask(plan, plan.subtasks[0], zoo, orch.scorer)
        index = orch.scorer.index([CARDS[3]])
        assert index.cache is not None and index.cache.embedder.name == TunedEmbedder(out).name
        assert "learned ranker" in chosen.candidates[0].as_dict()["why"]
    bad = Config(runs_dir=tmp_path / "runs", selection_encoder=tmp_path / "busy")
    with pytest.raises(UserError, match="not a tuned encoder folder"):
        Orchestrator(bad, zoo=zoo, durable=False)


def test_an_embedding_cache_keeps_tuned_and_base_vectors_apart(tuned, tmp_path):
    db = tmp_path / "e.sqlite"
    text = ["transcribe this voice memo"]
    base = EmbeddingCache(MiniLMEmbedder(), db).vectors(text)
    tuned_cache = EmbeddingCache(TunedEmbedder(tuned.path), db)
    mine = tuned_cache.vectors(text)
    assert tuned_cache.embedded_count == 1  # not read back from the base model's entry
    assert not np.allclose(base, mine, atol=1e-6)
