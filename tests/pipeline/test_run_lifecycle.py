"""A run's life in the store: cancel, resume, reuse of ids, bad prompts, configs and folders.

Real orchestrator runs on small python cards written into tmp folders (run by the worker pool),
with a scripted planner so the plan is fixed.
"""

from __future__ import annotations

import os
import sys
import threading
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator import Budget, Config, Orchestrator, Zoo
from orchestrator.errors import ConfigError, UserError
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.pipeline.orchestrator import RunResult
from orchestrator.pipeline.store import carried_spend, with_pending
from orchestrator.plan import Plan, Subtask, TextArg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _run_tools import calls, write_cards  # noqa: E402

STORY = "The storm hit the coast at dawn. Thousands lost power."


class TwoSteps:
    """A fixed plan: s1 summarises, s2 names a language; independent, so they run together."""

    name = "two-steps"

    def plan(self, request, zoo, *, files=()):
        return Plan(
            request=request,
            planner=self.name,
            subtasks=[
                Subtask(
                    id="s1",
                    task="summarization",
                    instruction="summarise the story",
                    args={"text": TextArg(value=STORY)},
                ),
                Subtask(
                    id="s2",
                    task="text-classification",
                    instruction="which language",
                    args={"text": TextArg(value="Guten Morgen")},
                ),
            ],
        )


# The test cards' permissions (the shared folder they log into), approved as a user would.
APPROVED = {"sum-steady": True, "lang-quick": True}


def _orchestrator(tmp_path: Path, cards: Path, **config: object) -> Orchestrator:
    return Orchestrator(
        Config(runs_dir=tmp_path / "runs", card_dirs=[cards], approve=APPROVED, **config),
        zoo=Zoo.load([cards], builtin=False),
        planner=TwoSteps(),
        checkpoint_path=tmp_path / "store" / "runs.sqlite",
    )


def _cancelled_after_s2(tmp_path: Path, run_id: str) -> tuple[Path, Path, RunResult]:
    """Run the two steps and cancel once s2 is done, as Ctrl-C would: s1 is still running (and
    then fails). Returns the shared folder, the cards folder and the result."""
    shared = tmp_path / "shared"
    cards = write_cards(
        tmp_path / "cards", shared, fail_until=shared / "lang-done", ok_flag=shared / "ok"
    )
    cancel = threading.Event()

    def on_event(event):
        if event["type"] == "step_finished" and event["step"] == "s2":
            cancel.set()

    with _orchestrator(tmp_path, cards) as orch:
        result = orch.run("two steps", on_event=on_event, cancel=cancel, run_id=run_id)
    return shared, cards, result


def test_cancel_keeps_finished_steps_counts_spend_once_and_resumes(tmp_path):
    shared, cards, result = _cancelled_after_s2(tmp_path, "cx")
    with _orchestrator(tmp_path, cards) as orch:
        assert result.status == "cancelled"
        s1, s2 = result.steps
        assert s2.status == "done" and s2.outputs == {"label": "German"}
        assert s1.status != "done" and s1.outputs is None
        assert "finished: s2" in result.message and "runs resume cx" in result.message
        assert result.answer.startswith("Language: German.")

        # s1's call failed after the cancel: its step is not recorded (it runs again), but the
        # call was made, so it counts once, as does s2's; the store says what the result said.
        [row] = orch.runs()
        assert row["status"] == "unfinished"
        assert row["spent"]["calls"] == 2 == result.spent["calls"]
        assert Decimal(row["spent"]["usd"]) == Decimal("0.003") == Decimal(result.spent["usd"])
        shown = orch.show("cx")
        assert shown.status == "unfinished"
        assert shown.steps[1].status == "done" and shown.steps[1].outputs == {"label": "German"}
        assert shown.spent["calls"] == 2

    # Resuming without the summariser's card says which card is missing and how to add it.
    only_label = Zoo.from_cards(
        e.card for e in Zoo.load([cards], builtin=False) if "lang" in e.card.name
    )
    with Orchestrator(
        Config(runs_dir=tmp_path / "runs", approve=APPROVED),
        zoo=only_label,
        planner=TwoSteps(),
        checkpoint_path=tmp_path / "store" / "runs.sqlite",
    ) as orch:
        with pytest.raises(UserError, match=r"sum-steady.*--cards DIR"):
            orch.resume("cx")

    (shared / "ok").touch()
    with _orchestrator(tmp_path, cards) as orch:
        resumed = orch.resume("cx")
        assert resumed.status == "ok", resumed.message
        assert resumed.answer == (
            f"Summary of '{STORY}': The storm hit the coast at dawn. "
            "Language of 'Guten Morgen': German."
        )
        assert resumed.spent["calls"] == 3  # both carried over once, s1 run once more
        assert Decimal(resumed.spent["usd"]) == Decimal("0.004")
        assert orch.runs()[0]["spent"]["calls"] == 3
        assert orch.runs()[0]["status"] == "ok"
    log = calls(shared)
    assert log.count("lang-quick done") == 1  # the finished step did not run again
    assert log.count("sum-steady start") == 2 and log.count("sum-steady done") == 1


