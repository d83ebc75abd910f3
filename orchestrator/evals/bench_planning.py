"""``orchestrator bench planning``: planning time per request, and the same plan twice.

The requests are generated from phrasings people use (one capability, chains of two or three,
several files, questions, out-of-zoo asks) over file names and quoted texts, shuffled with a
fixed seed; or read from ``--requests FILE`` (one request per line). Each request is planned
twice over the zoo (the built-in cards, plus ``--cards`` folders) the way a run plans it: the
embedded planner, then the shared plan check (``orchestrator.planning.checked_plan``). A refusal (a
request the zoo cannot serve) is a planning outcome too, timed and compared like a plan. Printed:
the time to build the planner's card index once, p50/p99/max milliseconds per request, and how many
requests got a different plan (or refusal) the second time.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cards.zoo import Zoo
from orchestrator.errors import UserError
from orchestrator.evals.apps import bench_app

__all__ = ["generated_requests", "run_planning_bench"]

_TEMPLATES = (
    "Transcribe {audio}",
    "can you write down what is said in {audio}",
    "what does the text in {image} say?",
    "Which language is the text in {image} written in?",
    "is the text in {image} positive or negative",
    "What's in {image}?",
    "how many faces are in {image}",
    'Read "{text}" out loud',
    "pls tell me what language this is: {text}",
    'is "{text}" a positive or a negative review?',
    "Transcribe {audio} and tell me whether it sounds positive",
    "transcribe {audio}, then read the transcript back to me",
    "Read the text in {image} and {image2}",
    "transcribe {audio} and {audio2}",
    "Say the transcript of {audio} back to me in a calmer voice",
    "what is the mood of the text in {image}, and which language is it",
    "What is the capital of {place}?",
    "tell me a joke about {thing}",
    "Write a haiku about {thing} and read it aloud",
    "Caption {image}",
    "Draw me a picture of {thing}",
    "Translate '{text}' into Japanese",
    "summarize {doc}",
    "Book a table for two in {place} tonight",
    "How similar are '{text}' and '{text2}'?",
)
_FILLS = {
    "audio": ["memo.wav", "meeting.mp3", "call.flac", "note.ogg"],
    "image": ["sign.png", "scan.jpg", "receipt.webp", "photo.jpeg"],
    "doc": ["notes.txt", "report.md"],
    "text": [
        "the soup was cold and the waiter was rude",
        "Le chat noir dort sur le canape",
        "what a wonderful sunny morning",
        "Ich habe heute keine Zeit",
    ],
    "place": ["France", "Lisbon", "Kyoto"],
    "thing": ["the sea", "a red fox", "autumn leaves", "a lighthouse"],
}


def generated_requests(count: int, seed: int = 0) -> list[str]:
    """``count`` requests from the templates, filled and shuffled with ``seed``."""
    rng = random.Random(seed)
    requests = []
    for n in range(count):
        template = _TEMPLATES[n % len(_TEMPLATES)]
        values = {}
        for key, options in _FILLS.items():
            first, second = rng.sample(options, 2)
            values[key], values[f"{key}2"] = first, second
        requests.append(template.format(**values))
    rng.shuffle(requests)
    return requests


def _plan_once(planner: Any, zoo: Zoo, request: str) -> tuple[float, str]:
    """Milliseconds to plan ``request`` as a run does, and the plan (or refusal) as text."""
    from orchestrator.planning import checked_plan

    started = time.perf_counter()
    try:
        plan = planner.plan(request, zoo)
        plan = checked_plan(plan, zoo, [], lambda: planner.plan(request, zoo))
        outcome = json.dumps(plan.model_dump(mode="json"), sort_keys=True)
    except UserError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - started) * 1000, outcome


def run_planning_bench(zoo: Zoo, requests: list[str]) -> dict[str, Any]:
    """Plan each request twice; the figures as a dict."""
    from orchestrator.planning.embedded import EmbeddedPlanner

    planner = EmbeddedPlanner()
    started = time.perf_counter()
    _plan_once(planner, zoo, "Transcribe a.wav")  # builds the card index once per zoo
    build_ms = (time.perf_counter() - started) * 1000
    latencies: list[float] = []
    differing: list[str] = []
    refused = 0
    for request in requests:
        first_ms, first = _plan_once(planner, zoo, request)
        second_ms, second = _plan_once(planner, zoo, request)
        latencies += [first_ms, second_ms]
        refused += not first.startswith("{")
        if first != second:
            differing.append(request)
    latencies.sort()
    return {
        "cards": len(zoo),
        "requests": len(requests),
        "refused": refused,
        "index_build_ms": round(build_ms, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "max_ms": round(latencies[-1], 2),
        "different_second_time": len(differing),
        "examples_different": differing[:3],
    }


def _read_requests(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    requests = [line.strip() for line in lines if line.strip()]
    if not requests:
        raise UserError(f"{path} has no requests: write one request per line")
    return requests


@bench_app.command("planning")
def bench_planning_command(
    count: Annotated[int, typer.Option(help="generated requests to plan")] = 500,
    seed: Annotated[int, typer.Option(help="seed of the generated requests")] = 0,
    requests: Annotated[
        Path | None, typer.Option(help="plan these requests instead (one per line)")
    ] = None,
    cards: Annotated[list[Path] | None, typer.Option(help="extra folder of tool cards")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Milliseconds per request (p50/p99) of the embedded planner, and that it is deterministic."""
    if count < 1:
        typer.echo(f"error: --count must be at least 1, got {count}", err=True)
        raise typer.Exit(2)
    try:
        zoo = Zoo.load(cards or [])
        chosen = _read_requests(requests) if requests else generated_requests(count, seed)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    result = run_planning_bench(zoo, chosen)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"planned {result['requests']} requests twice over {result['cards']} cards "
        f"({result['refused']} refused as the zoo cannot serve them); "
        f"card index built once in {result['index_build_ms']} ms"
    )
    typer.echo(
        f"ms per request: p50 {result['p50_ms']}, p99 {result['p99_ms']}, max {result['max_ms']}"
    )
    typer.echo(
        f"deterministic: {result['requests'] - result['different_second_time']}/"
        f"{result['requests']} requests planned the same way twice"
    )
