"""The one registry shape (orchestrator.plugins.Registry) and the five registries built on it."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from orchestrator.cards import backend as backend_module
from orchestrator.cards import card_from_yaml
from orchestrator.config import Config
from orchestrator.errors import (
    CardError,
    ConfigError,
    UnknownExecutor,
    UnknownPlanner,
    UnknownPolicy,
    UnknownScorer,
)
from orchestrator.execution import EXECUTORS, executor_from_config
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.pipeline.checks import configured_executor, configured_scorer
from orchestrator.planning import PLANNERS, get_planner
from orchestrator.plugins import Registry
from orchestrator.routing.policy import POLICIES, get_policy
from orchestrator.selection import SCORERS, scorer_from_config
from orchestrator.selection.rank import CapabilityScorer


class _Unknown(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no part '{name}'; known: {', '.join(known)}")


def test_a_lazy_entry_is_imported_and_finished_once():
    finished = []

    def finish(found):
        finished.append(found)
        return found()

    registry = Registry(
        "orchestrator.tests-none", _Unknown, {"od": "collections:OrderedDict"}, finish
    )
    first = registry.get("od")
    assert registry.get("od") is first and type(first).__name__ == "OrderedDict"
    assert len(finished) == 1


def test_unknown_names_list_what_is_known_and_register_adds_or_replaces():
    registry: Registry[object] = Registry("orchestrator.tests-none", _Unknown, {"a": 1})
    registry.register("b", 2)
    registry.register("a", 3)
    assert registry.names() == ["a", "b"] and registry.get("a") == 3
    assert "b" in registry and "c" not in registry
    with pytest.raises(_Unknown, match="no part 'c'; known: a, b"):
        registry.get("c")


def test_a_registered_part_is_finished_on_its_first_get():
    registry: Registry[object] = Registry("orchestrator.tests-none", _Unknown, finish=lambda c: c())
    registry.register("list", list)
    made = registry.get("list")
    assert made == [] and registry.get("list") is made
    registry.register("list", dict)  # a new registration is finished anew
    assert registry.get("list") == {}


@pytest.mark.parametrize(
    ("lookup", "error"),
    [
        (lambda: get_planner("nope"), UnknownPlanner),
        (lambda: get_policy("nope"), UnknownPolicy),
        (lambda: SCORERS.get("nope"), UnknownScorer),
        (lambda: EXECUTORS.get("nope"), UnknownExecutor),
    ],
)
def test_each_kind_raises_its_own_error_naming_the_known(lookup, error):
    with pytest.raises(error, match="known: "):
        lookup()


def test_the_built_ins_are_in_the_registries():
    assert {"embedded", "llm"} <= set(PLANNERS.names())
    assert {"default", "llm", "learned"} <= set(POLICIES.names())
    assert {"capability", "llm"} <= set(SCORERS.names())
    assert {"pool", "inprocess", "ray"} <= set(EXECUTORS.names())


def test_the_default_config_keeps_the_default_scorer_and_executor():
    config = Config(selection_encoder=None)
    scorer = scorer_from_config(config)
    assert type(scorer) is CapabilityScorer and scorer.encoder is None
    executor = executor_from_config(config)
    try:
        assert type(executor) is WorkerPoolExecutor
    finally:
        executor.close()
    assert type(executor_from_config(Config(executor="inprocess"))) is InProcessExecutor


def test_a_misnamed_scorer_or_executor_is_a_config_error_with_a_hint():
    with pytest.raises(ConfigError, match="scorer: unknown scorer 'capabilty' \\(did you mean"):
        configured_scorer(Config(scorer="capabilty"))
    with pytest.raises(ConfigError, match="executor: unknown executor 'nope'; known: inprocess"):
        configured_executor(Config(executor="nope"))


def test_the_llm_scorer_needs_an_endpoint():
    with pytest.raises(ConfigError, match=r"\[llm\] base_url"):
        scorer_from_config(Config(scorer="llm"))


class _NoSpec:
    def unavailable_reason(self, card):
        return None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["echo-test"]
    times: int = 1


class _WithSpec(_NoSpec):
    spec = _Spec


CARD = """\
name: echoer
task: summarization
description: Repeats the text it is given, a test card.
inputs: [{name: text, type: text}]
outputs: [{name: summary, type: text}]
backend: {kind: KIND, times: 2}
"""


@pytest.fixture
def backends(monkeypatch):
    """A fresh, empty backend registry for the test to register kinds in."""
    fresh: Registry[object] = Registry("orchestrator.tests-none", backend_module.UnknownBackend)
    monkeypatch.setattr(backend_module, "BACKENDS", fresh)
    return fresh


def test_a_registered_kind_validates_its_cards_by_its_spec(backends):
    backend_module.register_backend("echo-test", _WithSpec)
    card = card_from_yaml(CARD.replace("KIND", "echo-test"))
    assert isinstance(card.backend, _Spec) and card.backend.times == 2
    with pytest.raises(CardError, match="backend.times: Input should be a valid integer"):
        card_from_yaml(CARD.replace("KIND", "echo-test").replace("times: 2", "times: x"))


def test_a_kind_without_a_spec_is_reported_on_the_card(backends):
    backend_module.register_backend("echo-test", _NoSpec())
    with pytest.raises(CardError) as caught:
        card_from_yaml(CARD.replace("KIND", "echo-test"))
    assert "backend: backend kind 'echo-test'" in str(caught.value)
    assert "declares no pydantic spec" in str(caught.value)
