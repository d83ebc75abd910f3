"""Profiling reads every backend's output shapes: tiny random transformers and diffusers models.

A feature-extraction pipeline answers with token vectors nested in lists, a classification
pipeline with a nested list of label records, a diffusers pipeline with an image file: each is
profiled on its task's built-in test without an error (the scores of random weights are low, and
whatever they are, they are computed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_backend_diffusers import tiny_text_to_image
from test_backend_diffusers import write_card as write_image_card
from test_backend_transformers import word_tokenizer, write_card

from orchestrator.cards.backend import CallContext, load_tool
from orchestrator.cards.probes.checks import as_label, as_vector
from orchestrator.cards.zoo import Zoo
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.execution.profiling import profile_card


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bert(folder, head: str, **config):
    import transformers

    tokenizer, vocab = word_tokenizer(["<unk>", "<pad>", "<eos>", "[CLS]", "[SEP]"], cls_sep=True)
    settings = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        **config,
    )
    getattr(transformers, head)(settings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _no_errors(record):
    assert record["probes"] and all("error" not in p for p in record["probes"]), record["probes"]
    assert all(0.0 <= p["score"] <= 1.0 for p in record["probes"])


def test_feature_extraction_token_vectors_are_pooled(tmp_path):
    folder = _bert(tmp_path / "bert", "BertModel")
    card = write_card(
        tmp_path,
        "tiny-embedder",
        [{"name": "text", "type": "text"}],
        [{"name": "vector", "type": "json"}],
        {"kind": "transformers", "task": "feature-extraction", "model": str(folder)},
    )
    raw = load_tool(card)({"text": "the cat"}, CallContext(scratch=tmp_path))["vector"]
    assert np.asarray(raw).ndim == 3  # [batch][tokens][hidden]
    assert as_vector(raw).shape == (16,)
    _no_errors(profile_card(card, executor=InProcessExecutor()))


def test_a_classifier_answering_with_nested_label_records_is_scored(tmp_path):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    folder = _bert(
        tmp_path / "bert",
        "BertForSequenceClassification",
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    card = write_card(
        tmp_path,
        "tiny-classifier",
        [{"name": "text", "type": "text"}],
        [{"name": "scores", "type": "json"}, {"name": "label", "type": "text"}],
        {
            "kind": "transformers",
            "task": "text-classification",
            "model": str(folder),
            "call_options": {"top_k": None},
        },
    )
    out = load_tool(card)({"text": "the cat"}, CallContext(scratch=tmp_path))
    assert isinstance(out["scores"], list) and as_label(out["scores"]) == out["label"].lower()
    _no_errors(profile_card(card, executor=InProcessExecutor()))


def test_a_diffusers_image_is_judged_by_the_zoos_classifier(tmp_path):
    folder = tiny_text_to_image(tmp_path / "sd")
    card = write_image_card(
        tmp_path,
        "tiny-sd",
        [{"name": "prompt", "type": "text"}],
        {
            "kind": "diffusers",
            "model": str(folder),
            "pipeline": "DiffusionPipeline",
            "call_options": {"num_inference_steps": 2, "guidance_scale": 0.0, "seed": 7},
        },
    )
    executor = InProcessExecutor()
    assert card.task == "text-to-image"
    record = profile_card(card, executor=executor, helpers=Zoo.load())
    _no_errors(record)
    assert executor.is_warm(Zoo.load().get("efficientnet-lite0").card)  # the classifier looked
