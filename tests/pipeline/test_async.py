"""``await orch.arun(...)`` and ``async for event in orch.astream(...)``, cancelled from asyncio."""

from __future__ import annotations

import asyncio
import time

import pytest
from _chat_tools import write_slow_cards

from orchestrator import Config, Orchestrator
from orchestrator.events import Answered, PlanMade, StepFinished, StepStarted

SLOW_REQUEST = 'Summarize "the quick brown fox jumps over the lazy dog" then read the summary aloud'


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    folder = write_slow_cards(tmp_path_factory.mktemp("cards"), sleep=1.5)
    config = Config(runs_dir=tmp_path_factory.mktemp("runs"), card_dirs=[folder])
    with Orchestrator(config, checkpoint_path=config.runs_dir / "c.sqlite") as orch:
        yield orch


def test_arun_answers_and_runs_side_by_side_with_other_tasks(slow):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        beat = asyncio.create_task(ticker())
        first, second = await asyncio.gather(
            slow.arun('Summarize "one two three four five six"'),
            slow.arun('Summarize "seven eight nine ten eleven twelve"'),
        )
        beat.cancel()
        return first, second, ticks

    first, second, ticks = asyncio.run(main())
    assert (first.status, second.status) == ("ok", "ok"), (first.message, second.message)
    assert first.steps[0].outputs["summary"].startswith("one two three four")
    assert second.steps[0].outputs["summary"].startswith("seven eight nine ten")
    assert ticks >= 10  # the loop kept running while both runs slept in their tools


def test_astream_yields_typed_events_in_order_then_the_result(slow):
    async def main():
        stream = slow.astream('Summarize "one two three four five six"')
        return [event async for event in stream], stream.result

    events, result = asyncio.run(main())
    kinds = [type(e) for e in events]
    assert kinds[0] is PlanMade and kinds[-1] is Answered
    assert kinds.index(StepStarted) < kinds.index(StepFinished)
    assert result is not None and result.status == "ok"
    assert events[-1].answer == result.answer


def test_cancelling_the_awaiting_task_cancels_the_run_and_waits_for_it(slow):
    async def main():
        task = asyncio.create_task(slow.arun(SLOW_REQUEST, run_id="async-cancelled"))
        await asyncio.sleep(0.5)  # s1 is running (it sleeps 1.5 s)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert waited < 3.0  # the step in flight finished; the second one never started
    stored = slow.show("async-cancelled")  # stopped before its second step, resumable
    assert stored.status == "unfinished"
    s1, s2 = stored.steps
    assert (s1.status, s2.status) == ("done", "waiting")
    resumed = slow.resume("async-cancelled")
    assert resumed.status == "ok", resumed.message


def test_leaving_a_stream_early_cancels_its_run(slow):
    async def main():
        async with slow.astream(SLOW_REQUEST, run_id="stream-left") as stream:
            async for event in stream:
                if isinstance(event, StepStarted):
                    break
        return stream.result

    result = asyncio.run(main())
    assert result is not None and result.status == "cancelled"
    assert slow.show("stream-left").status == "unfinished"


def test_a_stream_that_ends_before_its_end_is_queued_still_has_its_result():
    from orchestrator.pipeline.aio import EventStream

    class Quick:  # a run that emits one event and returns at once (no models needed)
        def run(self, prompt, cancel, on_event, **options):
            on_event(f"planned {prompt}")
            return f"result of {prompt}"

    async def drain(k: int) -> tuple[list[str], str | None]:
        stream = EventStream(Quick(), f"request {k}", {})
        return [e async for e in stream], stream.result

    async def many() -> list[tuple[list[str], str | None]]:
        return [await drain(k) for k in range(200)]

    # The run's future is often done before its end marker reaches the queue: the result
    # must be there all the same, every time.
    for k, (events, result) in enumerate(asyncio.run(many())):
        assert events == [f"planned request {k}"] and result == f"result of request {k}"
