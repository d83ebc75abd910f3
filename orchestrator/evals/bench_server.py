"""``orchestrator bench server``: the HTTP server under concurrent chat requests.

Starts ``orchestrator serve`` in a subprocess on a free port (its own runs folder in a
temporary directory), warms it with one request, then sends ``--requests`` chat completions
(default: as many as ``--concurrency``) with at most ``--concurrency`` in flight, all asking a
fast built-in card. Prints throughput, latency p50/p99, errors (any non-200 answer, or a run
whose status is not ``ok``) and the server's peak memory: the summed PSS (proportional set size:
shared pages split among the processes sharing them) of the server process and all its
descendants (the sandboxed worker processes), sampled every 0.1 s from ``/proc``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.evals.apps import bench_app

__all__ = ["ServerProcess", "bench_server", "launch_server", "tree_rss_mb"]

DEFAULT_PROMPT = "Is this sentence positive or negative: I love this sunny day"
START_TIMEOUT_S = 120.0


# --- the server in a subprocess ------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``orchestrator serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    base_url: str  # e.g. http://127.0.0.1:PORT
    workdir: Path
    log_path: Path

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server (it stops its worker processes) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def launch_server(
    workdir: Path,
    *,
    args: list[str] | None = None,
    config: str | None = None,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    wait: bool = True,
) -> ServerProcess:
    """Start ``orchestrator serve`` in ``workdir`` (runs under ``workdir/runs``).

    ``config`` is the text of an ``orchestrator.toml`` for it. With ``wait`` this returns once
    ``/health`` answers; a server that exits first raises RuntimeError with its output.
    """
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env["ORCHESTRATOR_RUNS_DIR"] = str(workdir / "runs")
    full_env.pop("ORCHESTRATOR_CONFIG", None)
    if config is not None:
        (workdir / "orchestrator.toml").write_text(config, encoding="utf-8")
        full_env["ORCHESTRATOR_CONFIG"] = str(workdir / "orchestrator.toml")
    command = [sys.executable, "-m", "orchestrator", "serve", "--host", host, "--port", str(port)]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command + list(args or []),
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", workdir, log_path)
    if not wait:
        return server
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not answer within {START_TIMEOUT_S} s:\n{server.log()[-3000:]}")


# --- memory of a process tree ------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; PSS splits shared pages among the processes sharing them.

    A process that cannot be read (it just ended) counts 0; without ``smaps_rollup`` PSS is RSS.
    """
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            pss = next((int(line.split()[1]) for line in f if line.startswith("Pss:")), rss)
    except OSError:
        pss = pss or rss
    return rss, pss


