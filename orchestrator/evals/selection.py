"""``orchestrator eval selection``: model selection on Gorilla APIBench (a real model zoo).

The API records (``api.jsonl``) become tool cards in memory (:mod:`orchestrator.cards.importers`);
each user instruction (``dev.jsonl``: the text between ``###Instruction:`` and ``###Output``)
is ranked against the whole zoo by the project's selector (no task type given: it is inferred).

Profile evidence is learned by cross-validation: the queries are split into folds; for each fold
the instructions of the *other* folds become probes (score 1) in the profile of their gold card,
and the fold's own instructions are scored. The selector fits its learned parts (task classifier
and pair ranker, :mod:`orchestrator.selection.learn`) on that zoo, i.e. on the cards' own text and
the other folds' instructions only, so every figure is held-out ("protocol" in the JSON).
``--folds 0`` scores with no probes at all (the model learns from the cards' own text only);
that figure is printed as "zero_shot".

``--tune-encoder`` also fine-tunes MiniLM per fold (:mod:`orchestrator.selection.embed_tune`) on
that fold's zoo - the cards and the other folds' queries as probes, the very data the fold's learned
model sees, never the fold's own queries - and ranks the fold with it. The tuned models are kept
under the cache folder by the digest of what they were tuned on, so a re-run does not tune again.
"zero_shot" and the baselines stay on the base MiniLM.

``--encoder PATH`` ranks with another sentence-transformers model (or a tuned encoder folder)
in place of MiniLM: the selector and "zero_shot" use it, the baselines stay on MiniLM.

Two baselines run in the same pass: "bm25" (Okapi BM25 over domain, functionality, api_name and
description) and "embedding" (cosine of MiniLM embeddings of the same text).

A zoo of another style: ``--zoo`` also reads UltraTool's ``tool_desc.json`` (260 everyday
tools: ``id``, ``desc``, ``domain``) and ``--queries`` its ``dev.jsonl``, whose plan steps
("Step 1 Call file_write to create a new document ...") become queries (the text after
"to", gold: the tool called); ``--limit`` keeps the first N queries. ``--zoo`` and ``--queries``
may be repeated in pairs: each zoo is evaluated on its own and printed in its own block.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.cards.importers import ImportedCard, cards_from_gorilla, read_gorilla
from orchestrator.cards.zoo import Zoo
from orchestrator.config import cache_dir
from orchestrator.embed import Embedder, EmbeddingCache, default_embedder
from orchestrator.errors import UserError
from orchestrator.evals.apps import eval_app
from orchestrator.selection.embed_tune import (
    TunedEmbedder,
    TunedModel,
    TuneOptions,
    cached_encoder,
    encoder_embedder,
)
from orchestrator.selection.rank import CapabilityScorer, rank_open
from orchestrator.text import LexicalIndex, tokens

__all__ = ["Query", "bm25_scores", "read_queries", "run_selection_eval"]

_INSTRUCTION = re.compile(r"###\s*Instruction\s*:(.*?)(?:###\s*Output|\Z)", re.S | re.I)
_STEP = re.compile(r"^\s*Step\s+\d+\s*:?\s*Call\s+(\w+)\s+(?:to\s+)?(.+)$", re.I)


@dataclass(frozen=True)
class Query:
    """One user instruction and its gold model."""

    instruction: str
    gold: str
    domain: str


def read_zoo(path: Path) -> list[dict[str, Any]]:
    """API records of a Gorilla ``api.jsonl``, or of UltraTool's ``tool_desc.json`` (as records)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return read_gorilla(path)  # JSON lines
    if not (isinstance(data, dict) and isinstance(data.get("nodes"), list)):
        return read_gorilla(path)
    records = []
    for node in data["nodes"]:
        if not isinstance(node, dict) or "id" not in node or "desc" not in node:
            raise UserError(f"{path}: each node needs 'id' and 'desc'")
        domains = node.get("domain") or ["tools"]
        desc = str(node["desc"])
        records.append(
            {
                "api_name": node["id"],
                "domain": str(domains[0]),
                "functionality": desc,
                "description": desc,
            }
        )
    return records


def _step_queries(record: dict[str, Any]) -> list[Query]:
    """One query per plan step of an UltraTool record (its domain is filled in from the zoo)."""
    out = []
    for step in record.get("task_steps") or []:
        match = _STEP.match(str(step))
        if match:
            out.append(Query(" ".join(match.group(2).split()), match.group(1), ""))
    return out


