"""``orchestrator chat`` in tmux: a chat answer of the real SmolLM2 card shows as it is written,
under the live table, and the answer does not repeat it."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_chat_terminal import Terminal

pytestmark = [pytest.mark.slow, pytest.mark.tmux, pytest.mark.models]


def test_a_chat_answer_grows_on_screen_and_is_not_repeated(tmp_path):
    env = {**os.environ, "ORCHESTRATOR_RUNS_DIR": str(tmp_path / "runs"), "TERM": "xterm-256color"}
    for name in ("ORCHESTRATOR_CONFIG", "COLUMNS", "LINES"):
        env.pop(name, None)
    exe = Path(sys.executable).parent / "orchestrator"
    term = Terminal(f"{exe} chat --budget-usd 0.05; sleep 600", tmp_path, env)
    try:
        term.wait_for(r"you>", timeout=120)
        term.type("Write a short poem about the sea")
        screens: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            screen = term.screen()
            screens.append(screen)
            if "Cost of this turn" in screen:
                break
            time.sleep(0.2)
        final = screens[-1]
    finally:
        term.close()
    assert "Cost of this turn" in final, final[-3000:]
    shown, answer = final.split("Answer (ok)", 1)
    assert "smollm2-135m-chat answered: (streamed above)" in answer
    # the text under the live table, as it stood when the run ended
    table_end = max(m.end() for m in re.finditer(r"s1\s+smollm2-135m-chat\s+\S+.*\n", shown))
    streamed = shown[table_end:].strip()
    assert len(streamed.split()) > 3, final[-3000:]
    first_words = " ".join(streamed.split()[:2])
    while_running = [s for s in screens if "Answer (ok)" not in s and first_words in s]
    # it was on screen before the answer, and it was shorter then: it grew
    assert any(streamed not in s for s in while_running), final[-3000:]
    assert final.count(streamed) == 1
