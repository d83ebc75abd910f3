"""Token streaming through a run: TokenDelta while a step runs, TokensDiscarded for an attempt
that is not the step's result.

Real runs: two small python writer cards run by the worker pool with a fixed one-step plan (the
first streams half a text and then fails, so the router retries on the second), and the real
SmolLM2 card through the built-in zoo (slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.events import Answered, StepFinished, StepStarted, TokenDelta, TokensDiscarded
from orchestrator.plan import Plan, Subtask, TextArg
from orchestrator.routing.policy import Decision

WRITER_CARD = """\
name: {name}
task: text-generation
description: Writes a short text about what it is asked (a test card).
inputs: [{{name: prompt, type: text}}]
outputs: [{{name: text, type: text}}]
backend: {{kind: python, entry: "{module}:load", options: {{fail: {fail}}}}}
cost: {{usd_per_call: "0.001", latency_s: 0.2, load_s: 0.2}}
languages: [en]
tags: [write, story, poem]
strength: {strength}
"""

WRITER_MODULE = '''\
"""Streams a text word by word; with ``fail`` it stops half way and raises."""


def load(options):
    def tool(inputs, ctx):
        words = ["Waves", " fold", " into", " foam", "."]
        if options["fail"]:
            words = ["Half", " a", " thought"]
        for word in words:
            if ctx.on_text is not None:
                ctx.on_text(word)
        if options["fail"]:
            raise RuntimeError("the writer lost its thread")
        return {"text": "".join(words)}

    return tool
'''


class OneStep:
    """A fixed plan: one text-generation step."""

    name = "one-step"

    def plan(self, request, zoo, *, files=()):
        return Plan(
            request=request,
            planner=self.name,
            subtasks=[
                Subtask(
                    id="s1",
                    task="text-generation",
                    instruction=request,
                    args={"text": TextArg(value=request)},
                )
            ],
        )


def _writers(folder: Path) -> Path:
    folder.mkdir()
    for name, module, fail, strength in (
        ("writer-flaky", "writer_flaky", "true", 0.99),
        ("writer-steady", "writer_steady", "false", 0.3),
    ):
        card = WRITER_CARD.format(name=name, module=module, fail=fail, strength=strength)
        (folder / f"{module}.yaml").write_text(card)
        (folder / f"{module}.py").write_text(WRITER_MODULE)
    return folder


def test_a_failed_attempts_text_is_discarded_and_the_retry_streams_the_answer(tmp_path):
    cards = _writers(tmp_path / "cards")
    events: list = []
    with Orchestrator(
        Config(runs_dir=tmp_path / "runs", card_dirs=[cards]),
        zoo=Zoo.load([cards], builtin=False),
        planner=OneStep(),
        durable=False,
    ) as orchestrator:
        result = orchestrator.run(
            "write a line about the sea", budget=Budget(calls=4), on_event=events.append
        )
    assert result.status == "ok", result.answer
    started = [e.card for e in events if isinstance(e, StepStarted)]
    assert started == ["writer-flaky", "writer-steady"], started
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    first = [e.text for e in deltas if e.seq == 1]
    second = [e.text for e in deltas if e.seq == 2]
    assert first == ["Half", " a", " thought"]
    assert {e.card for e in deltas if e.seq == 1} == {"writer-flaky"}
    assert second == ["Waves", " fold", " into", " foam", "."]
    (discarded,) = [e for e in events if isinstance(e, TokensDiscarded)]
    assert (discarded.step, discarded.seq) == ("s1", 1)
    assert "the writer lost its thread" in discarded.reason
    # the discard comes before the retry's first piece; the kept text is the step's output
    order = events.index(discarded)
    assert all(events.index(e) > order for e in deltas if e.seq == 2)
    finished = [e for e in events if isinstance(e, StepFinished) and e.status == "ok"]
    assert finished[-1].outputs == {"text": "".join(second)}
    assert "Waves fold into foam." in result.answer and "Half a thought" not in result.answer
    assert isinstance(events[-1], Answered)


class SecondOpinion:
    """A router that starts on the steady writer, calls it again once, then keeps the second."""

    name = "second-opinion"

    def start(self, view):
        steady = view.option("writer-steady")
        return Decision("start", "the steady writer first", candidate=steady.index)

    def decide(self, view):
        if len(view.answers) == 1:
            again = view.option("writer-steady")
            return Decision("retry", "a second take", candidate=again.index)
        return Decision("accept", "the second take", use=view.answers[-1].seq)


def test_an_answer_the_router_does_not_keep_is_discarded(tmp_path):
    cards = _writers(tmp_path / "cards")
    events: list = []
    with Orchestrator(
        Config(runs_dir=tmp_path / "runs", card_dirs=[cards]),
        zoo=Zoo.load([cards], builtin=False),
        planner=OneStep(),
        policy=SecondOpinion(),
        durable=False,
    ) as orchestrator:
        result = orchestrator.run("write a line", budget=Budget(calls=4), on_event=events.append)
    assert result.status == "ok", result.answer
    discarded = [e for e in events if isinstance(e, TokensDiscarded)]
    assert [(e.step, e.seq) for e in discarded] == [("s1", 1)]
    assert "the router chose to retry: a second take" in discarded[0].reason
    assert {e.seq for e in events if isinstance(e, TokenDelta)} == {1, 2}


@pytest.mark.slow
@pytest.mark.models
def test_a_real_chat_answer_streams_before_its_step_finishes(orchestrator):
    events: list = []
    result = orchestrator.run(
        "Write a short poem about the sea", budget=Budget(calls=3), on_event=events.append
    )
    assert result.status == "ok", result.answer
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert len(deltas) > 5 and {e.card for e in deltas} == {"smollm2-135m-chat"}
    finished = next(e for e in events if isinstance(e, StepFinished) and e.status == "ok")
    assert all(events.index(d) < events.index(finished) for d in deltas)
    text = "".join(d.text for d in deltas)
    assert finished.outputs == {"text": text}
    assert text in result.answer
    assert not any(isinstance(e, TokensDiscarded) for e in events)