def tree_rss_mb(pid: int) -> tuple[float, float, int]:
    """Memory of ``pid`` and all its descendants: summed RSS (MB), summed PSS (MB), count.

    Summed RSS counts pages shared between processes (e.g. a child just forked, before it
    execs) once per process; summed PSS counts each page once.
    """
    children = _children_map()
    todo, seen = [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(children.get(current, []))
    sizes = [_memory_kb(p) for p in seen]
    return sum(r for r, _ in sizes) / 1024, sum(p for _, p in sizes) / 1024, len(seen)


@dataclass
class _MemorySampler:
    pid: int
    interval_s: float = 0.1
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        rss, pss, count = tree_rss_mb(self.pid)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        if pss > self.peak_pss_mb:
            self.peak_pss_mb, self.peak_processes = pss, count

    def __enter__(self) -> _MemorySampler:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


# --- the load ------------------------------------------------------------------------------


@dataclass
class _Outcome:
    seconds: float
    error: str | None = None


async def _one(client: Any, url: str, body: dict[str, Any], gate: asyncio.Semaphore) -> _Outcome:
    async with gate:
        started = time.perf_counter()
        try:
            response = await client.post(url, json=body)
        except Exception as exc:  # a transport failure is a counted error, not a crash
            return _Outcome(time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            return _Outcome(seconds, f"HTTP {response.status_code}: {response.text[:200]}")
        status = response.json().get("orchestrator", {}).get("status")
        return _Outcome(seconds, None if status == "ok" else f"run status {status}")


async def _load(
    base_url: str, body: dict[str, Any], requests: int, concurrency: int, timeout: float
) -> tuple[list[_Outcome], float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        url = f"{base_url}/v1/chat/completions"
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(_one(client, url, body, gate) for _ in range(requests)))
        return list(outcomes), time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_bench(
    *,
    concurrency: int,
    requests: int,
    prompt: str,
    model: str,
    max_concurrent_runs: int | None,
    timeout: float,
) -> dict[str, Any]:
    """Start a server, load it, stop it; return the figures."""
    import httpx

    config = None
    if max_concurrent_runs is not None:
        config = f"[server]\nmax_concurrent_runs = {max_concurrent_runs}\n"
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        started = time.perf_counter()
        server = launch_server(Path(tmp), config=config)
        startup = time.perf_counter() - started
        try:
            with _MemorySampler(server.proc.pid) as memory:
                _, idle_mb, _ = tree_rss_mb(server.proc.pid)
                warm_started = time.perf_counter()
                warm = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=300)
                warmup = time.perf_counter() - warm_started
                if warm.status_code != 200:
                    raise RuntimeError(f"warm-up request failed: {warm.status_code} {warm.text}")
                card = ", ".join(s["card"] or "?" for s in warm.json()["orchestrator"]["steps"])
                outcomes, wall = asyncio.run(
                    _load(server.base_url, body, requests, concurrency, timeout)
                )
        finally:
            server.stop()
    latencies = [o.seconds for o in outcomes]
    errors = [o.error for o in outcomes if o.error]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "model": model,
        "prompt": prompt,
        "cards_used": card,
        "max_concurrent_runs": max_concurrent_runs or 4,
        "server_start_s": round(startup, 2),
        "warmup_request_s": round(warmup, 3),
        "wall_s": round(wall, 3),
        "throughput_rps": round(requests / wall, 2),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(_percentile(latencies, 99), 3),
        "latency_max_s": round(max(latencies), 3),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "idle_pss_mb": round(idle_mb, 1),
        "peak_pss_mb": round(memory.peak_pss_mb, 1),
        "peak_processes": memory.peak_processes,
        "peak_rss_sum_mb": round(memory.peak_rss_mb, 1),
    }


@bench_app.command("server")
def bench_server(
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight at once")] = 50,
    requests: Annotated[
        int | None, typer.Option(min=1, help="requests sent (default: --concurrency)")
    ] = None,
    prompt: Annotated[str, typer.Option(help="the request sent")] = DEFAULT_PROMPT,
    model: Annotated[str, typer.Option(help="'orchestrator' or a card name")] = "orchestrator",
    max_concurrent_runs: Annotated[
        int | None, typer.Option(min=1, help="the server's runs at once (default: its config)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds one request may take")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Throughput, latency p50/p99, errors and peak memory of the server under load."""
    figures = run_bench(
        concurrency=concurrency,
        requests=requests or concurrency,
        prompt=prompt,
        model=model,
        max_concurrent_runs=max_concurrent_runs,
        timeout=timeout,
    )
    if as_json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{figures['requests']} chat requests, {figures['concurrency']} concurrent, "
            f"model {figures['model']} (cards used: {figures['cards_used']}), "
            f"server runs at once: {figures['max_concurrent_runs']}"
        )
        print(
            f"throughput {figures['throughput_rps']} requests/s "
            f"({figures['wall_s']} s wall); latency p50 {figures['latency_p50_s']} s, "
            f"p99 {figures['latency_p99_s']} s, max {figures['latency_max_s']} s"
        )
        print(
            f"errors: {figures['errors']}"
            + (f" (e.g. {figures['error_examples'][0]})" if figures["errors"] else "")
        )
        print(
            f"server memory (PSS of the server and its worker processes): idle before the "
            f"first request {figures['idle_pss_mb']} MB, peak {figures['peak_pss_mb']} MB over "
            f"{figures['peak_processes']} processes (summed RSS peak "
            f"{figures['peak_rss_sum_mb']} MB, counting shared pages per process)"
        )
        print(
            f"server start {figures['server_start_s']} s; warm-up request "
            f"{figures['warmup_request_s']} s (not in the figures above)"
        )
    if figures["errors"]:
        raise typer.Exit(1)
