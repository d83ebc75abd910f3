"""The router: policies (default and Router-R1-style LLM), validation, and the graph's loop."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _replay_tools import OneStep
from _replay_tools import replay_zoo as _replay_zoo
from _replay_tools import write_records as _write_records

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.cards import ToolCard
from orchestrator.errors import MalformedDecision, UnknownPolicy
from orchestrator.evals.routing import QualityScorer
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.routing.llm import LLMPolicy
from orchestrator.routing.policy import (
    Answer,
    Decision,
    DefaultPolicy,
    Option,
    StepView,
    answer_key,
    checked_decision,
    get_policy,
)

# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("['B\\n']", "B"),
        ("A)", "A"),
        ("(c) because", "C"),
        ("Positive", "positive"),
        ("['I do']", "i do"),
        ("def f(x):\n    return [y for y in x if y not in z]  # a long free-form answer", None),
        ("", None),
    ],
)
def test_answer_key_compares_choices_and_short_answers(text, key):
    assert answer_key(text) == key


# ----------------------------------------------------------------------------- default policy

OPTIONS = (
    Option(0, "cheap-a", 0.80, 0.5, Decimal("0.0001"), True),
    Option(1, "cheap-b", 0.78, 0.5, Decimal("0.0002"), True),
    Option(2, "strong", 0.95, 0.5, Decimal("0.005"), True),
)


def view(*answers: Answer, options=OPTIONS) -> StepView:
    return StepView("s1", "text-generation", "Which?", options, tuple(answers))


def ok(seq: int, card: str, key: str) -> Answer:
    index = next(o.index for o in OPTIONS if o.card == card)
    return Answer(seq, index, card, "ok", text=key, key=answer_key(key))


def test_cost_weight_moves_the_first_choice_from_strong_to_cheap():
    assert DefaultPolicy(cost_weight=0).start(view()).candidate == 2
    first = DefaultPolicy(cost_weight=0.2).start(view())
    assert first.action == "start" and first.candidate == 0
    assert "utility" in first.reason


def test_a_cheap_answer_is_checked_then_accepted_on_agreement():
    policy = DefaultPolicy(cost_weight=0.2)
    check = policy.decide(view(ok(1, "cheap-a", "B")))
    assert check.action == "ask_second" and check.candidate == 1
    agreed = policy.decide(view(ok(1, "cheap-a", "B"), ok(2, "cheap-b", "B)")))
    assert agreed.action == "accept" and agreed.use == 1 and "agree" in agreed.reason


def test_disagreement_escalates_then_the_majority_wins():
    policy = DefaultPolicy(cost_weight=0.2)
    split = view(ok(1, "cheap-a", "B"), ok(2, "cheap-b", "C"))
    escalate = policy.decide(split)
    assert escalate.action == "escalate" and escalate.candidate == 2
    settled = policy.decide(
        view(ok(1, "cheap-a", "B"), ok(2, "cheap-b", "C"), ok(3, "strong", "C"))
    )
    assert settled.action == "accept" and settled.use in (2, 3)
    assert "'C'" in settled.reason


def test_a_high_cost_weight_accepts_without_checking():
    decision = DefaultPolicy(cost_weight=1000).decide(view(ok(1, "cheap-a", "B")))
    assert decision.action == "accept" and "not worth" in decision.reason


def test_failure_retries_the_next_candidate_then_finishes_when_budget_is_gone():
    policy = DefaultPolicy(cost_weight=0.2)
    failed = Answer(1, 0, "cheap-a", "failed", error="boom")
    retry = policy.decide(view(failed))
    assert retry.action == "retry" and retry.candidate != 0
    broke = tuple(Option(o.index, o.card, o.quality, o.relevance, o.usd, False) for o in OPTIONS)
    over = Answer(1, 0, "cheap-a", "over_budget", error="budget limit 'usd' reached")
    finish = policy.decide(view(over, options=broke))
    assert finish.action == "finish" and "usd" in finish.reason
    assert policy.decide(view(failed, options=broke)).action == "give_up"


def test_malformed_decisions_are_refused():
    v = view(ok(1, "cheap-a", "B"))
    with pytest.raises(MalformedDecision):
        checked_decision(Decision("teleport", "?"), v, started=True)
    with pytest.raises(MalformedDecision):
        checked_decision(Decision("accept", "?", use=9), v, started=True)
    with pytest.raises(MalformedDecision):
        checked_decision(Decision("ask_second", "?", candidate=0), v, started=True)  # answered
    with pytest.raises(MalformedDecision):
        checked_decision(Decision("retry", "?", candidate=7), v, started=True)
    with pytest.raises(MalformedDecision):
        checked_decision("accept", v, started=True)


def test_policy_registry_names_what_is_known():
    assert isinstance(get_policy("default", cost_weight=0.5), DefaultPolicy)
    with pytest.raises(UnknownPolicy, match="default"):
        get_policy("nope")


# ----------------------------------------------------------------------------- LLM policy


class ScriptedChat:
    """A local OpenAI-compatible endpoint that replies with scripted texts (no paid API)."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.prompts.append(body["messages"][-1]["content"])
                content = chat.replies.pop(0) if chat.replies else ""
                payload = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_chat():
    chats: list[ScriptedChat] = []

    def make(replies: list[str]) -> ScriptedChat:
        chats.append(ScriptedChat(replies))
        return chats[-1]

    yield make
    for chat in chats:
        chat.close()


