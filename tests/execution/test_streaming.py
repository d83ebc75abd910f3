"""Token streaming over the worker channel: pieces reach the caller while the call runs.

A small python card that streams (real worker processes of the pool, and the in-process
executor), and the real SmolLM2 card (slow: real weights).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.cards import ToolCard, load_card
from orchestrator.cards.backend import CallContext
from orchestrator.cards.zoo import Zoo
from orchestrator.execution.backends.transformers_pipeline import _StrippedPieces
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.execution.pool import WorkerPoolExecutor

WRITER_CARD = """\
name: slow-writer
task: text-generation
description: Writes a fixed sentence word by word, slowly (a test card).
inputs: [{name: prompt, type: text}]
outputs: [{name: text, type: text}]
backend: {kind: python, entry: "slow_writer:load"}
cost: {usd_per_call: "0", latency_s: 0.5, load_s: 0.2}
"""

WRITER_MODULE = '''\
"""Streams a sentence word by word when asked to (ctx.on_text), then returns it whole."""

import time

WORDS = ["The", " sea", " is", " calm", " tonight", "."]


def load(options):
    def tool(inputs, ctx):
        for word in WORDS:
            if ctx.on_text is not None:
                ctx.on_text(word)
            time.sleep(0.15)
        return {"text": "".join(WORDS)}

    return tool
'''


@pytest.fixture
def writer(tmp_path: Path) -> ToolCard:
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "slow_writer.yaml").write_text(WRITER_CARD)
    (folder / "slow_writer.py").write_text(WRITER_MODULE)
    return load_card(folder / "slow_writer.yaml")


def _streamed_call(executor, card: ToolCard, scratch: Path) -> tuple[list, float, dict]:
    """Call ``card``; the pieces with the time each came, the time the call returned, outputs."""
    pieces: list[tuple[float, str]] = []
    ctx = CallContext(scratch=scratch, on_text=lambda p: pieces.append((time.monotonic(), p)))
    outcome = executor.call(card, {"prompt": "the sea"}, ctx)
    return pieces, time.monotonic(), outcome.outputs


@pytest.mark.parametrize("kind", ["pool", "inprocess"])
def test_pieces_arrive_while_the_call_runs_and_join_to_the_output(
    writer, tmp_path, kind, monkeypatch
):
    monkeypatch.syspath_prepend(str(writer.code_folder))  # in-process: imported from here
    executor = WorkerPoolExecutor() if kind == "pool" else InProcessExecutor()
    try:
        pieces, returned, outputs = _streamed_call(executor, writer, tmp_path / "out")
        # twice: the second call goes to the warm worker, which must still be in step
        again, _, outputs_again = _streamed_call(executor, writer, tmp_path / "out")
    finally:
        executor.close()
    texts = [p for _, p in pieces]
    assert texts == ["The", " sea", " is", " calm", " tonight", "."]
    assert "".join(texts) == outputs["text"] == "The sea is calm tonight."
    # the first piece came about five sleeps before the reply, not with it
    assert returned - pieces[0][0] > 0.5
    assert [p for _, p in again] == texts and outputs_again == outputs


def test_a_call_without_a_listener_is_not_streamed(writer, tmp_path):
    with WorkerPoolExecutor() as executor:
        outcome = executor.call(writer, {"prompt": "x"}, CallContext(scratch=tmp_path))
    assert outcome.outputs == {"text": "The sea is calm tonight."}


def test_a_listener_that_raises_leaves_the_worker_in_step(writer, tmp_path):
    def refuse(piece: str) -> None:
        raise RuntimeError(f"no room for {piece!r}")

    with WorkerPoolExecutor() as executor:
        with pytest.raises(RuntimeError, match="no room for 'The'"):
            executor.call(writer, {"prompt": "x"}, CallContext(scratch=tmp_path, on_text=refuse))
        pieces, _, outputs = _streamed_call(executor, writer, tmp_path)
    assert "".join(p for _, p in pieces) == outputs["text"]


def test_stripped_pieces_join_to_the_stripped_text():
    sent: list[str] = []
    pieces = _StrippedPieces(sent.append)
    for piece in ["\n ", " Hello", " world", " \n", "", "again ", "\n"]:
        pieces(piece)
    assert sent == ["Hello", " world", " \nagain"]
    assert pieces.text() == "".join(sent) == "\n  Hello world \nagain \n".strip()


@pytest.mark.slow
@pytest.mark.models
def test_smollm2_streams_its_answer_token_by_token_through_a_worker(tmp_path):
    card = Zoo.load([]).get("smollm2-135m-chat").card
    with WorkerPoolExecutor() as executor:
        pieces, returned, outputs = _streamed_call(executor, card, tmp_path)
    texts = [p for _, p in pieces]
    assert len(texts) > 5, texts
    assert "".join(texts) == outputs["text"] and outputs["text"].strip() == outputs["text"]
    assert returned - pieces[0][0] > 0.2  # generation went on after the first piece came
