"""The selection eval on a tiny Gorilla-format zoo written here (never the shared data)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from orchestrator.embed import HashingEmbedder, MiniLMEmbedder
from orchestrator.evals.selection import bm25_scores, read_queries, run_selection_eval
from orchestrator.selection.embed_tune import TuneOptions
from orchestrator.selection.learn import FEATURES

API = [
    (
        "Audio Automatic Speech Recognition",
        "acme/asr-en",
        "Transcribes English speech recordings into text.",
    ),
    ("Audio Text-to-Speech", "acme/tts-en", "Synthesizes natural English speech audio from text."),
    (
        "Computer Vision Object Detection",
        "acme/detr",
        "Detects and locates objects such as cars and people in images.",
    ),
    (
        "Natural Language Processing Translation",
        "acme/fr-en",
        "Translates French sentences into English.",
    ),
    (
        "Natural Language Processing Summarization",
        "acme/bart-sum",
        "Summarizes long news articles into a few sentences.",
    ),
    (
        "Natural Language Processing Text Classification",
        "acme/sentiment",
        "Classifies the sentiment of reviews as positive or negative.",
    ),
]
QUERIES = [
    ("Transcribe the recording of our meeting into written text.", "acme/asr-en"),
    ("Turn this text into spoken speech audio for our app.", "acme/tts-en"),
    ("Locate every car in the traffic camera images.", "acme/detr"),
    ("Translate this French email into English.", "acme/fr-en"),
    ("Give me a short summary of this long news article.", "acme/bart-sum"),
    ("Is this product review positive or negative?", "acme/sentiment"),
    ("Make a transcript of the spoken interview recording.", "acme/asr-en"),
    ("Summarize the articles from today's news.", "acme/bart-sum"),
]


def write_fixture(tmp_path):
    api = tmp_path / "api.jsonl"
    api.write_text(
        "\n".join(
            json.dumps(
                {"domain": d, "functionality": d.split()[-1], "api_name": n, "description": t}
            )
            for d, n, t in API
        )
    )
    domains = {n: d for d, n, _ in API}
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "\n".join(
            json.dumps(
                {
                    "code": f"###Instruction: {q}\n###Output: <<<domain>>>: {domains[g]}",
                    "api_data": {"api_name": g, "domain": domains[g]},
                }
            )
            for q, g in QUERIES
        )
    )
    return api, dev


def test_queries_are_read_between_the_markers(tmp_path):
    _, dev = write_fixture(tmp_path)
    queries = read_queries(dev)
    assert len(queries) == len(QUERIES)
    assert queries[0].instruction == QUERIES[0][0] and queries[0].gold == "acme/asr-en"


def test_bm25_prefers_the_document_sharing_rare_words():
    scores = bm25_scores(
        ["speech recordings transcribe", "images objects detect"], ["detect objects"]
    )
    assert np.argmax(scores[0]) == 1 and scores[0, 0] == 0


def test_eval_reports_selector_and_both_baselines(tmp_path):
    api, dev = write_fixture(tmp_path)
    result = run_selection_eval(
        api, dev, folds=2, embedder=HashingEmbedder(), cache_path=tmp_path / "e.sqlite"
    )
    for row in (result, result["zero_shot"], result["bm25"], result["embedding"]):
        assert row["n"] == len(QUERIES)
        assert 0 <= row["top1"] <= row["top5"] <= 1 and 0 <= row["domain_at_1"] <= 1
    for row in (result, result["bm25"], result["embedding"]):
        # Cutting the other domains can only lift the gold card: never below the plain figure.
        assert row["ceiling"]["top1_in_gold_domain"] >= row["top1"]
        assert row["ceiling"]["top5_in_gold_domain"] >= row["top5"]
    # Six distinct, well-described models: the selector finds most of them.
    assert result["top5"] == 1.0
    assert result["top1"] >= 0.75 and result["domain_at_1"] >= 0.75
    # Held-out by construction, and the learned model of each fold is reported.
    assert result["protocol"].startswith("2-fold cross-validated")
    assert len(result["learned"]) == 2
    assert all(set(m["rank_weights"]) == set(FEATURES) for m in result["learned"])


def test_eval_command_prints_one_json_object(tmp_path):
    from orchestrator.cli.main import app

    api, dev = write_fixture(tmp_path)
    args = ["eval", "selection", "--zoo", str(api), "--queries", str(dev), "--json", "--no-embed"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert {"n", "top1", "top5", "domain_at_1", "bm25", "ceiling"} <= set(data)
    missing = CliRunner().invoke(
        app, ["eval", "selection", "--zoo", str(tmp_path / "no.jsonl"), "--queries", str(dev)]
    )
    assert missing.exit_code == 2


def test_selection_bench_on_a_small_synthetic_zoo(tmp_path):
    from orchestrator.evals.bench_selection import run_selection_bench, synthetic_cards

    cards = synthetic_cards(40)
    assert len({c.name for c in cards}) == 40 and sum(c.profile is not None for c in cards) == 8
    result = run_selection_bench(400, queries=20, embedder="hashing", cache_path=tmp_path / "e.db")
    assert result["cards"] == 400 and result["candidates_per_subtask"] == 20
    assert result["embedded_texts"] >= 400  # cards and probes, each embedded once
    assert 0 < result["p50_ms"] <= result["p99_ms"] < 5000
    assert result["learned"] is not None  # the timed selections went through the learned model


def test_ceiling_keeps_the_selector_order_inside_the_gold_domain(tmp_path):
    from orchestrator.cards.importers import cards_from_gorilla, read_gorilla
    from orchestrator.evals.selection import _ceiling

    api, dev = write_fixture(tmp_path)
    imported = cards_from_gorilla(read_gorilla(api))
    queries = read_queries(dev)[:2]  # gold acme/asr-en (row 0), then acme/tts-en (row 1)
    # Query 1: five wrong-domain cards ahead of the gold one, so plain top-5 misses it; with
    # the other domains cut it is first. Query 2: its gold card is not ranked at all.
    ranked = [[5, 4, 3, 2, 1, 0], [0, 2, 3]]
    assert _ceiling(ranked, queries, imported) == {
        "top1_in_gold_domain": 0.5,
        "top5_in_gold_domain": 0.5,
    }
    ranked[1] = [1]
    assert _ceiling(ranked, queries, imported)["top5_in_gold_domain"] == 1.0


def test_eval_tunes_one_encoder_per_fold_on_the_other_folds_and_reuses_it(tmp_path):
    api, dev = write_fixture(tmp_path)
    options = TuneOptions(epochs=1, min_pairs=5)  # the fixture is far below the default 20
    result = run_selection_eval(api, dev, folds=2, cache_path=tmp_path / "e.sqlite", tune=options)
    # Per fold: 6 card -> label pairs and the other fold's 4 queries, never its own 4.
    assert result["encoder"] == "tuned per fold (10 pairs, 1 epoch)"
    assert result["tuning"]["pairs"] == [10, 10] and result["tuning"]["reused"] == [False, False]
    assert result["tuning_seconds"] > 0 and len(result["learned"]) == 2
    # The baselines stay on the base model; the selector's encoder is said to be tuned.
    named = result["embedder"]
    assert named.startswith(MiniLMEmbedder.name) and "tuned per fold" in named
    assert result["n"] == len(QUERIES) and result["top5"] == 1.0
    assert result["domain_at_1"] >= 0.75 and result["embedding"]["n"] == len(QUERIES)
    assert len(list((tmp_path / "encoders").iterdir())) == 2
    again = run_selection_eval(api, dev, folds=2, cache_path=tmp_path / "e.sqlite", tune=options)
    assert again["tuning"]["reused"] == [True, True] and again["tuning_seconds"] == 0
    assert (again["top1"], again["top5"]) == (result["top1"], result["top5"])


def test_eval_command_refuses_tuning_it_cannot_do(tmp_path):
    from orchestrator.cli.main import app

    api, dev = write_fixture(tmp_path)
    base = ["eval", "selection", "--zoo", str(api), "--queries", str(dev), "--tune-encoder"]
    one_fold = CliRunner().invoke(app, [*base, "--folds", "1"])
    assert one_fold.exit_code == 2 and "at least 2 folds" in one_fold.output
    too_few = CliRunner().invoke(app, [*base, "--folds", "2"])
    assert too_few.exit_code == 2 and "at least 20 needed" in too_few.output