def test_llm_policy_routes_with_the_router_r1_protocol(scripted_chat):
    chat = scripted_chat(
        [
            "<think>cheap first</think><route>cheap-b</route>",
            "<think>they disagree</think><route>escalate strong</route>",
            "<think>strong agrees with b</think><answer>2</answer>",
        ]
    )
    policy = LLMPolicy(model="router", base_url=chat.url)
    start = checked_decision(policy.start(view()), view(), started=False)
    assert (start.action, start.candidate, start.reason) == ("start", 1, "cheap first")
    split = view(ok(1, "cheap-a", "B"), ok(2, "cheap-b", "C"))
    assert policy.decide(split).action == "escalate"
    final = policy.decide(split)
    assert final.action == "accept" and final.use == 2 and final.policy == "llm"
    assert "cheap-b: C" in chat.prompts[-1] and "fits=yes" in chat.prompts[0]


def test_llm_policy_falls_back_on_malformed_output(scripted_chat):
    chat = scripted_chat(["I think cheap-a is fine", "<route>ask_second cheap-a</route>"])
    policy = LLMPolicy(model="router", base_url=chat.url, fallback=DefaultPolicy(cost_weight=0.2))
    first = policy.start(view())
    assert first.policy == "llm->fallback" and "no <route> or <answer> tag" in first.reason
    assert first.candidate == 0  # what the default policy chose
    again = policy.decide(view(ok(1, "cheap-a", "B")))  # asks the model that already answered
    assert again.policy == "llm->fallback" and "already answered" in again.reason
    assert again.action == "ask_second" and again.candidate == 1


def test_llm_policy_falls_back_when_the_endpoint_is_down():
    policy = LLMPolicy(model="router", base_url="http://127.0.0.1:9/v1", timeout_s=2)
    decision = policy.start(view())
    assert decision.policy == "llm->fallback" and "unreachable" in decision.reason


# ----------------------------------------------------------------------------- in the graph

MODELS = ("cheap-a", "cheap-b", "strong")
# prompt -> answers of (cheap-a, cheap-b, strong)
RECORDS = {
    "Q1 which?": ("['B']", "['B\\n']", "['B']"),
    "Q2 which?": ("['A']", "['C']", "['C']"),
}
PRICES = {"cheap-a": 0.0001, "cheap-b": 0.0002, "strong": 0.005}
QUALITY = {"cheap-a": 0.80, "cheap-b": 0.78, "strong": 0.95}


def write_records(path: Path) -> Path:
    return _write_records(path, MODELS, RECORDS, PRICES)


def replay_zoo(records: Path) -> Zoo:
    return _replay_zoo(records, MODELS, PRICES, QUALITY)


@pytest.fixture
def replay_orchestrator(tmp_path):
    records = write_records(tmp_path / "records.csv")

    def make(policy, **kwargs) -> Orchestrator:
        # QUALITY is each model's measured (train) accuracy, scored as the routing eval does.
        return Orchestrator(
            Config(runs_dir=tmp_path / "runs"),
            zoo=replay_zoo(records),
            planner=OneStep(),
            scorer=QualityScorer(),
            executor=InProcessExecutor(),
            policy=policy,
            durable=False,
            **kwargs,
        )

    return make


def test_graph_checks_a_cheap_answer_and_accepts_agreement(replay_orchestrator):
    with replay_orchestrator(DefaultPolicy(cost_weight=0.2)) as orch:
        result = orch.run("Q1 which?")
    assert result.status == "ok"
    assert [d["action"] for d in result.decisions] == ["start", "ask_second", "accept"]
    assert [a["card"] for a in result.steps[0].attempts] == ["cheap-a", "cheap-b"]
    assert Decimal(result.spent["usd"]) == Decimal("0.0003")  # the billed (recorded) costs