def test_a_call_stopped_by_a_cancel_counts_against_the_resumed_runs_limits(tmp_path):
    shared, cards, result = _cancelled_after_s2(tmp_path, "cap")
    assert result.spent["calls"] == 2
    (shared / "ok").touch()
    with _orchestrator(tmp_path, cards) as orch:
        # Two calls were made, s1's stopped one among them: a limit of 2 leaves none for s1.
        capped = orch.resume("cap", budget=Budget(calls=2))
        assert capped.status == "budget_exhausted", capped.message
        assert "calls" in capped.message and capped.spent["calls"] == 2
    assert calls(shared).count("sum-steady start") == 1  # s1 was not called again


def test_pending_writes_already_in_the_values_are_counted_once():
    attempt = {"step": "s2", "seq": 1, "usd": "0.002", "seconds": 0.1, "calls": 1, "tokens": 0}
    task = SimpleNamespace(result={"attempts": [attempt]})
    live = SimpleNamespace(values={"attempts": [attempt]}, tasks=(task,))
    assert carried_spend(live)["calls"] == 1
    assert with_pending(live)["attempts"] == [attempt]
    stored = SimpleNamespace(values={"attempts": []}, tasks=(task,))  # not yet in the values
    assert carried_spend(stored)["calls"] == 1


def test_a_prompt_that_is_not_a_string_is_a_type_error_and_nothing_is_stored(tmp_path):
    cards = write_cards(tmp_path / "cards", tmp_path / "shared")
    with _orchestrator(tmp_path, cards) as orch:
        for bad in (None, 123, b"bytes"):
            with pytest.raises(TypeError, match="prompt must be a string"):
                orch.run(bad)  # type: ignore[arg-type]
        assert orch.runs() == []


def test_a_run_id_that_exists_is_refused(tmp_path):
    cards = write_cards(tmp_path / "cards", tmp_path / "shared")
    with _orchestrator(tmp_path, cards) as orch:
        first = orch.run("first question", run_id="same")
        assert first.status == "ok", first.message
        with pytest.raises(UserError, match=r"run same already exists.*resume\('same'\)"):
            orch.run("second question", run_id="same")
        shown = orch.show("same")
        assert shown.request == "first question" and shown.answer == first.answer
        assert len(orch.runs()) == 1


def test_a_too_long_prompt_is_rejected_without_echoing_it(tmp_path):
    cards = write_cards(tmp_path / "cards", tmp_path / "shared")
    with _orchestrator(tmp_path, cards) as orch:
        result = orch.run("x" * 25_000)
        assert result.status == "rejected"
        assert "25,000 characters" in result.message and "20,000" in result.message
        assert "max_prompt_chars" in result.message
        assert len(result.message) < 600 and len(result.request) < 300
        assert orch.runs() == []  # nothing stored
    with _orchestrator(tmp_path, cards, max_prompt_chars=10) as orch:
        assert orch.run("eleven char").status == "rejected"
        assert orch.run("ten chars!").status == "ok"