def read_queries(path: Path) -> list[Query]:
    """Queries of an eval file: APIBench's or UltraTool's JSON lines.

    APIBench lines have ``code`` and ``api_data``; UltraTool lines have ``task_steps``.
    """
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "task_steps" in record:
            queries += _step_queries(record)
            continue
        match = _INSTRUCTION.search(record.get("code", ""))
        api = record.get("api_data") or {}
        if match is None or "api_name" not in api:
            raise UserError(f"{path}:{number}: no '###Instruction:' text or no api_data.api_name")
        queries.append(
            Query(" ".join(match.group(1).split()), api["api_name"], api.get("domain", ""))
        )
    return queries


def _baseline_text(record: dict[str, Any]) -> str:
    return " ".join(
        str(record.get(k) or "") for k in ("domain", "functionality", "api_name", "description")
    )


def bm25_scores(
    documents: list[str], queries: list[str], k1: float = 1.5, b: float = 0.75
) -> np.ndarray:
    """Okapi BM25 score of every query (rows) against every document (columns)."""
    index = LexicalIndex(tokens(d) for d in documents)
    out = np.zeros((len(queries), index.size))
    for row, query in enumerate(queries):
        out[row] = index.bm25(tokens(query), k1, b)
    return out


def _with_domains(queries: list[Query], imported: list[ImportedCard]) -> list[Query]:
    """The queries, each without a domain given its gold model's domain in the zoo."""
    domain = {item.source_id: item.domain for item in imported}
    return [Query(q.instruction, q.gold, q.domain or domain.get(q.gold, "")) for q in queries]


def _metrics(
    ranked: list[list[int]], queries: list[Query], imported: list[ImportedCard]
) -> dict[str, Any]:
    n = len(queries)
    top1 = sum(
        imported[r[0]].source_id == q.gold for r, q in zip(ranked, queries, strict=True) if r
    )
    top5 = sum(
        q.gold in {imported[i].source_id for i in r[:5]}
        for r, q in zip(ranked, queries, strict=True)
    )
    dom = sum(imported[r[0]].domain == q.domain for r, q in zip(ranked, queries, strict=True) if r)
    return {
        "n": n,
        "top1": round(top1 / n, 4),
        "top5": round(top5 / n, 4),
        "domain_at_1": round(dom / n, 4),
    }


def _ceiling(
    ranked: list[list[int]], queries: list[Query], imported: list[ImportedCard]
) -> dict[str, Any]:
    """What a perfect domain classifier would add: the selector's order kept, other domains cut.

    ``top5_in_gold_domain`` bounds what any better domain guess can do for top-5 without a
    better order inside the domain.
    """
    kept = [
        [i for i in r if imported[i].domain == q.domain]
        for r, q in zip(ranked, queries, strict=True)
    ]
    hits = sum(
        q.gold in {imported[i].source_id for i in r[:5]} for r, q in zip(kept, queries, strict=True)
    )
    one = sum(
        bool(r) and imported[r[0]].source_id == q.gold for r, q in zip(kept, queries, strict=True)
    )
    n = len(queries)
    return {"top1_in_gold_domain": round(one / n, 4), "top5_in_gold_domain": round(hits / n, 4)}


def _baseline(
    scores: np.ndarray, queries: list[Query], imported: list[ImportedCard]
) -> dict[str, Any]:
    """A baseline's figures from its score matrix, and its own ceiling (gold domain given)."""
    ranks = [list(np.argsort(-row, kind="stable")) for row in scores]
    return {**_metrics(ranks, queries, imported), "ceiling": _ceiling(ranks, queries, imported)}


def _with_probes(imported: list[ImportedCard], queries: list[Query]) -> list[Any]:
    """The cards, each gold card of ``queries`` carrying those instructions as passed probes."""
    probes: dict[str, list[ProbeResult]] = {}
    for q in queries:
        probes.setdefault(q.gold, []).append(ProbeResult(instruction=q.instruction, score=1.0))
    out = []
    for item in imported:
        found = probes.get(item.source_id)
        card = item.card
        if found:
            card = card.model_copy(
                update={"profile": CapabilityProfile(card_digest="cv", probes=found)}
            )
        out.append(card)
    return out


