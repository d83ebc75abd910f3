"""A card folder with a slow summariser (card file + the module beside it), for chat tests.

Its call sleeps, so a test can cancel a run while it is busy; each output carries a fresh token,
so a test can tell a kept result from a recomputed one.
"""

from __future__ import annotations

from pathlib import Path

CARD = """\
name: slow-summary
task: summarization
description: Summarises a text by keeping its first words, slowly (a test card).
inputs: [{name: text, type: text}]
outputs: [{name: summary, type: text}]
backend: {kind: python, entry: "slow_summary:load", options: {sleep: SLEEP}}
cost: {usd_per_call: "0.001", latency_s: 1.0, load_s: 0}
result_label: Summary
"""

MODULE = '''\
"""A slow summariser for tests."""

import time
import uuid


def load(options):
    def tool(inputs, ctx):
        time.sleep(float(options["sleep"]))
        words = str(inputs["text"]).split()[:4]
        return {"summary": " ".join(words) + " #" + uuid.uuid4().hex[:6]}

    return tool
'''


def write_slow_cards(folder: Path, sleep: float) -> Path:
    """Write the card and its module into ``folder``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slow-summary.yaml").write_text(CARD.replace("SLEEP", str(sleep)))
    (folder / "slow_summary.py").write_text(MODULE)
    return folder
