"""``orchestrator bench selection``: selection speed on a large synthetic zoo.

Builds ``--cards`` synthetic tool cards (random descriptions over a fixed vocabulary, spread over
task types, a fifth of them with a small profile), builds the selector's index (embedding every
card and probe through the on-disk cache, and fitting the learned selection model of the
candidates: task classifier and pair ranker), then times ``select_for_subtask`` for one subtask
over many instructions: p50 and p99 in milliseconds. ``--embedder hashing`` swaps MiniLM for
a feature-hashing embedder, to time the index without the model's embedding cost.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.embed import EmbeddingCache, HashingEmbedder, default_embedder
from orchestrator.evals.apps import bench_app
from orchestrator.plan import Plan
from orchestrator.selection.capability import card_text
from orchestrator.selection.rank import CapabilityScorer, select_for_subtask

__all__ = ["run_selection_bench", "synthetic_cards"]

TASKS = (
    "text-classification",
    "summarization",
    "translation",
    "text-generation",
    "image-to-text",
    "image-classification",
    "object-detection",
    "automatic-speech-recognition",
    "text-to-speech",
    "feature-extraction",
    "token-classification",
    "question-answering",
    "fill-mask",
    "text-to-image",
    "depth-estimation",
    "image-segmentation",
    "audio-classification",
    "zero-shot-classification",
    "table-question-answering",
    "sentence-similarity",
)
_WORDS = (
    "model fast small large accurate multilingual english medical legal finance news review "
    "speech voice image photo document invoice receipt table chart label sentiment topic emotion "
    "language entity person place date product customer support email chat answer question "
    "summary translation caption object face animal car street scene depth mask segment audio "
    "music noise speaker keyword search similar duplicate cluster vector code math story poem"
).split()


def synthetic_cards(n: int, seed: int = 0) -> list[ToolCard]:
    """``n`` valid cards with random descriptions; every fifth card has a 3-probe profile."""
    rng = random.Random(seed)
    cards = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        words = " ".join(rng.choice(_WORDS) for _ in range(12))
        profile = None
        if i % 5 == 0:
            probes = [
                ProbeResult(
                    instruction=" ".join(rng.choice(_WORDS) for _ in range(6)), score=rng.random()
                )
                for _ in range(3)
            ]
            profile = CapabilityProfile(card_digest="synthetic", probes=probes)
        cards.append(
            ToolCard(
                name=f"synthetic-{i:06d}",
                task=task,
                description=f"{task.replace('-', ' ')} {words}",
                inputs=[{"name": "text", "type": "text"}],
                outputs=[{"name": "out", "type": "text"}],
                backend={"kind": "python", "entry": "os.path:basename"},
                tags=[rng.choice(_WORDS), rng.choice(_WORDS)],
                profile=profile,
            )
        )
    return cards


def run_selection_bench(
    n_cards: int, queries: int = 200, embedder: str = "minilm", cache_path: Path | None = None
) -> dict[str, Any]:
    """Index build time and per-subtask selection latency on a synthetic zoo of ``n_cards``."""
    started = time.perf_counter()
    cards = synthetic_cards(n_cards)
    zoo = Zoo.from_cards(cards)
    make_s = time.perf_counter() - started
    model = default_embedder() if embedder == "minilm" else HashingEmbedder()
    cache = EmbeddingCache(model, cache_path)
    scorer = CapabilityScorer(embed=True, cache=cache)
    task = TASKS[0]
    started = time.perf_counter()
    candidates = [e.card for e in zoo.for_task(task)]
    index = scorer.index(candidates)  # fits (or reads back) the learned selection model too
    # The whole zoo's vectors too (what a zoo-wide index costs), through the same cache.
    cache.vectors([card_text(c) for c in cards])
    build_s = time.perf_counter() - started
    rng = random.Random(1)
    latencies = []
    for _ in range(queries):
        instruction = "please " + " ".join(rng.choice(_WORDS) for _ in range(8))
        plan = Plan.model_validate(
            {
                "request": instruction,
                "subtasks": [
                    {
                        "id": "s1",
                        "task": task,
                        "instruction": instruction,
                        "args": {"text": {"kind": "text", "value": "x"}},
                    }
                ],
            }
        )
        t0 = time.perf_counter()
        selection = select_for_subtask(plan, plan.subtasks[0], zoo, scorer)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert selection.candidates
    latencies.sort()
    return {
        "cards": n_cards,
        "candidates_per_subtask": len(candidates),
        "embedder": model.name,
        "embedded_texts": cache.embedded_count,
        "zoo_make_s": round(make_s, 2),
        "index_build_s": round(build_s, 2),
        "queries": queries,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "learned": None if index.learned is None else index.learned.describe(),
    }


@bench_app.command("selection")
def bench_selection_command(
    cards: Annotated[int, typer.Option(help="synthetic zoo size")] = 100_000,
    queries: Annotated[int, typer.Option(help="instructions to time")] = 200,
    embedder: Annotated[str, typer.Option(help="minilm or hashing")] = "minilm",
    fresh_cache: Annotated[bool, typer.Option(help="use an empty embedding cache")] = False,
) -> None:
    """Index build time and query latency p50/p99 of selection on a synthetic zoo."""
    if embedder not in ("minilm", "hashing"):
        typer.echo("error: --embedder must be minilm or hashing", err=True)
        raise typer.Exit(2)
    for option, value in (("--cards", cards), ("--queries", queries)):
        if value < 1:
            typer.echo(f"error: {option} must be at least 1, got {value}", err=True)
            raise typer.Exit(2)
    if fresh_cache:
        with tempfile.TemporaryDirectory() as folder:
            result = run_selection_bench(cards, queries, embedder, Path(folder) / "e.sqlite")
    else:
        result = run_selection_bench(cards, queries, embedder)
    typer.echo(json.dumps(result))
