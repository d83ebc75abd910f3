"""The README's examples run as written: the Python example and the new-card walkthrough."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
EXE = Path(sys.executable).parent / "orchestrator"


def _block_after(marker: str, nth: int = 1) -> str:
    """The ``nth`` fenced block that follows the line ``marker`` in the README."""
    text = README.read_text()
    blocks = re.compile(r"```\w*\n(.*?)```", re.DOTALL).findall(text, text.index(marker))
    assert len(blocks) >= nth, f"no code block {nth} after {marker!r}"
    return blocks[nth - 1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "ORCHESTRATOR_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("ORCHESTRATOR_CONFIG", None)
    env.pop("ORCHESTRATOR_CARDS", None)
    return env


def test_the_python_example_prints_what_the_readme_says(tmp_path):
    code = _block_after("**Python** - `Orchestrator.run(prompt)`:")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == "ok Sentiment of 'what a lovely day': positive."
    assert re.search(r"^s1 vader-sentiment score", done.stdout.splitlines()[1])


def test_the_new_card_walkthrough_chooses_the_new_card(tmp_path):
    cards = tmp_path / "my_cards"
    cards.mkdir()
    (cards / "lead-summary.yaml").write_text(_block_after("`my_cards/lead-summary.yaml`:"))
    (cards / "lead_summary.py").write_text(_block_after("`my_cards/lead_summary.py`:"))
    commands = [
        shlex.split(line)
        for line in _block_after("`my_cards/lead_summary.py`:", nth=2).splitlines()
        if line.startswith("orchestrator ")
    ]
    assert len(commands) == 2
    validate, run = commands
    env = _env(tmp_path)
    done = subprocess.run([str(EXE), *validate[1:]], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(EXE), *run[1:], "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    chosen = {s["task"]: s["card"] for s in result["steps"]}
    assert chosen == {"summarization": "lead-summary", "text-classification": "vader-sentiment"}
    assert result["answer"] == (
        "Summary of 'The storm hit the coast at dawn. Thousands lost power.': "
        "'The storm hit the coast at dawn.' Sentiment of the summary: neutral."
    )
