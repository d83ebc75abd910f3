"""``orchestrator bench planning``: per-request planning time and determinism, printed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from orchestrator.evals.bench_planning import generated_requests


def _bench(*args: str):
    from orchestrator.cli.main import app

    return CliRunner().invoke(app, ["bench", "planning", *args])


def test_bench_planning_prints_latency_and_determinism():
    result = _bench("--count", "60")
    assert result.exit_code == 0, result.output
    assert "ms per request: p50" in result.output and "p99" in result.output
    assert "deterministic: 60/60 requests planned the same way twice" in result.output
    figures = json.loads(_bench("--count", "60", "--json").output)
    assert figures["requests"] == 60 and figures["different_second_time"] == 0
    # Out-of-zoo requests are among them, and refused; the rest are planned.
    assert 0 < figures["refused"] < 60
    assert figures["p50_ms"] < 50  # the target, with room for a busy machine


def test_bench_planning_reads_typed_requests_and_refuses_an_empty_file(tmp_path):
    typed = tmp_path / "requests.txt"
    typed.write_text("Transcribe memo.wav\n\nwhat language is this: Ich habe keine Zeit\n")
    figures = json.loads(_bench("--requests", str(typed), "--json").output)
    assert figures["requests"] == 2 and figures["refused"] == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = _bench("--requests", str(empty))
    assert result.exit_code == 2 and "no requests" in result.output


def test_generated_requests_are_fixed_by_the_seed():
    assert generated_requests(30, seed=3) == generated_requests(30, seed=3)
    assert generated_requests(30, seed=3) != generated_requests(30, seed=4)
    assert len(set(generated_requests(50))) > 30
