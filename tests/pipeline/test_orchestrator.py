"""End-to-end runs on the real offline models (through worker processes)."""

from __future__ import annotations

import json
import time
import wave
from decimal import Decimal
from pathlib import Path

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.cards import card_digest
from orchestrator.cli.demo import DEMO_REQUESTS
from orchestrator.execution.pool import WorkerPoolExecutor

TESTS = Path(__file__).resolve().parents[1]


def step_outputs(result, task):
    return [s.outputs for s in result.steps if s.task == task and s.outputs]


def test_demo_request_on_real_models(orchestrator, demo_inputs, tmp_path):
    events = []
    result = orchestrator.run(
        DEMO_REQUESTS[0], base_dir=demo_inputs, out_dir=tmp_path, on_event=events.append
    )
    assert result.status == "ok", result.answer
    by_card = {s.card: s for s in result.steps}
    transcript = by_card["whisper-tiny-en"].outputs["text"].lower()
    for word in ("love", "sunny", "happy"):
        assert word in transcript
    assert by_card["lingua-langid"].outputs["label"] == "English"
    assert by_card["vader-sentiment"].outputs["label"] == "positive"
    # the spoken answer is a real WAV among the artifacts, inside the run folder
    [wav] = result.artifacts
    assert wav.parent == tmp_path.resolve()
    with wave.open(str(wav)) as audio:
        assert audio.getnframes() / audio.getframerate() > 2.0
    assert "English" in result.answer and "positive" in result.answer
    # every step explains its choice, and the trace has timing and cost
    for step in result.steps:
        assert step.candidates and "relevance" in step.candidates[0]["why"]
        assert step.seconds > 0
    assert Decimal(result.spent["usd"]) > 0 and result.spent["calls"] == 4
    kinds = [e["type"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "answer" and kinds.count("step_finished") == 4


class ScriptedPlanner:
    """A deterministic planner that returns a fixed plan (stands in for an LLM planner)."""

    name = "scripted"

    def __init__(self, plan: dict) -> None:
        self._plan = plan

    def plan(self, request, zoo, *, files=()):
        from orchestrator.plan import Plan

        return Plan.model_validate({"request": request, **self._plan})


def sleeper_card(name: str, task: str) -> dict:
    return {
        "name": name,
        "task": task,
        "description": f"a test tool that sleeps when asked, for {task}",
        "inputs": [{"name": "text", "type": "text"}],
        "outputs": [{"name": "reply", "type": "text"}],
        "backend": {"kind": "python", "entry": "_exec_tools:load"},
        "cost": {"latency_s": 1.0, "load_s": 0.5},
    }


def test_independent_steps_run_in_parallel(tmp_path):
    from orchestrator.cards import ToolCard

    zoo = Zoo.from_cards(
        ToolCard.model_validate(sleeper_card(n, t))
        for n, t in (("sleep-a", "text-classification"), ("sleep-b", "summarization"))
    )
    sleep = {"kind": "text", "value": "sleep 1"}
    planner = ScriptedPlanner(
        {
            "subtasks": [
                {
                    "id": "a",
                    "task": "text-classification",
                    "instruction": "x",
                    "args": {"text": sleep},
                },
                {"id": "b", "task": "summarization", "instruction": "y", "args": {"text": sleep}},
            ]
        }
    )
    executor = WorkerPoolExecutor(extra_sys_path=[str(TESTS)])
    with Orchestrator(
        Config(runs_dir=tmp_path), zoo=zoo, planner=planner, executor=executor
    ) as orch:
        orch.run("warm the workers up")
        seen: dict[tuple[str, str], float] = {}

        def clock(event: dict) -> None:
            if event["type"] in ("step_started", "step_finished"):
                seen[event["type"], event["step"]] = time.monotonic()

        result = orch.run("two independent one-second steps", on_event=clock)
    executor.close()
    assert result.status == "ok"
    assert all(step.seconds >= 1.0 for step in result.steps)
    # the two one-second calls overlap in time (one after the other, they could not)
    last_start = max(seen["step_started", "a"], seen["step_started", "b"])
    first_end = min(seen["step_finished", "a"], seen["step_finished", "b"])
    assert first_end - last_start > 0.5


def test_image_request_reads_german(orchestrator, demo_inputs, tmp_path):
    result = orchestrator.run(DEMO_REQUESTS[1], base_dir=demo_inputs, out_dir=tmp_path)
    assert result.status == "ok", result.answer
    [ocr] = step_outputs(result, "image-to-text")
    assert "guten morgen" in ocr["text"].lower()
    assert "German" in result.answer


def test_french_sentence_is_french(orchestrator, tmp_path):
    result = orchestrator.run(
        'Which language is "Je voudrais un grand café, merci beaucoup" written in?',
        out_dir=tmp_path,
    )
    assert result.status == "ok", result.answer
    [lang] = step_outputs(result, "text-classification")
    assert lang["label"] == "French"


def test_negative_sentiment(orchestrator, tmp_path):
    result = orchestrator.run(
        'Is "this was a terrible, awful experience and I hate it" positive or negative?',
        out_dir=tmp_path,
    )
    [label] = step_outputs(result, "text-classification")
    assert label["label"] == "negative"


def test_a_warm_millisecond_tool_runs_under_a_money_budget(orchestrator, tmp_path):
    request = 'Is "what a lovely day" positive or negative?'
    orchestrator.run(request, out_dir=tmp_path / "warm-up")  # the sentiment worker is warm now
    assert orchestrator.executor.is_warm(orchestrator.zoo.get("vader-sentiment").card)
    result = orchestrator.run(request, out_dir=tmp_path, budget=Budget(usd=Decimal("0.01")))
    assert result.status == "ok", result.message
    assert result.steps[0].card == "vader-sentiment"


def test_budget_too_small_ends_cleanly_with_what_finished(orchestrator, demo_inputs, tmp_path):
    result = orchestrator.run(
        DEMO_REQUESTS[0], base_dir=demo_inputs, out_dir=tmp_path, budget=Budget(calls=2)
    )
    assert result.status == "budget_exhausted"
    assert result.spent["calls"] == 2
    statuses = {s.step: s.status for s in result.steps}
    assert statuses["s1"] == "done"
    assert sorted([statuses["s2"], statuses["s3"]]) == ["done", "over_budget"]
    assert statuses["s4"] == "skipped"
    assert "budget ran out" in result.answer
    assert "love" in result.answer.lower()  # the finished transcript is kept


def test_money_budget_below_one_call_runs_nothing(orchestrator, demo_inputs, tmp_path):
    result = orchestrator.run(
        DEMO_REQUESTS[0],
        base_dir=demo_inputs,
        out_dir=tmp_path,
        budget=Budget(usd=Decimal("0.000001")),
    )
    assert result.status == "budget_exhausted"
    assert result.spent["calls"] == 0
    assert "usd" in result.answer


def test_request_no_card_can_serve_names_what_is_missing(orchestrator, tmp_path):
    result = orchestrator.run(
        'Summarize "The committee met on Tuesday and agreed to fund the new library."',
        out_dir=tmp_path,
    )
    assert result.status == "unservable"
    assert "summarization" in result.message
    assert "distilbart-cnn-summarizer" in result.message and "cache" in result.message
    assert result.spent["calls"] == 0


def test_empty_prompt_is_rejected_with_a_clear_message(orchestrator):
    result = orchestrator.run("  ")
    assert result.status == "rejected"
    assert "empty" in result.message


def test_missing_file_is_rejected(orchestrator, tmp_path):
    result = orchestrator.run("Transcribe nowhere.wav", base_dir=tmp_path)
    assert result.status == "rejected"
    assert "nowhere.wav" in result.message and "not found" in result.message


BROKEN_CARD = """
name: broken-sentiment
task: text-classification
description: Tells whether a text sounds positive or negative (sentiment), very accurately.
inputs: [{name: text, type: text}]
outputs: [{name: label, type: text}]
backend: {kind: python, entry: "_e2e_tools:load_broken", options: {message: "weights corrupted"}}
tags: [sentiment, positive, negative, polarity]
strength: 1.0
"""


def test_a_tool_that_raises_is_retried_on_the_next_candidate(builtin_zoo, tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "broken.yaml").write_text(BROKEN_CARD)
    # It was profiled as well as VADER (and is free) before its weights broke: chosen first.
    card = Zoo.load([cards]).get("broken-sentiment").card
    vader = builtin_zoo.get("vader-sentiment").card
    probes = [p.model_dump() for p in vader.profile.probes]
    record = {"card_digest": card_digest(card), "probes": probes}
    (cards / "broken.profile.json").write_text(json.dumps(record))
    zoo = Zoo.load([cards])
    executor = WorkerPoolExecutor(extra_sys_path=[str(TESTS)])
    with Orchestrator(Config(runs_dir=tmp_path), zoo=zoo, executor=executor) as orch:
        result = orch.run('Does "what a lovely gift, thank you" sound positive or negative?')
    executor.close()
    [step] = result.steps
    assert step.candidates[0]["card"] == "broken-sentiment"
    assert [a["card"] for a in step.attempts] == ["broken-sentiment", "vader-sentiment"]
    assert "weights corrupted" in step.attempts[0]["error"]
    assert step.outputs["label"] == "positive" and result.status == "ok"
    assert any(d["action"] == "retry" for d in result.decisions)


LEAD_CARD = """\
name: {name}
task: summarization
description: >-
  Summarises an English text by keeping its first sentences (the "lead" baseline of news
  summarisation). Instant, offline, and never invents anything.
inputs: [{{name: text, type: text, description: the text to summarise}}]
outputs: [{{name: summary, type: text}}]
backend: {{kind: python, entry: "{module}:load", options: {{sentences: 1}}}}
cost: {{usd_per_call: "0.00001", latency_s: 0.01, load_s: 0.1, memory_mb: 30}}
languages: [en]
tags: [summary, summarize, shorten, gist]
result_label: Summary
strength: {strength}
"""

LEAD_MODULE = """\
import re


def load(options):
    keep = int(options.get("sentences", 1))

    def summarise(inputs, ctx):
        sentences = re.split(r"(?<=[.!?])\\s+", inputs["text"].strip())
        return {"summary": " ".join(sentences[:keep])}

    return summarise
"""

STORM = 'Summarize "The storm hit the coast at dawn. Thousands lost power."'


def test_a_zoo_passed_in_runs_its_own_python_cards(tmp_path):
    """The zoo's cards bring their code folders: none is in the configuration's card_dirs."""
    folder = tmp_path / "my_cards"
    folder.mkdir()
    (folder / "lead-summary.yaml").write_text(
        LEAD_CARD.format(name="lead-summary", module="lead_summary", strength=0.4)
    )
    (folder / "lead_summary.py").write_text(LEAD_MODULE)
    config = Config(runs_dir=tmp_path / "runs")
    assert config.card_dirs == []
    with Orchestrator(config, zoo=Zoo.load([folder]), durable=False) as orch:
        result = orch.run(STORM)
    assert result.status == "ok", result.answer
    [step] = result.steps
    assert step.card == "lead-summary" and len(step.attempts) == 1
    assert step.outputs == {"summary": "The storm hit the coast at dawn."}
    assert result.answer.endswith(": The storm hit the coast at dawn."), result.answer


def test_a_chosen_card_that_could_not_load_is_named_in_the_answer(tmp_path):
    folder = tmp_path / "my_cards"
    folder.mkdir()
    (folder / "broken-summary.yaml").write_text(
        LEAD_CARD.format(name="broken-summary", module="broken_summary", strength=0.9)
    )
    (folder / "broken_summary.py").write_text("raise ImportError('a dependency is missing')\n")
    (folder / "lead-summary.yaml").write_text(
        LEAD_CARD.format(name="lead-summary", module="lead_summary", strength=0.4)
    )
    (folder / "lead_summary.py").write_text(LEAD_MODULE)
    with Orchestrator(Config(runs_dir=tmp_path / "runs"), zoo=Zoo.load([folder])) as orch:
        result = orch.run(STORM)
    [step] = result.steps
    assert [a["card"] for a in step.attempts] == ["broken-summary", "lead-summary"]
    assert step.outputs["summary"] == "The storm hit the coast at dawn."
    assert "broken-summary could not run (failed to load: ImportError" in result.answer
    assert "lead-summary answered instead" in result.answer


def test_all_candidates_failing_ends_failed_with_reason(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "broken.yaml").write_text(BROKEN_CARD)
    zoo = Zoo.load([cards], builtin=False)
    executor = WorkerPoolExecutor(extra_sys_path=[str(TESTS)])
    with Orchestrator(Config(runs_dir=tmp_path), zoo=zoo, executor=executor) as orch:
        result = orch.run('Is "great stuff" positive?')
    executor.close()
    assert result.status == "failed"
    assert "weights corrupted" in result.answer


def test_an_attached_or_named_text_file_is_the_text_to_analyse(orchestrator, tmp_path):
    review = tmp_path / "review.txt"
    review.write_text("This product is wonderful, I love it. " * 200)
    result = orchestrator.run("Is this text positive or negative?", files=[review])
    assert result.status == "ok", result.message
    [step] = result.plan.subtasks
    assert step.args["text"].kind == "file" and step.args["text"].path == str(review.resolve())
    assert result.answer == "Sentiment of review.txt: positive."
    (tmp_path / "greeting.md").write_text("Guten Morgen, wie geht es dir heute?")
    named = orchestrator.run("Which language is greeting.md in?", base_dir=tmp_path)
    assert named.status == "ok", named.message
    assert named.answer == "Language of greeting.md: German."


def test_a_cancel_during_the_last_step_keeps_the_whole_answer_and_its_files(orchestrator):
    import threading

    cancel = threading.Event()

    def on_event(event):
        if event["type"] == "step_started":
            cancel.set()  # as Ctrl-C while the only step runs: it finishes, nothing is left

    result = orchestrator.run(
        'Read this aloud: "Good morning everyone."', cancel=cancel, on_event=on_event
    )
    assert result.status == "cancelled"
    assert [s.status for s in result.steps] == ["done"]
    assert "after every step had finished: the answer is complete" in result.message
    [audio] = result.artifacts
    assert audio.suffix == ".wav" and audio.is_file() and audio.name in result.answer
