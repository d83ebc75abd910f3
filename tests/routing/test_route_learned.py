"""The learned router policy: signatures, states, the table it solves, and its loop in the graph."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from _replay_tools import OneStep, write_records
from _replay_tools import replay_zoo as _replay_zoo

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.routing.learned import (
    CascadeTable,
    LearnedPolicy,
    answer_signature,
    fit_cascade,
    frontier_models,
    replay_table,
    state_key,
)
from orchestrator.routing.policy import get_policy

# ----------------------------------------------------------------------------- signatures


def test_answer_signature_compares_choices_and_code_by_its_function():
    assert answer_signature("['B\\n']") == answer_signature("B)") == "B"
    one = "Here it is:\n```python\ndef add_all(xs):\n    '''Sum.'''\n    return sum(xs)\n```"
    two = "[PYTHON]\ndef total(values):\n    return sum(values)\n[/PYTHON]"
    other = "```python\ndef total(values):\n    return max(values)\n```"
    assert answer_signature(one) == answer_signature(two) is not None
    assert answer_signature(one) != answer_signature(other)
    assert answer_signature("I cannot help with that request, sorry about it, truly.") is None


def test_state_key_names_who_agrees_or_the_answers():
    answers = [("m-b", "A"), ("m-a", "A"), ("m-c", None)]
    assert state_key(answers) == "m-a|m-b|m-c#0,0,2"
    assert state_key(answers, by_label=True) == "m-a|m-b|m-c=A,A,-"
    assert state_key([("x", "C"), ("y", "D")]) == state_key([("x", "A"), ("y", "B")])
    assert state_key([]) == "#"


# ----------------------------------------------------------------------------- fitting

MODELS = ["cheap-a", "cheap-b", "strong"]
PRICES = {"cheap-a": 0.0001, "cheap-b": 0.0002, "strong": 0.005}


def logged_rows() -> tuple[list[list[str | None]], np.ndarray, np.ndarray]:
    """30 queries the cheap models agree on and get right; 10 only the strong one gets right."""
    signatures = [["B", "B", "B"]] * 30 + [["A", "D", "C"]] * 10
    correct = np.array([[1, 1, 1]] * 30 + [[0, 0, 1]] * 10, dtype=float)
    cost = np.array([[PRICES[m] for m in MODELS]] * 40)
    return signatures, correct, cost


def test_fit_learns_to_check_cheap_answers_and_escalate_on_disagreement():
    signatures, correct, cost = logged_rows()
    table = fit_cascade(MODELS, signatures, correct, cost, cost_weight=0.5, depth=3)
    first = table.actions["#"]
    assert first[0] == "ask" and first[1].startswith("cheap")
    second = table.actions[state_key([(first[1], "B")])]
    assert second[0] == "ask" and second[1].startswith("cheap") and second[1] != first[1]
    agree = state_key([("cheap-a", "B"), ("cheap-b", "B")])
    disagree = state_key([("cheap-a", "A"), ("cheap-b", "D")])
    assert table.actions[agree][0] == "accept"
    assert table.actions[disagree] == ["ask", "strong"]
    cost_per_query, accuracy = replay_table(table, MODELS, signatures, correct, cost)
    assert accuracy == 1.0
    assert cost_per_query == pytest.approx(0.0003 + 0.25 * 0.005)


def test_the_cost_weight_moves_the_table_from_strong_to_cheapest():
    signatures, correct, cost = logged_rows()
    free = fit_cascade(MODELS, signatures, correct, cost, cost_weight=0.0, depth=1)
    assert free.actions["#"] == ["ask", "strong"]
    dear = fit_cascade(MODELS, signatures, correct, cost, cost_weight=1000.0, depth=3)
    assert dear.actions["#"] == ["ask", "cheap-a"]
    assert dear.actions[state_key([("cheap-a", "B")])] == ["accept", "cheap-a"]
    assert replay_table(dear, MODELS, signatures, correct, cost) == pytest.approx((0.0001, 0.75))


def test_pareto_keeps_dominated_models_out_of_the_table():
    # "dear-bad" costs more than "strong" and is right less often overall, but it is the only
    # model right on the last 10 rows: without the frontier rule the (in-sample) table asks it
    models = ["cheap", "dear-bad", "strong"]
    signatures = [["B", "B", "B"]] * 30 + [["A", "C", "D"]] * 10 + [["A", "D", "C"]] * 10
    correct = np.array([[1, 0, 1]] * 30 + [[0, 0, 1]] * 10 + [[0, 1, 0]] * 10, dtype=float)
    cost = np.array([[0.0001, 0.006, 0.005]] * 50)
    assert frontier_models(cost.mean(axis=0), correct.mean(axis=0)) == {0, 2}
    free = fit_cascade(models, signatures, correct, cost, cost_weight=0.0, depth=3)
    asked = {a[1] for a in free.actions.values() if a[0] == "ask"}
    assert "dear-bad" in asked
    kept = fit_cascade(models, signatures, correct, cost, cost_weight=0.0, depth=3, pareto=True)
    asked = {a[1] for a in kept.actions.values() if a[0] == "ask"}
    assert asked == {"cheap", "strong"}
    assert replay_table(kept, models, signatures, correct, cost)[1] == pytest.approx(0.8)


def test_table_round_trips_through_json_and_the_registry():
    signatures, correct, cost = logged_rows()
    table = fit_cascade(MODELS, signatures, correct, cost, cost_weight=0.5)
    again = CascadeTable.from_json(table.to_json())
    assert again == table
    policy = get_policy("learned", table=table.to_json())
    assert isinstance(policy, LearnedPolicy) and policy.name == "learned"


# ----------------------------------------------------------------------------- in the graph

RECORDS = {"Q1 which?": ("['B']", "['B\\n']", "['B']"), "Q2 which?": ("['A']", "['D']", "['C']")}


def replay_zoo(records: Path) -> Zoo:
    write_records(records, MODELS, RECORDS, PRICES)
    return _replay_zoo(records, MODELS, PRICES, {m: 0.9 if m == "strong" else 0.75 for m in MODELS})


@pytest.fixture
def learned_orchestrator(tmp_path):
    signatures, correct, cost = logged_rows()
    table = fit_cascade(MODELS, signatures, correct, cost, cost_weight=0.5, depth=3)
    orch = Orchestrator(
        Config(runs_dir=tmp_path / "runs"),
        zoo=replay_zoo(tmp_path / "records.csv"),
        planner=OneStep(),
        executor=InProcessExecutor(),
        policy=LearnedPolicy(table),
        durable=False,
    )
    yield orch
    orch.close()


def test_graph_accepts_when_two_cheap_models_agree(learned_orchestrator):
    result = learned_orchestrator.run("Q1 which?")
    assert result.status == "ok"
    assert [d["action"] for d in result.decisions] == ["start", "ask_second", "accept"]
    assert all(d["policy"] == "learned" for d in result.decisions)
    assert "learned table" in result.decisions[-1]["reason"]
    assert Decimal(result.spent["usd"]) == Decimal("0.0003")


def test_graph_escalates_when_cheap_models_disagree(learned_orchestrator):
    result = learned_orchestrator.run("Q2 which?")
    actions = [(d["action"], d["card"]) for d in result.decisions]
    assert actions[-2:] == [("escalate", "strong"), ("accept", "strong")]
    assert result.steps[0].outputs["text"] == "['C']"
    assert Decimal(result.spent["usd"]) == Decimal("0.0053")


def test_graph_keeps_the_budget_when_the_escalation_does_not_fit(learned_orchestrator):
    result = learned_orchestrator.run("Q2 which?", budget=Budget(usd=Decimal("0.001")))
    assert Decimal(result.spent["usd"]) <= Decimal("0.001")
    assert result.spent["calls"] == 2 and result.status == "ok"
    last = result.decisions[-1]
    assert last["action"] == "accept" and "cannot be asked" in last["reason"]


def test_graph_retries_failed_calls_then_gives_up(learned_orchestrator):
    result = learned_orchestrator.run("Q3 has no recorded answers?")
    actions = [(d["action"], d["card"]) for d in result.decisions]
    assert actions[0][0] == "start" and [a for a, _ in actions[1:]] == ["retry", "retry", "give_up"]
    assert {card for _, card in actions} == set(MODELS)  # each model tried once
    assert result.status != "ok" and result.spent["calls"] == 3
