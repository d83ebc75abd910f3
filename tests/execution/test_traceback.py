"""A failed tool call keeps its traceback in the card's own code, never the host's paths."""

from __future__ import annotations

import json
import textwrap

from _cli_tools import cli_env, run_cli

from orchestrator.cards import card_digest
from orchestrator.cards.zoo import Zoo
from orchestrator.execution.tracebacks import card_traceback

CARD = """
name: crashy-sentiment
task: text-classification
description: Tells whether a review sounds positive or negative (sentiment).
inputs: [{name: text, type: text}]
outputs: [{name: label, type: text}]
backend: {kind: python, entry: "crashy_tool:load"}
tags: [sentiment, positive, negative]
"""

MODULE = """
def _weights(name):
    table = {"positive": 1.0}
    return table[name]


def load(options):
    def tool(inputs, ctx):
        score = _weights("negative")
        return {"label": str(score)}

    return tool
"""


def _cards(tmp_path):
    cards = tmp_path / "my cards"
    cards.mkdir()
    (cards / "crashy.yaml").write_text(CARD)
    (cards / "crashy_tool.py").write_text(textwrap.dedent(MODULE))
    # Profiled as well as VADER and free, so the router starts with it (then it breaks).
    card = Zoo.load([cards]).get("crashy-sentiment").card
    vader = Zoo.load([]).get("vader-sentiment").card
    probes = [p.model_dump() for p in vader.profile.probes]
    (cards / "crashy.profile.json").write_text(
        json.dumps({"card_digest": card_digest(card), "probes": probes})
    )
    return cards


def test_a_failed_call_keeps_the_cards_traceback_in_the_record(tmp_path):
    cards = _cards(tmp_path)
    env = cli_env(tmp_path)
    request = 'Is "what a lovely gift" positive or negative?'
    proc = run_cli("run", request, "--cards", str(cards), "--json", env=env, cwd=tmp_path)
    result = json.loads(proc.stdout)
    [step] = result["steps"]
    first = step["attempts"][0]
    assert first["card"] == "crashy-sentiment" and first["status"] == "failed", step
    trace = first["traceback"]
    assert 'File "crashy_tool.py", line 9, in tool' in trace, trace
    assert 'File "crashy_tool.py", line 4, in _weights' in trace
    assert "return table[name]" in trace and "KeyError: 'negative'" in trace
    for host in (str(tmp_path), "/work/", "site-packages", "/usr/", "_worker"):
        assert host not in trace, (host, trace)
    assert step["attempts"][-1]["card"] == "vader-sentiment" and result["status"] == "ok"

    shown = run_cli("runs", "show", result["run_id"], env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "crashy-sentiment failed:" in shown.stdout
    assert 'File "crashy_tool.py", line 4, in _weights' in shown.stdout
    assert str(tmp_path) not in shown.stdout.split("Request")[1].split("Router decisions")[0]


def test_only_the_cards_own_frames_are_kept():
    card = Zoo.load([]).get("vader-sentiment").card  # its module is not in these frames
    detail = textwrap.dedent(
        """\
        Traceback (most recent call last):
          File "/opt/venv/lib/python3.11/site-packages/orchestrator/_worker.py", line 80, in main
            outputs = tool(inputs, ctx)
          File "/opt/venv/lib/python3.11/site-packages/transformers/pipelines/base.py", line 9, in x
            raise OSError("/home/me/.cache/model.bin is corrupt")
        OSError: /home/me/.cache/model.bin is corrupt
        """
    )
    trace = card_traceback(card, detail)
    assert trace is not None
    assert "/opt/venv" not in trace and "/home/me" not in trace
    assert "OSError: <path> is corrupt" in trace
    assert "no frame in the card's own code" in trace
