"""The LLM scorer (Model-SAT form) against the project's real OpenAI-compatible server."""

from __future__ import annotations

import pytest
from _llm_server import CARD
from test_select import ZOO, one, plan

from orchestrator.selection.llm_scorer import LLMScorer, capability_text
from orchestrator.selection.rank import select_for_subtask


@pytest.fixture(scope="module")
def base_url(llm_server: str) -> str:
    return f"{llm_server}/v1"


def test_capability_text_has_description_and_probe_results():
    from orchestrator.cards import CapabilityProfile, ProbeResult

    card = ZOO.get("langid").card.model_copy(
        update={
            "profile": CapabilityProfile(
                probes=[ProbeResult(instruction="which language is this", score=1.0)]
            )
        }
    )
    text = capability_text(card)
    assert "Identifies which language" in text and "- which language is this: 1.00" in text


def test_llm_scorer_rates_every_candidate_through_the_server(base_url: str):
    scorer = LLMScorer(model=CARD, base_url=base_url, max_tokens=4)
    p = plan(one("text-classification", "which language is this text written in"))
    selection = select_for_subtask(p, p.subtasks[0], ZOO, scorer)
    names = {c.card.name for c in selection.candidates}
    assert names == {"langid", "sentiment"}  # "gone" is unavailable: filtered before scoring
    assert len(scorer.replies) == 2 and all(isinstance(r, str) for r in scorer.replies)
    for candidate in selection.candidates:
        parts = candidate.parts
        assert 0 <= parts.relevance <= 1 and parts.matched[0].startswith("llm:")
        assert parts.total == pytest.approx(0.9 * parts.relevance + 0.1 * parts.cost)
    totals = [c.parts.total for c in selection.candidates]
    assert totals == sorted(totals, reverse=True)
