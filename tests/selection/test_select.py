from decimal import Decimal

from orchestrator.cards import ToolCard
from orchestrator.cards.zoo import Zoo
from orchestrator.plan import Plan
from orchestrator.selection.rank import EvidenceScorer, select_for_plan, select_for_subtask


def card(name, task, description, inputs=("text",), outputs=("text",), **extra) -> ToolCard:
    data = {
        "name": name,
        "task": task,
        "description": description,
        "inputs": [{"name": f"in_{t}", "type": t} for t in inputs],
        "outputs": [{"name": f"out_{t}", "type": t} for t in outputs],
        "backend": {"kind": "python", "entry": "os.path:basename"},
        **extra,
    }
    return ToolCard.model_validate(data)


ZOO = Zoo.from_cards(
    [
        card(
            "langid",
            "text-classification",
            "Identifies which language a text is written in",
            tags=["language", "detection"],
        ),
        card(
            "sentiment",
            "text-classification",
            "Says whether a text sounds positive or negative",
            tags=["sentiment", "polarity"],
        ),
        card(
            "gone",
            "text-classification",
            "Detects the language of a text, very accurately",
            backend={"kind": "python", "entry": "no_such_module_here:load"},
            strength=1.0,
        ),
        card("ocr", "image-to-text", "Reads printed text in an image", inputs=("image",)),
        card(
            "tts-cheap",
            "text-to-speech",
            "Reads text aloud as speech",
            outputs=("audio",),
            cost={"usd_per_call": "0.001"},
        ),
        card(
            "tts-dear",
            "text-to-speech",
            "Reads text aloud as speech",
            outputs=("audio",),
            cost={"usd_per_call": "0.1"},
        ),
        card(
            "tts-textonly",
            "text-to-speech",
            "Reads text aloud and spells it phonetically",
            outputs=("text",),
        ),
    ]
)


def plan(*subtasks) -> Plan:
    return Plan.model_validate({"request": "r", "subtasks": list(subtasks)})


def one(task, instruction, args=None, id="s1", deps=()):
    return {
        "id": id,
        "task": task,
        "instruction": instruction,
        "deps": list(deps),
        "args": args or {"text": {"kind": "text", "value": "x"}},
    }


def test_instruction_decides_between_cards_of_one_task():
    p = plan(
        one("text-classification", "tell me which language it is in"),
        one("text-classification", "does it sound positive or negative", id="s2"),
    )
    selections = select_for_plan(p, ZOO, EvidenceScorer())
    assert selections["s1"].candidates[0].card.name == "langid"
    assert selections["s2"].candidates[0].card.name == "sentiment"
    why = selections["s1"].candidates[0].parts.explain()
    assert "relevance" in why and "languag" in why


def test_the_text_to_analyse_does_not_choose_the_card():
    from orchestrator.selection.rank import task_text

    review = "what a horrible, negative review: sentiment could not be worse"
    step = one(
        "text-classification",
        f'Which language is "{review}" in?',
        args={"text": {"kind": "text", "value": review}},
    )
    p = plan(step)
    assert task_text(p.subtasks[0]) == "Which language is in?"
    chosen = select_for_subtask(p, p.subtasks[0], ZOO, EvidenceScorer())
    assert chosen.candidates[0].card.name == "langid"
    # An instruction that is nothing but its text is scored as it is.
    bare = plan(one("text-classification", review, {"text": {"kind": "text", "value": review}}))
    assert task_text(bare.subtasks[0]) == review


def test_unavailable_card_is_rejected_with_its_reason_never_chosen():
    p = plan(one("text-classification", "detect the language"))
    selection = select_for_subtask(p, p.subtasks[0], ZOO, EvidenceScorer())
    assert "gone" not in [c.card.name for c in selection.candidates]
    [rejected] = [r for r in selection.rejected if r.card == "gone"]
    assert "no_such_module_here" in rejected.reason


def test_input_types_filter():
    p = plan(one("image-to-text", "read the text", args={"text": {"kind": "text", "value": "x"}}))
    selection = select_for_subtask(p, p.subtasks[0], ZOO, EvidenceScorer())
    assert selection.candidates == []
    assert "needs image input" in selection.missing_reason(p.subtasks[0])


def test_output_needed_by_a_consumer_filters_producers():
    p = plan(
        one("text-to-speech", "read it aloud"),
        one(
            "automatic-speech-recognition",
            "transcribe it",
            id="s2",
            deps=["s1"],
            args={"audio": {"kind": "ref", "step": "s1"}},
        ),
    )
    zoo = Zoo.from_cards(
        [
            *(e.card for e in ZOO),
            card("asr", "automatic-speech-recognition", "Transcribes speech", inputs=("audio",)),
        ]
    )
    selection = select_for_subtask(p, p.subtasks[0], zoo, EvidenceScorer())
    names = [c.card.name for c in selection.candidates]
    assert "tts-textonly" not in names
    assert any("does not output audio" in r.reason for r in selection.rejected)


