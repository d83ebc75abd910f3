"""``orchestrator bench server`` on a small load (the issue's figures use --concurrency 50)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from orchestrator.evals.bench_server import tree_rss_mb


def test_memory_of_a_process_tree_counts_the_children():
    alone_rss, alone_pss, alone_count = tree_rss_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rss, pss, count = tree_rss_mb(os.getpid())
        assert count == alone_count + 1
        assert rss > alone_rss + 3  # a Python interpreter holds several MB
        assert 0 < pss <= rss
    finally:
        child.kill()
        child.wait()


def test_bench_prints_throughput_latency_errors_and_memory():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "bench",
            "server",
            "--concurrency",
            "4",
            "--requests",
            "8",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout)
    assert figures["requests"] == 8 and figures["errors"] == 0
    assert figures["cards_used"] == "vader-sentiment"
    assert figures["throughput_rps"] > 0
    assert 0 < figures["latency_p50_s"] <= figures["latency_p99_s"] <= figures["latency_max_s"]
    assert 0 < figures["idle_pss_mb"] <= figures["peak_pss_mb"]
    assert figures["peak_processes"] >= 2  # the server and its sandboxed worker
