"""``orchestrator bench executor``: what the sandboxed worker pool costs and how well it overlaps.

Prints: cold start of a sandboxed worker (and of an unsandboxed one, for comparison); warm call
overhead p50/p99 over the bare in-process model call (vader-sentiment when available, else the
bench tool); total time of 8 independent 1-second I/O-bound subtasks run in parallel; and the
speedup of 2 CPU-bound subtasks run in parallel over running them one after the other.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext
from orchestrator.evals.apps import bench_app

__all__ = ["bench_executor"]


def _bench_card(name: str) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": "The executor benchmark's tool: echo, sleep or spin.",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "python", "entry": "orchestrator.evals.bench_tools:load"},
            "cost": {"latency_s": 1.0, "load_s": 0.1, "memory_mb": 64},
        }
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _cold_start(pool: Any, ctx: CallContext, runs: int) -> float:
    loads = []
    for _ in range(runs):
        card = _bench_card(f"bench-cold-{uuid.uuid4().hex[:8]}")
        started = time.perf_counter()
        pool.call(card, {"text": "echo"}, ctx)
        loads.append(time.perf_counter() - started)
    return statistics.median(loads)


def _model_card() -> tuple[ToolCard, dict[str, Any]]:
    from orchestrator.cards.zoo import Zoo

    try:
        entry = Zoo.load([]).get("vader-sentiment")
        if entry.available:
            return entry.card, {"text": "What a wonderful, sunny day!"}
    except KeyError:
        pass
    return _bench_card("bench-echo"), {"text": "echo"}


def _warm_overhead(pool: Any, ctx: CallContext, calls: int) -> dict[str, float]:
    from orchestrator.cards.backend import load_tool

    card, inputs = _model_card()
    tool = load_tool(card)
    bare, pooled = [], []
    pool.call(card, inputs, ctx)  # warm up
    for _ in range(calls):
        started = time.perf_counter()
        tool(dict(inputs), ctx)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        pool.call(card, inputs, ctx)
        pooled.append(time.perf_counter() - started)
    return {
        "card": card.name,  # type: ignore[dict-item]
        "bare_p50": _percentile(bare, 50),
        "bare_p99": _percentile(bare, 99),
        "pool_p50": _percentile(pooled, 50),
        "pool_p99": _percentile(pooled, 99),
    }


def _parallel(pool: Any, ctx: CallContext, cards: list[ToolCard], text: str) -> float:
    for card in cards:
        pool.call(card, {"text": "echo"}, ctx)  # warm: start-up is measured separately
    started = time.perf_counter()
    with ThreadPoolExecutor(len(cards)) as threads:
        list(threads.map(lambda c: pool.call(c, {"text": text}, ctx), cards))
    return time.perf_counter() - started


def _spin_iterations(seconds: float) -> int:
    from orchestrator.evals.bench_tools import spin

    started = time.perf_counter()
    spin(200_000)
    per = (time.perf_counter() - started) / 200_000
    return int(seconds / per)


def _bare_process_speedup(iterations: int, repeats: int) -> float:
    """Serial over parallel time of two plain Python processes doing the same spin."""
    import subprocess
    import sys

    code = f"from orchestrator.evals.bench_tools import spin; spin({iterations})"

    def run(parallel: bool) -> float:
        started = time.perf_counter()
        if parallel:
            procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
            for proc in procs:
                proc.wait()
        else:
            for _ in range(2):
                subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    ratios = [run(False) / run(True) for _ in range(repeats)]
    return statistics.median(ratios)


@bench_app.command("executor")
def bench_executor(
    calls: Annotated[int, typer.Option(help="warm calls measured")] = 200,
    cold_runs: Annotated[int, typer.Option(help="cold starts measured")] = 5,
    cpu_seconds: Annotated[float, typer.Option(help="length of one CPU-bound subtask")] = 2.0,
    repeats: Annotated[int, typer.Option(help="CPU-bound runs (median reported)")] = 3,
) -> None:
    """Cold start, warm call overhead, I/O-bound and CPU-bound parallel efficiency."""
    from orchestrator.execution.pool import WorkerPoolExecutor
    from orchestrator.execution.sandbox import Sandbox

    scratch = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    ctx = CallContext(scratch=scratch, timeout_s=120)
    sandbox = Sandbox()
    print(f"sandbox mode: {sandbox.mode}")
    with WorkerPoolExecutor(max_workers=16, max_concurrency=16, sandbox=sandbox) as pool:
        cold = _cold_start(pool, ctx, cold_runs)
        with WorkerPoolExecutor(max_workers=4, sandbox=Sandbox(enabled=False)) as plain:
            cold_plain = _cold_start(plain, ctx, cold_runs)
        print(
            f"cold start (first call, worker start + load), median of {cold_runs}: "
            f"{cold * 1000:.0f} ms sandboxed, {cold_plain * 1000:.0f} ms unsandboxed"
        )
        warm = _warm_overhead(pool, ctx, calls)
        print(
            f"warm call on {warm['card']} ({calls} calls): "
            f"bare p50 {warm['bare_p50'] * 1000:.2f} ms"
            f" p99 {warm['bare_p99'] * 1000:.2f} ms; pool p50 {warm['pool_p50'] * 1000:.2f} ms"
            f" p99 {warm['pool_p99'] * 1000:.2f} ms"
        )
        over50 = (warm["pool_p50"] - warm["bare_p50"]) * 1000
        over99 = (warm["pool_p99"] - warm["bare_p99"]) * 1000
        print(
            f"warm call overhead over the bare call: p50 {over50:.2f} ms, p99 {over99:.2f} ms "
            f"(target p50 <= 5 ms: {'met' if over50 <= 5 else 'missed'})"
        )
        io_cards = [_bench_card(f"bench-io-{i}") for i in range(8)]
        io_total = _parallel(pool, ctx, io_cards, "sleep 1")
        print(
            f"8 independent 1-second I/O-bound subtasks in parallel: {io_total:.2f} s total "
            f"(target <= 1.3 s: {'met' if io_total <= 1.3 else 'missed'})"
        )
        load = os.getloadavg()[0]
        print(f"host load average before the CPU-bound runs: {load:.2f} ({os.cpu_count()} cores)")
        iterations = _spin_iterations(cpu_seconds)
        cpu_cards = [_bench_card(f"bench-cpu-{i}") for i in range(2)]
        for card in cpu_cards:
            pool.call(card, {"text": "echo"}, ctx)
        serials, parallels = [], []
        for _ in range(repeats):  # interleaved, so a busy moment on the host hits both
            started = time.perf_counter()
            for card in cpu_cards:
                pool.call(card, {"text": f"spin {iterations}"}, ctx)
            serials.append(time.perf_counter() - started)
            parallels.append(_parallel(pool, ctx, cpu_cards, f"spin {iterations}"))
        serial, parallel = statistics.median(serials), statistics.median(parallels)
        speedup = serial / parallel
        bare = _bare_process_speedup(iterations, repeats)
        print(
            f"the same work in 2 bare Python processes, no orchestrator (median of {repeats}): "
            f"speedup {bare:.2f} (what this host gives right now)"
        )
        print(
            f"2 CPU-bound subtasks (~{cpu_seconds:g} s each, median of {repeats}): "
            f"serial {serial:.2f} s, parallel "
            f"{parallel:.2f} s, speedup {speedup:.2f} on 2 cores "
            f"(target >= 1.7: {'met' if speedup >= 1.7 else 'missed'})"
        )