def test_graph_escalates_on_disagreement_and_keeps_the_majority(replay_orchestrator):
    with replay_orchestrator(DefaultPolicy(cost_weight=0.2)) as orch:
        result = orch.run("Q2 which?")
    actions = [d["action"] for d in result.decisions]
    assert actions == ["start", "ask_second", "escalate", "accept"]
    assert result.steps[0].outputs["text"] == "['C']"
    assert "2 of 3" in result.decisions[-1]["reason"]
    assert Decimal(result.spent["usd"]) == Decimal("0.0053")


def test_graph_budget_stops_the_check(replay_orchestrator):
    with replay_orchestrator(DefaultPolicy(cost_weight=0.2)) as orch:
        result = orch.run("Q2 which?", budget=Budget(calls=2))
    assert result.spent["calls"] == 2 and result.status == "ok"
    assert result.decisions[-1]["action"] == "accept"


class Garbage:
    """A policy whose decisions are malformed: the graph falls back to the default policy."""

    name = "garbage"

    def start(self, view):
        return Decision("start", "out of range", candidate=42)

    def decide(self, view):
        return Decision("dance", "not an action")


def test_graph_falls_back_to_the_default_policy_on_malformed_decisions(replay_orchestrator):
    with replay_orchestrator(Garbage()) as orch:
        result = orch.run("Q1 which?")
    assert result.status == "ok"
    assert all(d["policy"] == "garbage->default" for d in result.decisions)
    assert "malformed" in result.decisions[0]["reason"]


class Replanner(DefaultPolicy):
    """Re-plans once when a step fails (the default policy does not, by default)."""

    def decide(self, view):
        if view.answers[-1].status == "failed" and view.replans == 0:
            return Decision("replan", "the model failed: plan again without it")
        return super().decide(view)


def test_replan_runs_the_plan_again_without_the_failed_card(tmp_path, replay_orchestrator):
    records = write_records(tmp_path / "other.csv")
    zoo = replay_zoo(records)
    broken = ToolCard.model_validate(
        {
            **zoo.get("strong").card.model_dump(mode="json"),
            "name": "broken",
            "backend": {"kind": "replay", "model": "missing-model", "records": str(records)},
            "strength": 0.99,
        }
    )
    zoo.add(broken)
    with Orchestrator(
        Config(runs_dir=tmp_path / "runs"),
        zoo=zoo,
        planner=OneStep(),
        executor=InProcessExecutor(),
        policy=Replanner(cost_weight=0),
        durable=False,
    ) as orch:
        result = orch.run("Q1 which?")
    actions = [(d["action"], d["card"]) for d in result.decisions]
    assert actions[:2] == [("start", "broken"), ("replan", "broken")]
    assert result.status == "ok" and result.steps[0].card == "strong"
    assert all(c["card"] != "broken" for c in result.steps[0].candidates)


def test_llm_policy_calls_are_charged_to_the_run_budget(scripted_chat, replay_orchestrator):
    chat = scripted_chat(["<route>cheap-a</route>", "<answer>1</answer>"])
    policy = LLMPolicy(model="router", base_url=chat.url, usd_per_call=Decimal("0.001"))
    with replay_orchestrator(policy) as orch:
        result = orch.run("Q1 which?")
    assert [d["action"] for d in result.decisions] == ["start", "accept"]
    assert all(d["policy"] == "llm" for d in result.decisions)
    # two router calls at $0.001 (plus their tokens, free here) and cheap-a's recorded $0.0001
    assert Decimal(result.spent["usd"]) == Decimal("0.0021")
    assert result.spent["calls"] == 3 and result.spent["tokens"] > 0


def test_llm_policy_call_that_does_not_fit_is_not_made(scripted_chat, replay_orchestrator):
    chat = scripted_chat(["<route>cheap-a</route>"] + ["<answer>1</answer>"] * 5)
    policy = LLMPolicy(
        model="router",
        base_url=chat.url,
        usd_per_call=Decimal("0.001"),
        fallback=DefaultPolicy(cost_weight=0.2),
    )
    limit = Decimal("0.0015")
    with replay_orchestrator(policy) as orch:
        result = orch.run("Q1 which?", budget=Budget(usd=limit))
    assert result.status == "ok"
    assert Decimal(result.spent["usd"]) <= limit
    assert len(chat.prompts) == 1  # the second router call would not fit: never sent
    later = result.decisions[1]
    assert later["policy"] == "llm->fallback" and "does not fit the budget" in later["reason"]