def test_an_attached_folder_or_missing_file_is_rejected_and_not_stored(tmp_path):
    cards = write_cards(tmp_path / "cards", tmp_path / "shared")
    folder = tmp_path / "photos"
    folder.mkdir()
    with _orchestrator(tmp_path, cards) as orch:
        result = orch.run("Describe the photos", files=[folder])
        assert result.status == "rejected" and "is a folder" in result.message
        result = orch.run("Describe the photo", files=[folder / "gone.png"])
        assert result.status == "rejected" and "gone.png does not exist" in result.message
        (folder / "report.pdf").write_bytes(b"%PDF-1.4")
        result = orch.run("Summarize the report", files=[folder / "report.pdf"])
        assert result.status == "rejected"
        assert "report.pdf is not a file type any step reads" in result.message
        assert "text: txt, md" in result.message  # what can be attached instead
        (folder / "fake.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        result = orch.run("Transcribe this", files=[folder / "fake.wav"])
        assert result.status == "rejected"
        assert "fake.wav is named as audio but its content is a PNG image" in result.message
        (folder / "noise.png").write_bytes(bytes(range(256)))
        result = orch.run("Read this", files=[folder / "noise.png"])
        assert result.status == "rejected" and "not a PNG file" in result.message
        (folder / "big.txt").write_text("word " * 300_000)
        result = orch.run("Summarize this", files=[folder / "big.txt"])
        assert result.status == "rejected" and "split it" in result.message
        assert orch.runs() == []


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"planner": "gpt5"}, r"unknown planner 'gpt5'.*known planners: auto, embedded, llm"),
        ({"planner": "embeded"}, r"did you mean 'embedded'"),
        ({"router": "nonsense"}, r"unknown router policy 'nonsense'.*default, learned, llm"),
        ({"router": "defualt"}, r"did you mean 'default'"),
        ({"router_options": {"cost_weigth": 2}}, r"did you mean 'cost_weight'.*accepted: .*margin"),
        (
            {"router_options": {"cost_weight": "high"}},
            r"cost_weight .* must be a number, got 'high'",
        ),
        ({"router_options": {"verify": 1}}, r"verify .* must be true or false"),
    ],
)
def test_bad_planner_or_router_config_is_refused_when_built(update, expected):
    with pytest.raises(ConfigError, match=expected):
        Orchestrator(Config(**update), zoo=Zoo(), executor=InProcessExecutor(), durable=False)


def test_router_options_are_converted_and_used():
    orch = Orchestrator(
        Config(router_options={"cost_weight": 2, "margin": 0}),
        zoo=Zoo(),
        executor=InProcessExecutor(),
        durable=False,
    )
    assert orch.policy.cost_weight == 2.0 and isinstance(orch.policy.cost_weight, float)
    assert orch.policy.margin == 0.0


def test_the_environment_planner_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_PLANNER", "bogus")
    with pytest.raises(ConfigError, match=r"\$ORCHESTRATOR_PLANNER: unknown planner 'bogus'"):
        Orchestrator(Config.load(), zoo=Zoo(), executor=InProcessExecutor(), durable=False)


def test_output_folders_that_cannot_be_made_are_user_errors(tmp_path):
    cards = write_cards(tmp_path / "cards", tmp_path / "shared")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with _orchestrator(tmp_path, cards) as orch:
        with pytest.raises(UserError, match=r"afile.* is a file; pass --out a folder"):
            orch.run("q", out_dir=afile)
        with pytest.raises(UserError, match=r"afile/sub.*is a file"):
            orch.run("q", out_dir=afile / "sub")
        if os.geteuid() != 0:  # root may write anywhere
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            with pytest.raises(UserError, match="cannot write to the output folder"):
                orch.run("q", out_dir=locked)
        with pytest.raises(UserError, match=r"/proc/nope"):
            orch.run("q", out_dir="/proc/nope")
        assert orch.runs() == []
    with pytest.raises(UserError, match=r"cannot open the run store .*afile.*runs_dir"):
        Orchestrator(Config(runs_dir=afile), zoo=Zoo(), executor=InProcessExecutor())


def test_a_run_in_progress_cannot_be_resumed_or_rerun_elsewhere(tmp_path):
    shared = tmp_path / "shared"
    cards = write_cards(tmp_path / "cards", shared, first_sleep=3)
    outcome = {}
    with _orchestrator(tmp_path, cards) as orch:
        worker = threading.Thread(
            target=lambda: outcome.setdefault("r", orch.run("slow", run_id="busy"))
        )
        worker.start()
        try:
            deadline = 60
            while "sum-steady start" not in calls(shared) and deadline > 0:
                threading.Event().wait(0.05)
                deadline -= 0.05
            with _orchestrator(tmp_path, cards) as other:
                with pytest.raises(
                    UserError, match=rf"run busy is in progress .*pid {os.getpid()}"
                ):
                    other.resume("busy")
                with pytest.raises(UserError, match="in progress"):
                    other.run("again", run_id="busy")
        finally:
            worker.join(60)
        assert outcome["r"].status == "ok"
        assert orch.resume("busy").status == "ok"  # the lock went with the run
    assert calls(shared).count("sum-steady start") == 1


