"""`orchestrator bench executor` runs end to end and prints every figure (small settings)."""

from __future__ import annotations

from typer.testing import CliRunner


def test_bench_executor_prints_every_figure() -> None:
    from orchestrator.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "bench", "executor", "--calls", "5", "--cold-runs", "1",
            "--cpu-seconds", "0.2", "--repeats", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for words in (
        "sandbox mode:",
        "cold start",
        "warm call overhead over the bare call: p50",
        "8 independent 1-second I/O-bound subtasks in parallel:",
        "2 CPU-bound subtasks",
        "speedup",
    ):
        assert words in result.output, result.output
