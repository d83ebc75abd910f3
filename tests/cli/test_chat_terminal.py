"""``orchestrator chat`` driven in tmux as a person would: type, watch, read the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _chat_tools import write_slow_cards
from conftest import ARTIFACTS


class Terminal:
    """One tmux session running a command; keys in, screen text out.

    Each terminal has a tmux server of its own (``-L``): a server another test run started would
    give the session that run's environment (tmux takes a session's environment from its server).
    """

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.name = f"chat-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", "150", "-y", "50", command],
            cwd=cwd,
            env=env,
            check=True,
        )

    def screen(self) -> str:
        out = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-J", "-S", "-1000", "-t", self.name],
            capture_output=True,
            text=True,
        )
        return out.stdout

    def type(self, text: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "-l", text], check=True)
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "Enter"], check=True)

    def key(self, key: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 180) -> str:
        """Wait until ``pattern`` shows on the screen past character ``after``; the new text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()[after:]
            if re.search(pattern, text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never showed; screen:\n{self.screen()[-3000:]}")

    def mark(self) -> int:
        return len(self.screen().rstrip())

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def terminal(tmp_path_factory, demo_inputs):
    home = tmp_path_factory.mktemp("chat")
    for name in ("demo.wav", "demo.png"):
        shutil.copy(demo_inputs / name, home / name)
    cards = write_slow_cards(home / "cards", sleep=6)
    env = {**os.environ, "ORCHESTRATOR_RUNS_DIR": str(home / "runs"), "TERM": "xterm-256color"}
    # The chat sizes itself to the tmux pane, not to a width the suite's own caller exported.
    for name in ("ORCHESTRATOR_CONFIG", "COLUMNS", "LINES"):
        env.pop(name, None)
    exe = Path(sys.executable).parent / "orchestrator"
    term = Terminal(f"{exe} chat --budget-usd 0.05 --cards {cards}; sleep 600", home, env)
    yield term, home
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chat-terminal.txt").write_text(term.screen())
    term.close()


def test_a_turn_shows_plan_models_answer_and_budget(terminal):
    term, _ = terminal
    term.wait_for(r"you>", timeout=120)
    term.type("Transcribe demo.wav and tell me whether it sounds positive or negative")
    screen = term.wait_for(r"Cost of this turn .*Budget: spent \$")
    assert re.search(r"s1\s.*automatic-speech-recognition", screen)
    assert re.search(r"s2\s.*text-classification", screen)
    assert re.search(r"s1\s+whisper-tiny-en\s+ok\s+[\d.]+\s+\$0\.\d+", screen)
    assert re.search(r"s2\s+vader-sentiment\s+ok", screen)
    assert "Answer (ok)" in screen
    # The recogniser may put a comma in ("wonderful, sunny"): the words are what count.
    assert re.search(r"Transcript of demo.wav: 'I really love this wonderful,? sunny day", screen)
    assert "Sentiment of the transcript: positive" in screen
    assert re.search(r"left \$0\.04\d+", screen)


def test_a_follow_up_refers_to_the_last_result_and_makes_a_file(terminal):
    term, home = terminal
    start = term.mark()
    term.type("Read it aloud")
    screen = term.wait_for(r"Cost of this turn .*Budget: spent \$", after=start)
    assert re.search(r"s1\s.*text-to-speech.*Read it aloud: \"I really love", screen)
    assert re.search(r"s1\s+piper-joe-en\s+ok", screen)
    produced = re.search(r"(/\S+/speech-\w+\.wav)", screen)
    assert produced, screen
    assert Path(produced.group(1)).is_file()
    assert Path(produced.group(1)).is_relative_to(home / "runs")


def test_attach_trace_and_budget_commands(terminal):
    term, _ = terminal
    start = term.mark()
    term.type("/attach demo.png")
    term.wait_for(r"Attached .*demo\.png", after=start)
    term.type("What text is in the image?")
    screen = term.wait_for(r"Cost of this turn .*Budget: spent \$", after=start)
    assert re.search(r"s1\s+rapidocr\s+ok", screen)
    assert "Guten Morgen" in screen
    start = term.mark()
    term.type("/trace")
    screen = term.wait_for(r"#1 rapidocr", after=start)
    term.type("/budget")
    screen = term.wait_for(r"Limits: \{'usd': '0\.05'\}", after=start)
    assert re.search(r"Budget: spent \$0\.000\d+, left \$0\.04\d+", screen)
    term.type("/attach nowhere.png")
    term.wait_for(r"error: cannot attach nowhere\.png: no such file", after=start)


def test_a_long_pasted_request_arrives_whole(terminal):
    import json

    term, home = terminal
    text = "bonjour tout le monde " * 250 + "FIN"  # 5,503 characters: past the tty's 4,095
    term.wait_for(r"you>\s*$", timeout=120)  # typed before the prompt, the tty would cut it
    term.type(f"Which language is this text in: {text}")
    # The long line pushes older lines out of the captured history, so no offset: no earlier
    # turn of this session answered French.
    term.wait_for(r"Language of .*: French")
    env = {**os.environ, "ORCHESTRATOR_RUNS_DIR": str(home / "runs")}
    env.pop("ORCHESTRATOR_CONFIG", None)
    exe = Path(sys.executable).parent / "orchestrator"
    listed = subprocess.run(
        [str(exe), "runs", "list", "--json"], cwd=home, env=env, capture_output=True, text=True
    )
    requests = [row["request"] for row in json.loads(listed.stdout)]
    assert any(r.endswith(text) for r in requests), [len(r) for r in requests]


def test_ctrl_c_cancels_the_run_and_the_conversation_goes_on(terminal):
    term, _ = terminal
    start = term.mark()
    term.type('Summarize "the quick brown fox jumps over the lazy dog" then read it aloud')
    term.wait_for(r"s1\s+slow-summary\s+running", after=start, timeout=60)
    term.key("C-c")
    screen = term.wait_for(r"Cost of this turn .*Budget: spent \$", after=start, timeout=60)
    assert "Cancelling" in screen
    assert "Answer (cancelled)" in screen
    assert re.search(r"finished: s1\. Resume with: orchestrator runs resume \w+", screen)
    assert not re.search(r"piper-joe-en\s+ok", screen)  # s2 never started
    start = term.mark()
    term.type("Which language is 'Guten Morgen, wie geht es dir'?")
    screen = term.wait_for(r"Cost of this turn .*Budget: spent \$", after=start)
    assert "German" in screen
    start = term.mark()
    term.type("/quit")
    term.wait_for(r"Bye\. Budget: spent \$0\.00\d+", after=start)
