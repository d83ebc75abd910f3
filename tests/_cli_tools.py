"""Running the real ``orchestrator`` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without ORCHESTRATOR_* settings, wide enough for rich.

    With ``tmp_path`` the runs folder and the run store go under it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["COLUMNS"] = "200"  # rich wraps at the terminal width
    if tmp_path is not None:
        env["ORCHESTRATOR_RUNS_DIR"] = str(tmp_path / "runs")
        env["ORCHESTRATOR_CHECKPOINTS"] = str(tmp_path / "store.sqlite")
    return {**env, **extra}


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` to completion, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
