"""The learned parts of selection: task classifier, pair ranker, fitted per zoo and cached."""

import numpy as np

from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.embed import EmbeddingCache, HashingEmbedder
from orchestrator.selection.capability import CardIndex
from orchestrator.selection.learn import (
    FEATURES,
    SelectionModel,
    fit_listwise,
    fit_selection_model,
    fit_softmax,
)
from orchestrator.selection.rank import CapabilityScorer, rank_open


def test_softmax_regression_separates_three_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    x = np.vstack([c + 0.2 * rng.standard_normal((40, 8)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(3), 40)
    w, b = fit_softmax(x, y, 3)
    assert w.shape == (8, 3) and b.shape == (3,)
    assert ((x @ w + b).argmax(axis=1) == y).mean() > 0.95


def test_listwise_ranker_learns_which_feature_marks_the_right_row():
    rng = np.random.default_rng(1)
    groups, rows = 200, 30
    x = rng.standard_normal((groups * rows, 3))
    group = np.repeat(np.arange(groups), rows)
    right = np.arange(groups) * rows + rng.integers(0, rows, groups)
    x[right, 1] += 2.0  # the right row of each group stands out on feature 1 only
    y = np.zeros(groups * rows)
    y[right] = 1.0
    w = fit_listwise(x, group, y)
    assert w[1] > 1.0 and abs(w[0]) < 0.3 * w[1] and abs(w[2]) < 0.3 * w[1]
    # Weak features (cosine-sized) that carry no signal: the weights stay near the prior.
    noise = 0.05 * rng.standard_normal((groups * rows, 3))
    flat = fit_listwise(noise, group, y, prior=np.ones(3))
    assert np.allclose(flat, 1.0, atol=0.35)


TOPICS = {
    "automatic-speech-recognition": ["transcribe the speech in this recording", "audio", "text"],
    "text-to-speech": ["read this sentence aloud with a voice", "text", "audio"],
    "image-classification": ["what kind of animal is in this photo", "image", "json"],
}


def _zoo_cards(profiled: bool) -> list[ToolCard]:
    cards = []
    for task, (probe, given, made) in TOPICS.items():
        for i in range(6):
            profile = None
            if profiled:
                probes = [ProbeResult(instruction=f"{probe} number {j}", score=1.0) for j in (i,)]
                profile = CapabilityProfile(card_digest="t", probes=probes)
            cards.append(
                ToolCard.model_validate(
                    {
                        "name": f"{task}-{i}",
                        "task": task,
                        "description": f"A {task.replace('-', ' ')} model, variant {i}",
                        "inputs": [{"name": "x", "type": given}],
                        "outputs": [{"name": "y", "type": made}],
                        "backend": {"kind": "python", "entry": "os.path:basename"},
                        "profile": profile,
                    }
                )
            )
    return cards


def test_task_classifier_learns_tasks_from_probes_and_ranker_from_probes(tmp_path):
    cache = EmbeddingCache(HashingEmbedder(), tmp_path / "e.sqlite")
    index = CardIndex(_zoo_cards(profiled=True), cache)
    model = fit_selection_model(index, cache.embedder.name, folds=3)
    assert model.rank_examples == 0  # 18 passed probes, below the minimum: default weights
    probs = model.task_probs(cache.query_vector("please transcribe the speech in this recording"))
    assert model.tasks[int(np.argmax(probs))] == "automatic-speech-recognition"
    assert abs(float(probs.sum()) - 1.0) < 1e-5


def test_ranker_weights_are_learned_when_enough_probes_pass(tmp_path):
    cards = []
    for task, (probe, given, made) in TOPICS.items():
        for i in range(12):
            # Each card's probes name its own subject; the description names it too.
            subject = f"subject{task[:4]}{i}"
            probes = [
                ProbeResult(instruction=f"{probe} about {subject} {w}", score=1.0)
                for w in ("today", "please")
            ]
            cards.append(
                ToolCard.model_validate(
                    {
                        "name": f"{task}-{i}",
                        "task": task,
                        "description": f"A {task.replace('-', ' ')} model for {subject}",
                        "inputs": [{"name": "x", "type": given}],
                        "outputs": [{"name": "y", "type": made}],
                        "backend": {"kind": "python", "entry": "os.path:basename"},
                        "profile": CapabilityProfile(card_digest="t", probes=probes),
                    }
                )
            )
    cache = EmbeddingCache(HashingEmbedder(), tmp_path / "e.sqlite")
    model = fit_selection_model(CardIndex(cards, cache), cache.embedder.name, folds=2)
    assert model.rank_examples == 72
    weights = dict(zip(FEATURES, model.rank_weights, strict=True))
    # The held-out probe's card is the one whose other probe (and text) matches it.
    assert weights["evidence"] > 0 and weights["lexical"] + weights["dense"] > 0


def test_scorer_fits_once_saves_next_to_the_cache_and_explains_the_ranker(tmp_path):
    cards = _zoo_cards(profiled=True)
    path = tmp_path / "e.sqlite"
    scorer = CapabilityScorer(embed=True, cache=EmbeddingCache(HashingEmbedder(), path))
    query = "transcribe the speech in this recording"
    top = rank_open(query, Zoo.from_cards(cards), scorer, k=3)
    # 18 passed probes are too few to tell whether the learned ranker helps: the embedding
    # order ranks (the plain cosine of the instruction to each card's text).
    index = scorer.index(cards)
    assert index.learned is not None and index.learned.learned_share == 0.0
    cosine = index.card_vecs @ scorer.cache.query_vector(query)
    assert top[0].card.name == cards[int(np.argmax(cosine))].name
    assert top[0].parts.learned is not None and set(top[0].parts.learned) == set(FEATURES)
    assert "learned ranker" in top[0].parts.explain()
    saved = list((tmp_path / "selection").glob("*.npz"))
    assert len(saved) == 1
    stamp = saved[0].stat().st_mtime_ns
    loaded = SelectionModel.load(saved[0])
    assert loaded is not None and loaded.tasks == tuple(sorted(TOPICS))

    # A new scorer (a new process) reads the model back instead of fitting it again.
    again = CapabilityScorer(embed=True, cache=EmbeddingCache(HashingEmbedder(), path))
    same = rank_open("transcribe the speech in this recording", Zoo.from_cards(cards), again, k=3)
    assert [c.card.name for c in same] == [c.card.name for c in top]
    assert saved[0].stat().st_mtime_ns == stamp

    # Editing one card changes the digest: a new model is fitted for the new zoo.
    edited = [cards[0].model_copy(update={"description": "A changed speech model"}), *cards[1:]]
    rank_open("transcribe this", Zoo.from_cards(edited), again, k=1)
    assert len(list((tmp_path / "selection").glob("*.npz"))) == 2


def test_learning_can_be_turned_off(tmp_path):
    cache = EmbeddingCache(HashingEmbedder(), tmp_path / "e.sqlite")
    scorer = CapabilityScorer(embed=True, learn=False, cache=cache)
    top = rank_open("read this sentence aloud", Zoo.from_cards(_zoo_cards(False)), scorer, k=1)
    assert top[0].parts.learned is None
    assert not (tmp_path / "selection").exists()


def test_a_damaged_model_file_is_read_as_missing(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"not a numpy archive")
    assert SelectionModel.load(path) is None
    assert SelectionModel.load(tmp_path / "absent.npz") is None
