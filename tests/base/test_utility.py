"""Selection and routing rank a step's candidates by one utility, where measurement dominates."""

from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.budget import Budget, Ledger
from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.pipeline.graph import RunContext, _option, _selection_record
from orchestrator.plan import Plan
from orchestrator.routing.policy import DefaultPolicy, StepView
from orchestrator.selection.rank import CapabilityScorer, select_for_subtask
from orchestrator.utility import UNPROFILED_TRUST, estimated_quality

# The built-in aptitude test of text classification (orchestrator/cards/probes).
PROBES = [
    "which language is this text written in",
    "detect the language of the message",
    "identify what language the sentence is in",
    "is this review positive or negative",
    "what is the sentiment of this comment",
    "does the customer sound happy or unhappy",
]
INSTRUCTIONS = [
    "Is this review positive or negative?",
    "Which language is this written in?",
    "Tell me the sentiment of this comment",
]
# Descriptions that match some instructions far better than others: a description must never
# outweigh a measurement.
DESCRIPTIONS = [
    "Says whether a review is positive or negative: sentiment of a comment",
    "Identifies which language a text is written in",
    "A general text classifier",
    "Classifies text into labels with a transformer head",
]
EXECUTOR = InProcessExecutor()
SCORES = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
PRICES = st.sampled_from(["0", "0.0001", "0.001", "0.01"])


def _card(name, description, usd, strength, scores=None) -> ToolCard:
    profile = None
    if scores is not None:
        rows = zip(PROBES, scores, strict=True)
        profile = CapabilityProfile(probes=[ProbeResult(instruction=p, score=s) for p, s in rows])
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-classification",
            "description": description,
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "label", "type": "text"}],
            "backend": {"kind": "python", "entry": "os.path:basename"},
            "cost": {"usd_per_call": usd},
            "strength": strength,
            "profile": profile,
        }
    )


def _choose(cards, instruction, cost_weight):
    """Select and start the step as a run does; the selection's order and the started option."""
    zoo = Zoo.from_cards(cards)
    plan = Plan.model_validate(
        {
            "request": instruction,
            "subtasks": [
                {
                    "id": "s1",
                    "task": "text-classification",
                    "instruction": instruction,
                    "args": {"text": {"kind": "text", "value": "Guten Morgen"}},
                }
            ],
        }
    )
    selection = select_for_subtask(plan, plan.subtasks[0], zoo, CapabilityScorer(), cost_weight)
    record = _selection_record(selection)
    ctx = RunContext(
        zoo=zoo,
        planner=None,
        scorer=CapabilityScorer(),
        executor=EXECUTOR,
        ledger=Ledger(Budget()),
        run_dir=Path("."),
        base_dir=Path("."),
    )
    options = tuple(_option(ctx, i, c) for i, c in enumerate(record["candidates"]))
    view = StepView("s1", "text-classification", instruction, options)
    decision = DefaultPolicy(cost_weight=cost_weight).start(view)
    return selection, options, options[decision.candidate], decision


ZOOS = st.lists(
    st.tuples(
        st.sampled_from(DESCRIPTIONS),
        PRICES,
        st.floats(0, 1),
        st.lists(SCORES, min_size=len(PROBES), max_size=len(PROBES)),
    ),
    min_size=2,
    max_size=6,
)
EXAMPLES = 300


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ZOOS, st.sampled_from(INSTRUCTIONS), st.floats(0, 5))
def test_a_card_of_lower_quality_and_higher_cost_is_never_chosen(zoo, instruction, weight):
    cards = [_card(f"c{i}", d, usd, s, sc) for i, (d, usd, s, sc) in enumerate(zoo)]
    selection, options, chosen, decision = _choose(cards, instruction, weight)
    for other in options:
        better = other.quality >= chosen.quality and other.usd <= chosen.usd
        strictly = other.quality > chosen.quality or other.usd < chosen.usd
        assert not (better and strictly), (decision.reason, other)
    # Selection and routing agree: the router starts with the selection's first candidate.
    assert selection.candidates[0].card.name == chosen.card
    assert "quality" in decision.reason and "price share" in decision.reason


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ZOOS, st.sampled_from(INSTRUCTIONS))
def test_with_cost_weight_zero_the_best_measured_card_wins(zoo, instruction):
    cards = [_card(f"c{i}", d, usd, s, sc) for i, (d, usd, s, sc) in enumerate(zoo)]
    _, options, chosen, _ = _choose(cards, instruction, 0.0)
    assert chosen.measured
    assert chosen.quality == max(o.quality for o in options)


SENTIMENT = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # vader's measured scores on the test


def test_a_declared_strength_is_weaker_than_a_measurement():
    vader = _card("vader", "Rule-based sentiment of English text", "0.000000006", 0.6, SENTIMENT)
    minilm = _card("minilm-head", "Sentiment of a review: positive or negative", "0", 0.95)
    _, _, chosen, decision = _choose([vader, minilm], "Is this review positive or negative?", 0.2)
    assert chosen.card == "vader"
    assert "unprofiled" in decision.reason and "measured" in decision.reason
    assert estimated_quality(None, 0.95) == UNPROFILED_TRUST * 0.95


def test_a_card_measured_as_failing_is_not_chosen_to_save_money():
    vader = _card("vader", "Rule-based sentiment of English text", "0.001", 0.6, SENTIMENT)
    broken = _card("minilm-head", "Sentiment of a review: positive or negative", "0", 0.95, [0] * 6)
    _, _, chosen, decision = _choose([vader, broken], "Is this review positive or negative?", 0.2)
    assert chosen.card == "vader"
    assert "pays 1.00 more of the price for 1.000 more quality" in decision.reason
    # Only a cost weight that says so explicitly trades that much quality for the price.
    _, _, cheap, _ = _choose([vader, broken], "Is this review positive or negative?", 1.5)
    assert cheap.card == "minilm-head"


def test_an_always_positive_card_loses_to_the_measured_sentiment_model():
    always = [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]  # right only where the answer is "positive"
    vader = _card("vader", "Rule-based sentiment of English text", "0.000000006", 0.6, SENTIMENT)
    constant = _card("always-positive", "Sentiment of any comment", "0", 0.95, always)
    _, _, chosen, _ = _choose([vader, constant], "What is the sentiment of this comment?", 0.2)
    assert chosen.card == "vader"


def test_measured_quality_is_the_score_on_the_probes_like_the_instruction():
    vader = _card("vader", "Rule-based sentiment of English text", "0", 0.6, SENTIMENT)
    _, options, _, _ = _choose([vader], "Which language is this written in?", 0.2)
    assert options[0].quality < 0.1  # it failed every language probe
    _, options, _, _ = _choose([vader], "Is this review positive or negative?", 0.2)
    assert options[0].quality > 0.9
    assert options[0].usd == Decimal(0)


def test_a_card_measured_as_failing_this_kind_of_instruction_is_never_a_second_voter():
    from orchestrator.routing.policy import Answer, Option

    options = (
        Option(0, "vader", 0.8, 0.5, Decimal("0.0001"), True),
        Option(1, "langid", 0.0, 0.9, Decimal("0"), True),  # failed every sentiment probe
        Option(2, "strong-sentiment", 0.97, 0.4, Decimal("0.01"), True),
    )
    answered = Answer(1, 0, "vader", "ok", text="positive", key="positive")
    view = StepView("s1", "text-classification", "Is this positive?", options, (answered,))
    decision = DefaultPolicy(cost_weight=0.2).decide(view)
    assert decision.candidate != 1, decision
    assert decision.action in ("escalate", "accept") and "langid" not in decision.reason