def test_cheaper_card_wins_when_all_else_is_equal():
    p = plan(one("text-to-speech", "read it aloud"))
    selection = select_for_subtask(p, p.subtasks[0], ZOO, EvidenceScorer())
    ranked = [c.card.name for c in selection.candidates if c.card.name.startswith("tts-")]
    assert ranked.index("tts-cheap") < ranked.index("tts-dear")
    cheap = next(c for c in selection.candidates if c.card.name == "tts-cheap")
    dear = next(c for c in selection.candidates if c.card.name == "tts-dear")
    free = next(c for c in selection.candidates if c.card.name == "tts-textonly")
    assert free.parts.cost == 1.0 > cheap.parts.cost > dear.parts.cost > 0
    assert ZOO.get("tts-dear").card.cost.usd_per_call == Decimal("0.1")


# --- capability-instruction scoring -------------------------------------------------------------

from orchestrator.cards import CapabilityProfile, ProbeResult  # noqa: E402
from orchestrator.embed import EmbeddingCache, HashingEmbedder  # noqa: E402
from orchestrator.selection.rank import MAX_CANDIDATES, CapabilityScorer, rank_open  # noqa: E402


def profiled(card_obj, *probes):
    profile = CapabilityProfile(
        card_digest="t", probes=[ProbeResult(instruction=i, score=s) for i, s in probes]
    )
    return card_obj.model_copy(update={"profile": profile})


def test_probe_evidence_decides_between_cards_described_alike():
    blurb = "General text classifier for short messages"
    langid = profiled(
        card("a-clf", "text-classification", blurb),
        ("which language is this text written in", 1.0),
        ("is this review positive or negative", 0.0),
    )
    sentiment = profiled(
        card("b-clf", "text-classification", blurb),
        ("which language is this text written in", 0.0),
        ("is this review positive or negative", 1.0),
    )
    zoo = Zoo.from_cards([langid, sentiment])
    p = plan(
        one("text-classification", "tell me what language the message is written in"),
        one("text-classification", "is the customer review positive or negative", id="s2"),
    )
    selections = select_for_plan(p, zoo, CapabilityScorer())
    assert selections["s1"].candidates[0].card.name == "a-clf"
    assert selections["s2"].candidates[0].card.name == "b-clf"
    top = selections["s1"].candidates[0].parts
    assert top.evidence is not None and top.evidence > selections["s1"].candidates[1].parts.evidence
    assert "probe evidence" in top.explain() and top.as_dict()["task_fit"] == 1.0


def test_small_zoos_never_load_the_embedding_model():
    scorer = CapabilityScorer()
    p = plan(one("text-classification", "which language"))
    select_for_plan(p, ZOO, scorer)
    assert scorer.cache is None


def test_open_ranking_infers_the_task_and_ranks_unavailable_cards_lower():
    zoo = Zoo.from_cards([e.card for e in ZOO])
    top = rank_open("read this text aloud as speech", zoo, CapabilityScorer(), k=3)
    assert top[0].card.task == "text-to-speech"
    assert all(0 <= c.parts.task_fit <= 1 for c in top)
    gone = rank_open("detect the language of a text", zoo, CapabilityScorer(), k=10)
    assert next(c for c in gone if c.card.name == "gone").parts.availability == 0.0


def test_large_zoo_keeps_the_best_candidates_only(tmp_path):
    cards = [
        card(f"clf-{i:04d}", "text-classification", f"Classifies texts about topic number {i} well")
        for i in range(400)
    ]
    cards.append(card("langid-x", "text-classification", "Identifies which language a text is in"))
    zoo = Zoo.from_cards(cards)
    scorer = CapabilityScorer(cache=EmbeddingCache(HashingEmbedder(), tmp_path / "e.sqlite"))
    p = plan(one("text-classification", "which language is this text in"))
    selection = select_for_subtask(p, p.subtasks[0], zoo, scorer)
    assert len(selection.candidates) == MAX_CANDIDATES
    assert selection.candidates[0].card.name == "langid-x"
    totals = [c.parts.total for c in selection.candidates]
    assert totals == sorted(totals, reverse=True)
    # Each card's text, and its description alone (for the learned task classifier), once.
    assert scorer.cache is not None and scorer.cache.embedded_count == 2 * 401
    assert selection.candidates[0].parts.learned is not None  # embeddings on: the model ranks
    select_for_subtask(p, p.subtasks[0], zoo, scorer)
    assert scorer.cache.embedded_count == 2 * 401
