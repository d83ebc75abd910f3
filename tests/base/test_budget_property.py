"""Property: whatever the plan, prices, latencies and failures, a run never overspends a limit.

Each example builds random tool cards (prices per call, per second and per output token;
a declared latency and a real one up to 10x off; a declared load time and a real one up to 10x
off; some that fail), a random DAG plan, and a random budget with any subset of the four
limits, then runs it through the real graph (plan -> select -> route <-> execute -> answer,
the default router policy; independent steps start together and share what is left). The
tools run in-process on a virtual clock (see tests/_budget_tools.py), so 1,000 runs take
seconds and wall time is exact; the ledger, the caps and the router are the production ones.

Most runs are planned by the real LLM planner (:class:`orchestrator.planning.llm.LlmPlanner`, with
its reservations, timeouts and fallback) talking to a simulated paid endpoint on the same virtual
clock (a paid cloud API cannot exist here): slow (up to 30 s per answer, or never answering),
priced per token, and sometimes writing an invalid plan, so its calls, seconds and money count
against the same limits.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from _budget_tools import CLOCK, SimExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.cards import ToolCard
from orchestrator.plan import Plan, Subtask, TextArg
from orchestrator.planning.llm import LlmPlanner

RUNS = 1000
STATS: Counter[str] = Counter()

money = st.decimals(min_value=0, max_value=Decimal("0.01"), places=5)

card_spec = st.fixed_dictionaries(
    {
        "usd_per_call": money,
        "usd_per_second": st.sampled_from([Decimal(0), Decimal("0.0001"), Decimal("0.002")]),
        "usd_per_1k_output_tokens": st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("0.5")]),
        "latency_s": st.floats(min_value=0.05, max_value=3.0),
        "real_factor": st.floats(min_value=0.1, max_value=10.0),
        "load_s": st.sampled_from([0.0, 0.5, 2.0]),
        "load_factor": st.floats(min_value=0.1, max_value=10.0),
        "fails": st.booleans(),
        "out_tokens": st.integers(min_value=0, max_value=600),
        "strength": st.floats(min_value=0.1, max_value=0.95),
    }
)

plan_spec = st.lists(
    st.tuples(st.lists(st.integers(min_value=0, max_value=5), max_size=2), st.integers(1, 40)),
    min_size=1,
    max_size=5,
)

planner_spec = st.one_of(
    st.none(),  # the plan is given: no planner calls
    st.fixed_dictionaries(
        {
            "latency_s": st.one_of(st.floats(min_value=0.01, max_value=30.0), st.just(1e9)),
            "usd_per_1k_tokens": st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("0.2")]),
            "usd_per_call": st.sampled_from([Decimal(0), Decimal("0.002")]),
            "valid": st.booleans(),
            "timeout_s": st.sampled_from([5.0, 60.0]),
        }
    ),
)

budget_spec = st.fixed_dictionaries(
    {},
    optional={
        "usd": st.decimals(min_value=0, max_value=Decimal("0.05"), places=4),
        "seconds": st.floats(min_value=0, max_value=12),
        "tokens": st.integers(min_value=0, max_value=1500),
        "calls": st.integers(min_value=0, max_value=8),
    },
)


def _card(i: int, spec: dict) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": f"sim-{i}",
            "task": "text-generation",
            "description": "A simulated model for the budget property test.",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {
                "kind": "python",
                "entry": "_budget_tools:load",
                "options": {
                    "latency": spec["latency_s"] * spec["real_factor"],
                    "fails": spec["fails"],
                    "out_tokens": spec["out_tokens"],
                    "load": spec["load_s"] * spec["load_factor"],
                    "llm": spec["usd_per_1k_output_tokens"] > 0,
                },
            },
            "cost": {
                "usd_per_call": str(spec["usd_per_call"]),
                "usd_per_second": str(spec["usd_per_second"]),
                "usd_per_1k_output_tokens": str(spec["usd_per_1k_output_tokens"]),
                "latency_s": spec["latency_s"],
                "load_s": spec["load_s"],
            },
            "strength": spec["strength"],
        }
    )


class FixedPlanner:
    """Returns the plan it was given (a random DAG from the strategy)."""

    name = "fixed"

    def __init__(self, steps: list[tuple[list[int], int]]) -> None:
        self.steps = steps

    def plan(self, request, zoo, *, files=()):
        return Plan(request=request, subtasks=_subtasks(self.steps), planner=self.name)


def _subtasks(steps: list[tuple[list[int], int]]) -> list[Subtask]:
    return [
        Subtask(
            id=f"s{i}",
            task="text-generation",
            instruction=f"step {i}",
            deps=sorted({f"s{d}" for d in deps if d < i}),
            args={"text": TextArg(value=" ".join(["word"] * words))},
        )
        for i, (deps, words) in enumerate(steps)
    ]


class _Message:
    def __init__(self, content: str) -> None:
        self.content = content


class _Response:
    def __init__(self, content: str, tokens: int) -> None:
        self.choices = [type("Choice", (), {"message": _Message(content)})()]
        self.usage = type("Usage", (), {"total_tokens": tokens})()


class SimulatedPaidEndpoint:
    """A paid chat endpoint on the virtual clock (named so: no paid API exists here).

    It takes ``latency_s`` per answer (1e9: it never answers), stopping at the call's timeout
    like a real client, and answers with the given plan (or with text that is not a plan).
    """

    def __init__(self, spec: dict, steps: list[tuple[list[int], int]]) -> None:
        self.spec = spec
        self.plan = {"subtasks": [s.model_dump(mode="json") for s in _subtasks(steps)]}
        self.chat = type("Chat", (), {"completions": self})()
        self.calls = 0

    def create(self, *, timeout: float, max_tokens: int, **_: object) -> _Response:
        import httpx
        import openai

        self.calls += 1
        STATS["planner_calls"] += 1
        if self.spec["latency_s"] > timeout:
            CLOCK.advance(timeout)
            STATS["planner_timeouts"] += 1
            raise openai.APITimeoutError(request=httpx.Request("POST", "http://sim/v1"))
        CLOCK.advance(self.spec["latency_s"])
        text = json.dumps(self.plan) if self.spec["valid"] else "I cannot plan that."
        return _Response(text, 200 + max_tokens)


def _planner(spec: dict | None, steps: list[tuple[list[int], int]]):
    fixed = FixedPlanner(steps)
    if spec is None:
        return fixed
    planner = LlmPlanner(
        base_url="http://simulated-paid-endpoint/v1",
        timeout_s=spec["timeout_s"],
        retries=2,
        fallback=fixed,
        usd_per_call=spec["usd_per_call"],
        usd_per_1k_tokens=spec["usd_per_1k_tokens"],
    )
    planner.llm.client = SimulatedPaidEndpoint(spec, steps)
    return planner


@pytest.fixture(scope="module")
def stats():
    STATS.clear()
    yield STATS
    print(f"\nbudget property figures: {dict(STATS)}")
    # the examples exercised every limit and every way a run ends
    assert STATS["runs"] >= RUNS
    for limit in ("usd", "seconds", "tokens", "calls"):
        assert STATS[f"stopped_by_{limit}"] > 0, limit
    assert STATS["status_ok"] > 0 and STATS["status_budget_exhausted"] > 0
    assert STATS["attempts_failed"] > 0
    assert STATS["load_stopped"] > 0 and STATS["load_seconds"] > 0
    # the planner was slow, costly, timed out, and fell back
    assert STATS["planner_calls"] > 0 and STATS["planner_timeouts"] > 0
    assert STATS["planned_by_llm"] > 0 and STATS["planner_fell_back"] > 0
    assert STATS["planner_paid"] > 0


@settings(
    max_examples=RUNS,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cards=st.lists(card_spec, min_size=1, max_size=4),
    steps=plan_spec,
    limits=budget_spec,
    planner=planner_spec,
)
def test_spent_never_exceeds_any_limit(stats, tmp_path_factory, cards, steps, limits, planner):
    budget = Budget(**limits)
    zoo = Zoo.from_cards(_card(i, c) for i, c in enumerate(cards))
    runs = tmp_path_factory.getbasetemp() / "property-runs"
    with Orchestrator(
        Config(runs_dir=Path(runs)),
        zoo=zoo,
        planner=_planner(planner, steps),
        executor=SimExecutor(),
        durable=False,
        clock=CLOCK,
    ) as orch:
        result = orch.run("simulated request", budget=budget, out_dir=runs)
    spent = result.spent
    if budget.usd is not None:
        assert Decimal(spent["usd"]) <= budget.usd
    if budget.seconds is not None:
        assert spent["wall_seconds"] <= budget.seconds
    if budget.tokens is not None:
        assert spent["tokens"] <= budget.tokens
    if budget.calls is not None:
        assert spent["calls"] <= budget.calls
    stats["runs"] += 1
    if planner is not None and result.plan is not None:
        notes = " ".join(result.plan.notes)
        stats["planned_by_llm" if "valid: first" in notes else "planner_fell_back"] += 1
        stats["planner_paid"] += "spent:" in notes and planner["usd_per_1k_tokens"] > 0
    stats[f"status_{result.status}"] += 1
    stats["calls"] += spent["calls"]
    for step in result.steps:
        for attempt in step.attempts:
            stats[f"attempts_{attempt['status']}"] += 1
            stats["load_seconds"] += attempt.get("load_seconds", 0.0)
            if "loading took longer" in (attempt.get("error") or ""):
                stats["load_stopped"] += 1
            if attempt["status"] == "over_budget":
                limit = attempt["error"].split("'")[1] if "'" in attempt["error"] else "cap"
                stats[f"stopped_by_{limit}"] += 1