INTERRUPTED = """
import signal
import sys
from pathlib import Path
# A shell that started the suite in the background made its children ignore SIGINT: undo it.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = {tests!r}  # this module's folder, and the helpers' beside conftest.py
from test_run_lifecycle import APPROVED, TwoSteps
from orchestrator import Config, Orchestrator, Zoo

cards = Path({cards!r})
with Orchestrator(Config(runs_dir=Path({runs!r}), card_dirs=[cards], approve=APPROVED),
                  zoo=Zoo.load([cards], builtin=False), planner=TwoSteps(),
                  checkpoint_path={db!r}) as orch:
    orch.run("two steps", run_id="ki")
"""


def test_a_run_interrupted_by_keyboard_interrupt_is_unfinished_and_counted_once(tmp_path):
    """A plain KeyboardInterrupt (no cancel event) mid-round: the store must not call it done."""
    import signal
    import subprocess
    import time

    shared = tmp_path / "shared"
    # The summary's first call blocks until the test releases it (after the interrupt), so the
    # interrupt always lands mid-round however slow the machine is; then it succeeds.
    release = shared / "release"
    cards = write_cards(tmp_path / "cards", shared, fail_until=release, ok_flag=shared / "ok")
    (shared / "ok").touch()
    db = tmp_path / "store" / "runs.sqlite"
    script = INTERRUPTED.format(
        tests=[str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])],
        cards=str(cards),
        runs=str(tmp_path / "runs"),
        db=str(db),
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not {"sum-steady start", "lang-quick done"} <= set(calls(shared)):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended too early"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert "sum-steady done" not in calls(shared)
    release.touch()  # LangGraph lets the running step finish before the interrupt goes on
    _, stderr = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in stderr
    done_before = sum(1 for line in calls(shared) if line.endswith(" done"))

    with _orchestrator(tmp_path, cards) as orch:
        [row] = orch.runs()
        assert row["status"] == "unfinished"  # not "ok" with an empty answer
        assert row["spent"]["calls"] == done_before  # each settled call once
        shown = orch.show("ki")
        assert shown.status == "unfinished" and shown.answer == ""
        assert {s.step for s in shown.steps if s.status == "done"} >= {"s2"}
        resumed = orch.resume("ki")
        assert resumed.status == "ok", resumed.message
        assert resumed.answer == (
            f"Summary of '{STORY}': The storm hit the coast at dawn. "
            "Language of 'Guten Morgen': German."
        )
    log = calls(shared)
    assert log.count("lang-quick done") == 1
    assert resumed.spent["calls"] == sum(1 for line in log if line.endswith(" done"))


def test_a_run_the_budget_stopped_goes_on_under_a_bigger_budget(tmp_path):
    shared = tmp_path / "shared"
    cards = write_cards(tmp_path / "cards", shared)
    with _orchestrator(tmp_path, cards) as orch:
        stopped = orch.run("two steps", budget=Budget(calls=1))
        assert stopped.status == "budget_exhausted", stopped.message
        done = [s.step for s in stopped.steps if s.status == "done"]
        assert len(done) == 1 and "--max-calls" in stopped.message
        # Without a new budget nothing changes; with one, only the stopped step runs.
        assert orch.resume(stopped.run_id).status == "budget_exhausted"
        before = list(calls(shared))
        resumed = orch.resume(stopped.run_id, budget=Budget(calls=5))
        assert resumed.status == "ok", resumed.message
        assert {s.step: s.status for s in resumed.steps} == {"s1": "done", "s2": "done"}
        card_of = {"s1": "sum-steady", "s2": "lang-quick"}
        (other,) = set(card_of) - set(done)
        new_calls = calls(shared)[len(before) :]
        assert any(card_of[other] in line for line in new_calls), new_calls
        assert not any(card_of[done[0]] in line for line in new_calls), new_calls
        assert resumed.spent["calls"] == 2  # the finished step was not run again
        assert "German" in resumed.answer and "Summary" in resumed.answer
        assert orch.show(stopped.run_id).status == "ok"
