"""``orchestrator run`` prints a chat answer as the real SmolLM2 card writes it, and only once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli_tools import cli_env, run_cli  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.models]

POEM = "Write a short poem about the sea"
WRITES = "s1 smollm2-135m-chat writes: "


def test_run_prints_the_streamed_answer_once(tmp_path):
    done = run_cli("run", POEM, "--out", str(tmp_path / "out"), env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count(WRITES) == 1, out
    streamed = out.split(WRITES, 1)[1].split("\n  ok s1 ", 1)[0]
    assert len(streamed.split()) > 3, out
    answer = out.split("\nAnswer (ok)\n", 1)[1]
    assert out.count(streamed) == 1  # not again as the step's output, nor in the answer
    assert "smollm2-135m-chat answered: (streamed above)" in answer
    assert "weak model" in answer


def test_run_json_has_no_streamed_text_around_it(tmp_path):
    done = run_cli("run", POEM, "--json", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole output is the one JSON object
    [step] = result["steps"]
    assert step["card"] == "smollm2-135m-chat"
    assert step["outputs"]["text"].strip() and step["outputs"]["text"] in result["answer"]
