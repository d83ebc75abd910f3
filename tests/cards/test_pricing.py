from decimal import Decimal

from orchestrator.cards import ToolCard
from orchestrator.cards.pricing import actual_cost, counts_tokens, expected_cost


def card(**cost) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": "priced",
            "task": "text-generation",
            "description": "a priced model for budget tests",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "python", "entry": "os.path:basename"},
            "cost": cost,
        }
    )


def test_expected_and_actual_cost_from_card_prices():
    priced = card(
        usd_per_call="0.01",
        usd_per_second="0.001",
        usd_per_1k_input_tokens="0.5",
        usd_per_1k_output_tokens="1.5",
        latency_s=2.0,
        load_s=3.0,
    )
    cold = expected_cost(priced, input_tokens=1000, max_output_tokens=1000, cold=True)
    warm = expected_cost(priced, input_tokens=1000, max_output_tokens=1000, cold=False)
    assert cold.usd == Decimal("0.01") + Decimal("0.005") + Decimal("2.0")
    assert warm.usd == cold.usd - Decimal("0.003")
    real = actual_cost(priced, seconds=1.0, input_tokens=10, output_tokens=20)
    assert real.usd == Decimal("0.01") + Decimal("0.001") + Decimal("0.005") + Decimal("0.03")
    assert real.tokens == 30 and real.calls == 1


def test_billed_cost_is_what_the_provider_charged():
    priced = card(usd_per_call="0.01", usd_per_1k_output_tokens="1")
    billed = actual_cost(
        priced, seconds=1, input_tokens=5, output_tokens=500, billed_usd=Decimal("0.0042")
    )
    assert billed.usd == Decimal("0.0042") and billed.tokens == 505 and billed.calls == 1


def test_only_cards_that_use_tokens_expect_tokens():
    # a Python tool without token prices (an offline classifier) uses none: a token limit
    # must not refuse it (it used to hold input + 256 output tokens for every call)
    free = card(latency_s=1.0)
    assert not counts_tokens(free)
    assert expected_cost(free, input_tokens=10, max_output_tokens=20, cold=False).tokens == 0
    priced = card(usd_per_1k_output_tokens="0.5")
    assert counts_tokens(priced)
    assert expected_cost(priced, input_tokens=10, max_output_tokens=20, cold=False).tokens == 30
    chat = ToolCard.model_validate(
        {
            "name": "chat",
            "task": "text-generation",
            "description": "a chat model behind an API",
            "inputs": [{"name": "prompt", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": "m"},
        }
    )
    assert counts_tokens(chat)
    for task, counted in (
        ("summarization", True),
        ("translation_en_to_fr", True),
        ("text-classification", False),
    ):
        model = ToolCard.model_validate(
            {
                "name": "hf",
                "task": "summarization",
                "description": "a transformers model",
                "inputs": [{"name": "text", "type": "text"}],
                "outputs": [{"name": "text", "type": "text"}],
                "backend": {"kind": "transformers", "task": task, "model": "m"},
            }
        )
        assert counts_tokens(model) is counted, task
