"""The budget covers the whole run: the planner's and the LLM scorer's calls are paid from it.

Against the project's real OpenAI-compatible server (SmolLM2-135M in a subprocess), through the
real ``openai`` client, and against a real socket server that accepts connections and never
answers (the run must still end within ``--max-seconds``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from _cli_tools import cli_env, run_cli
from _llm_server import CARD

from orchestrator import Budget, Config, Orchestrator
from orchestrator.cards.zoo import Zoo
from orchestrator.config import LlmConfig
from orchestrator.selection.llm_scorer import LLMScorer

REQUEST = 'Which language is "Guten Morgen"?'


class SilentServer:
    """A TCP server on loopback that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def test_a_server_that_never_answers_cannot_hold_a_run(silent, tmp_path):
    env = cli_env(tmp_path, ORCHESTRATOR_LLM_BASE_URL=silent.url)
    started = time.monotonic()
    proc = run_cli("run", REQUEST, "--max-seconds", "8", "--json", env=env, cwd=tmp_path)
    took = time.monotonic() - started
    result = json.loads(proc.stdout)
    assert silent.accepted, "the planner never reached the silent server"
    assert result["spent"]["wall_seconds"] <= 8, result["spent"]
    assert took < 8 + 15, took  # the process's own start-up (imports) is outside the run
    notes = " ".join(result["plan"]["notes"])
    assert "fallback: planned by the embedded planner" in notes, notes
    # Planning took at most a third of the seconds left, so the language model had the rest
    # to load (about 4 s here); on a machine too busy for that the run says what to raise.
    if result["status"] == "ok":
        assert proc.returncode == 0 and "German" in result["answer"], result
    else:
        assert "raise --max-seconds" in result["message"], result


@pytest.fixture(scope="module")
def server(llm_server: str) -> str:
    return f"{llm_server}/v1"


def test_the_planners_calls_are_reserved_and_settled_on_the_budget(server, builtin_zoo, tmp_path):
    llm = LlmConfig(base_url=server, model=CARD, usd_per_1k_tokens=Decimal("0.01"), timeout_s=60)
    config = Config(runs_dir=tmp_path, llm=llm)
    with Orchestrator(config, zoo=builtin_zoo, durable=False) as orch:
        result = orch.run(REQUEST, budget=Budget(usd=Decimal("1"), calls=10))
    notes = [n for n in result.plan.notes if n.startswith("spent:")]
    assert notes, result.plan.notes  # each planner call settled what it cost
    tool_calls = sum(len(s.attempts) for s in result.steps)
    assert result.spent["calls"] == tool_calls + len(notes)
    planner_tokens = sum(int(n.split()[1]) for n in notes)
    tool_tokens = sum(a.get("tokens", 0) for s in result.steps for a in s.attempts)
    assert result.spent["tokens"] >= planner_tokens > 0
    assert Decimal(result.spent["usd"]) >= Decimal("0.01") * planner_tokens / 1000
    assert tool_tokens >= 0


def test_a_planner_call_that_does_not_fit_is_not_made(server, builtin_zoo, tmp_path):
    config = Config(runs_dir=tmp_path, llm=LlmConfig(base_url=server, model=CARD))
    with Orchestrator(config, zoo=builtin_zoo, durable=False) as orch:
        result = orch.run(REQUEST, budget=Budget(tokens=50))
    notes = " ".join(result.plan.notes)
    assert "does not fit the budget" in notes and "fallback" in notes, notes
    assert result.spent["tokens"] <= 50 and "spent:" not in notes
    assert result.status == "ok" and "German" in result.answer


def _two_language_cards(folder: Path) -> Zoo:
    """The built-in zoo plus a second language identifier: the scorer has two cards to rate."""
    folder.mkdir()
    builtin = Path(__file__).resolve().parents[2] / "orchestrator/cards/builtin/lingua-langid.yaml"
    text = builtin.read_text().replace("name: lingua-langid", "name: lingua-langid-twin", 1)
    (folder / "lingua-langid-twin.yaml").write_text(text)
    return Zoo.load([folder])


def test_the_llm_scorers_calls_are_paid_from_the_budget(server, tmp_path):
    scorer = LLMScorer(model=CARD, base_url=server, max_tokens=4)
    config = Config(runs_dir=tmp_path / "runs")
    zoo = _two_language_cards(tmp_path / "cards")
    with Orchestrator(config, zoo=zoo, scorer=scorer, durable=False) as orch:
        paid = orch.run(REQUEST, budget=Budget(calls=10))
        [step] = paid.steps
        rated = len(step.candidates)
        assert rated >= 2 and len(scorer.replies) == rated
        assert paid.spent["calls"] == rated + len(step.attempts)
        # Too few tokens for one rating: the LLM is not asked; the default scorer ranks.
        scorer.replies.clear()
        short = orch.run(REQUEST, budget=Budget(tokens=20))
    assert scorer.replies == []
    [step] = short.steps
    assert all("llm not asked" in c["why"] for c in step.candidates), step.candidates
    assert short.status == "ok" and short.spent["tokens"] <= 20