def _selector_ranks(
    imported: list[ImportedCard],
    queries: list[Query],
    folds: int,
    scorer: CapabilityScorer,
    learned: list[dict[str, object]] | None = None,
    k: int = 5,
    fold_scorer: Callable[[list[ToolCard]], CapabilityScorer] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[list[int]]:
    """Top-``k`` rows per query; with ``folds`` > 1 each fold is ranked by a zoo of the others.

    ``fold_scorer`` makes the scorer of each fold from that fold's cards (default: ``scorer``).
    """
    row_of = {item.card.name: i for i, item in enumerate(imported)}
    ranked: list[list[int]] = [[] for _ in queries]
    groups = range(max(folds, 1))
    for fold in groups:
        train = [q for i, q in enumerate(queries) if folds > 1 and i % folds != fold]
        test = [i for i in range(len(queries)) if folds <= 1 or i % folds == fold]
        cards = _with_probes(imported, train)
        fold_ranker = scorer if fold_scorer is None else fold_scorer(cards)
        zoo = Zoo.from_cards(cards)
        for i in test:
            top = rank_open(queries[i].instruction, zoo, fold_ranker, k=k)
            ranked[i] = [row_of[c.card.name] for c in top]
        model = fold_ranker.index([e.card for e in zoo]).learned
        if learned is not None and model is not None:
            learned.append(model.describe())
        if progress is not None:
            got = _metrics([ranked[i] for i in test], [queries[i] for i in test], imported)
            progress(
                f"fold {fold + 1}/{len(groups)}: n={got['n']} top1={got['top1']:.3f} "
                f"top5={got['top5']:.3f} domain@1={got['domain_at_1']:.3f}"
            )
    return ranked


def _tuning_scorers(
    cache_path: Path | None,
    options: TuneOptions,
    tuned: list[TunedModel],
    progress: Callable[[str], None] | None,
) -> Callable[[list[ToolCard]], CapabilityScorer]:
    """Per fold: the encoder tuned on the fold's cards (reused from the cache folder if there)."""
    root = (cache_path.parent if cache_path is not None else cache_dir()) / "encoders"

    def make(cards: list[ToolCard]) -> CapabilityScorer:
        if progress is not None:
            progress(f"fold {len(tuned) + 1}: tuning the encoder on its zoo")
        model = cached_encoder(cards, root, options, progress)
        tuned.append(model)
        if progress is not None:
            done = "reused" if model.reused else f"tuned in {model.seconds:.0f} s"
            progress(f"fold {len(tuned)}: encoder {done} ({model.pairs} pairs) -> {model.path}")
        cache = EmbeddingCache(TunedEmbedder(model.path), cache_path)
        return CapabilityScorer(embed=True, cache=cache)

    return make


def _tuning_summary(tuned: list[TunedModel], options: TuneOptions) -> dict[str, Any]:
    pairs = sorted({t.pairs for t in tuned})
    count = str(pairs[0]) if len(pairs) == 1 else f"{pairs[0]}-{pairs[-1]}"
    plural = "" if options.epochs == 1 else "s"
    return {
        "encoder": f"tuned per fold ({count} pairs, {options.epochs} epoch{plural})",
        "tuning": {
            "pairs": [t.pairs for t in tuned],
            "seconds": [t.seconds for t in tuned],
            "reused": [t.reused for t in tuned],
            "seed": options.seed,
            "lr": options.lr,
            "batch_size": options.batch_size,
            "note": "zero_shot, bm25 and embedding use the base encoder",
        },
        "tuning_seconds": round(sum(t.seconds for t in tuned), 1),
    }


def run_selection_eval(
    zoo_path: Path,
    queries_path: Path,
    folds: int = 5,
    embed: bool = True,
    embedder: Embedder | None = None,
    cache_path: Path | None = None,
    tune: TuneOptions | None = None,
    progress: Callable[[str], None] | None = None,
    encoder: Path | None = None,
    limit: int = 0,
) -> dict[str, Any]:
    """The selector's (cross-validated) figures and the two baselines', in one JSON-able dict.

    ``embedder`` defaults to MiniLM; the embedding baseline uses the same one. With ``tune``,
    each fold's selector uses a MiniLM tuned on that fold's zoo (needs ``folds`` > 1). With
    ``encoder`` (a model folder), the selector embeds with it; the embedding baseline does not.
    """
    if tune is not None and (folds < 2 or not embed):
        raise UserError("--tune-encoder needs embeddings and at least 2 folds")
    if encoder is not None and (tune is not None or not embed):
        raise UserError("--encoder needs embeddings and cannot be combined with --tune-encoder")
    chosen = encoder_embedder(encoder) if encoder is not None else None
    records = read_zoo(zoo_path)
    imported = cards_from_gorilla(records)
    queries = _with_domains(read_queries(queries_path), imported)[: limit or None]
    if not queries:
        raise UserError(f"{queries_path}: no queries")
    started = time.perf_counter()
    cache = EmbeddingCache(embedder or default_embedder(), cache_path) if embed else None
    selector_cache = cache if chosen is None else EmbeddingCache(chosen, cache_path)
    scorer = CapabilityScorer(embed=embed, cache=selector_cache)
    result: dict[str, Any] = {"zoo": len(imported), "zoo_path": str(zoo_path), "folds": folds}
    result["protocol"] = (
        f"{folds}-fold cross-validated: each query is ranked by a selector whose probes and "
        "learned model come from the cards' own text and the other folds' queries only"
        if folds > 1
        else "zero-shot: cards' own text only"
    )
    if cache is not None:
        result["embedder"] = cache.embedder.name
    if chosen is not None and cache is not None:
        base = cache.embedder.name
        result["embedder"] = f"{chosen.name} (the selector's; the baselines': {base})"
    learned: list[dict[str, object]] = []
    tuned: list[TunedModel] = []
    fold_scorer = None
    if tune is not None:
        fold_scorer = _tuning_scorers(cache_path, tune, tuned, progress)
    ranks = _selector_ranks(
        imported, queries, folds, scorer, learned, len(imported), fold_scorer, progress
    )
    result.update(_metrics(ranks, queries, imported))
    result["ceiling"] = _ceiling(ranks, queries, imported)
    if learned:
        result["learned"] = learned
    if tune is not None:
        result.update(_tuning_summary(tuned, tune))
        result["embedder"] += " (the selector's: tuned per fold; the baselines': as named)"
    result["zero_shot"] = _metrics(_selector_ranks(imported, queries, 0, scorer), queries, imported)

    texts = [_baseline_text(r) for r in records]
    instructions = [q.instruction for q in queries]
    result["bm25"] = _baseline(bm25_scores(texts, instructions), queries, imported)
    if cache is not None:
        sims = cache.vectors(instructions) @ cache.vectors(texts).T
        result["embedding"] = _baseline(sims, queries, imported)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


@eval_app.command("selection")
def selection_command(
    zoo: Annotated[
        list[Path],
        typer.Option(
            "--zoo", help="Gorilla api.jsonl or UltraTool tool_desc.json (repeat for more zoos)"
        ),
    ],
    queries: Annotated[
        list[Path],
        typer.Option("--queries", help="APIBench or UltraTool eval JSON lines, one per --zoo"),
    ],
    folds: Annotated[
        int, typer.Option(help="cross-validation folds for profile evidence; 0: none")
    ] = 5,
    embed: Annotated[
        bool, typer.Option(help="use MiniLM embeddings (and the embedding baseline)")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    tune_encoder: Annotated[
        bool,
        typer.Option(
            "--tune-encoder", help="fine-tune MiniLM per fold on that fold's zoo (slow: minutes)"
        ),
    ] = False,
    epochs: Annotated[int, typer.Option(help="tuning epochs (with --tune-encoder)")] = 2,
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="the selector's encoder: a sentence-transformers model folder or a tuned one "
            "(the baselines keep MiniLM)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="first N queries of each zoo; 0: all")] = 0,
) -> None:
    """Top-1, top-5 and domain@1 of the selector on each zoo, with two baselines."""
    if len(zoo) != len(queries):
        typer.echo("error: give one --queries file per --zoo, in the same order", err=True)
        raise typer.Exit(2)
    for path in (*zoo, *queries):
        if not path.is_file():
            typer.echo(f"error: no file {path}", err=True)
            raise typer.Exit(2)
    tune = TuneOptions(epochs=epochs) if tune_encoder else None
    results = []
    for zoo_path, queries_path in zip(zoo, queries, strict=True):
        try:
            result = run_selection_eval(
                zoo_path,
                queries_path,
                folds,
                embed,
                tune=tune,
                progress=lambda m: typer.echo(m, err=True),
                encoder=encoder,
                limit=limit,
            )
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        results.append(result)
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else {"zoos": results}))
        return
    for result in results:
        _print_result(result)


def _print_result(result: dict[str, Any]) -> None:
    """One zoo's block: the protocol, each ranker's figures and their ceilings."""
    typer.echo(f"zoo: {result['zoo_path']} ({result['zoo']} cards)")
    typer.echo(f"protocol: {result['protocol']}")
    for model in result.get("learned", []):
        typer.echo(
            f"learned share {model['learned_share']:g} "
            f"(validated on {model['rank_examples']} of the zoo's own probes)"
        )
    for name in ("selector", "zero_shot", "bm25", "embedding"):
        row = result if name == "selector" else result.get(name)
        if row:
            typer.echo(
                f"{name:10s} n={row['n']} top1={row['top1']:.3f} top5={row['top5']:.3f} "
                f"domain@1={row['domain_at_1']:.3f}"
            )
    typer.echo("with the gold domain given (each ranker's order inside it):")
    for name in ("selector", "bm25", "embedding"):
        row = result if name == "selector" else result.get(name)
        if row:
            ceiling = row["ceiling"]
            typer.echo(
                f"{name:10s} top1={ceiling['top1_in_gold_domain']:.3f} "
                f"top5={ceiling['top5_in_gold_domain']:.3f}"
            )
