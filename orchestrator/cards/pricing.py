"""What a call to a tool card is expected to cost, and what a finished call cost.

Both apply the card's prices (per call, per second, per 1,000 tokens) to a call's seconds and
tokens, giving a :class:`~orchestrator.budget.Cost` that a run's
:class:`~orchestrator.budget.Ledger` reserves before the call and settles after it.
"""

from __future__ import annotations

from decimal import Decimal

from orchestrator.budget import Cost
from orchestrator.cards.card import ToolCard

__all__ = ["MIN_CALL_S", "actual_cost", "counts_tokens", "expected_cost"]


def _token_usd(card: ToolCard, input_tokens: int, output_tokens: int) -> Decimal:
    return (
        card.cost.usd_per_1k_input_tokens * input_tokens
        + card.cost.usd_per_1k_output_tokens * output_tokens
    ) / 1000


MIN_CALL_S = 0.25
"""The least time a call is expected to take, whatever the card's measured latency says: a
call's round trip to its worker process costs this much at worst under load, and a hold that
is a few multiples of a 1 ms latency would leave a timeout too short to make the call at all."""


_TOKEN_BACKENDS = ("openai", "replay")
_TOKEN_TASKS = ("text-generation", "text2text-generation", "summarization", "translation")


def counts_tokens(card: ToolCard) -> bool:
    """Whether calls to ``card`` spend tokens that a token limit must hold.

    True for a card priced by tokens, and for backends that generate and count tokens (an
    OpenAI-compatible chat model, recorded answers, a transformers text generator, summarizer
    or translator). Other cards (a classifier, a speech model, a Python tool with no token
    prices) are expected to use none.
    """
    if card.cost.usd_per_1k_input_tokens or card.cost.usd_per_1k_output_tokens:
        return True
    backend = card.backend
    if backend.kind in _TOKEN_BACKENDS:
        return True
    task = getattr(backend, "task", "") if backend.kind == "transformers" else ""
    return task.partition("_")[0] in _TOKEN_TASKS


def expected_cost(card: ToolCard, *, input_tokens: int, max_output_tokens: int, cold: bool) -> Cost:
    """What a call to ``card`` is expected to cost, from its prices and measured latency.

    Its seconds are at least :data:`MIN_CALL_S`, plus the card's ``load_s`` when ``cold``.
    Tokens are counted only for a card that :func:`counts_tokens`.
    """
    seconds = max(card.cost.latency_s, MIN_CALL_S) + (card.cost.load_s if cold else 0.0)
    tokens = input_tokens + max_output_tokens if counts_tokens(card) else 0
    usd = (
        card.cost.usd_per_call
        + card.cost.usd_per_second * Decimal(str(round(seconds, 6)))
        + _token_usd(card, input_tokens, max_output_tokens)
    )
    return Cost(usd=usd, seconds=seconds, tokens=tokens, calls=1)


def actual_cost(
    card: ToolCard,
    *,
    seconds: float,
    input_tokens: int,
    output_tokens: int,
    billed_usd: Decimal | None = None,
) -> Cost:
    """What a finished call cost: its prices applied to its real time and tokens.

    ``billed_usd`` is the price the model's provider reported for the call (an API's bill, a
    recorded price): when given, it is the money spent.
    """
    usd = (
        card.cost.usd_per_call
        + card.cost.usd_per_second * Decimal(str(round(seconds, 6)))
        + _token_usd(card, input_tokens, output_tokens)
    )
    if billed_usd is not None:
        usd = billed_usd
    return Cost(usd=usd, seconds=seconds, tokens=input_tokens + output_tokens, calls=1)
