"""Profiling: run a card's model on the aptitude test of its task type, through an executor.

Each probe of the test (:mod:`orchestrator.cards.probes.aptitude`) is an instruction and cases:
an input made here (a literal text, text rendered into an image with PIL, a sample photo from
scikit-image, or speech synthesized by the TTS card) and the reference the answer is checked
against (:mod:`orchestrator.cards.probes.checks`). The card's model runs through an
:class:`~orchestrator.execution.pool.Executor` (by default sandboxed worker processes, as in a
run, with the card's timeouts): a probe whose call fails, crashes or times out scores 0 and
records why; after two calls in a row that lost the worker (or a model that does not load) the
remaining probes are not run. The record :func:`profile_card` returns is what
:func:`orchestrator.cards.profile.write_profile` writes beside the card.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cards import ToolCard, card_digest
from orchestrator.cards.backend import CallContext
from orchestrator.cards.probes.aptitude import INPUT_KINDS, Case, Probe, probes_digest, probes_for
from orchestrator.cards.probes.checks import (
    DISCRETE,
    as_text,
    as_vector,
    chance_corrected,
    pair_ranking,
    score_case,
)
from orchestrator.errors import ToolFailed, UserError

if TYPE_CHECKING:
    from orchestrator.cards.zoo import Zoo
    from orchestrator.execution.pool import CallOutcome, Executor

__all__ = ["LISTENER_CARD", "SPEAKER_CARD", "profile_card"]

SPEAKER_CARD = "piper-joe-en"
LISTENER_CARD = "whisper-tiny-en"


@dataclass
class _Workbench:
    """The executor, the helper cards and a scratch folder shared by one profiling run."""

    scratch: Path
    executor: Executor
    helpers: Zoo | None = None
    timeout_s: float | None = None
    speech: dict[str, str] = field(default_factory=dict)

    def helper(self, name: str) -> ToolCard:
        """A built-in card the test needs besides the profiled one (the TTS, the listener)."""
        from orchestrator.cards.zoo import Zoo

        if self.helpers is None:
            self.helpers = Zoo.load()
        try:
            entry = self.helpers.get(name)
        except KeyError as exc:
            raise UserError(f"the aptitude test needs card {name}, which is not loaded") from exc
        if not entry.available:
            raise UserError(f"the aptitude test needs card {name}: {entry.unavailable}")
        return entry.card

    def call(self, card: ToolCard, inputs: dict[str, Any]) -> CallOutcome:
        """One sandboxed call (by default with the card's timeouts); failures raise ToolFailed."""
        ctx = CallContext(scratch=self.scratch, max_tokens=64, timeout_s=self.timeout_s)
        return self.executor.call(card, inputs, ctx)

    def spoken(self, text: str) -> str:
        """``text`` read aloud by the speaker card (each text once per profiling run)."""
        if text not in self.speech:
            speaker = self.helper(SPEAKER_CARD)
            self.speech[text] = self.call(speaker, {"text": text}).outputs["audio"]
        return self.speech[text]

    def heard(self, audio: Any) -> str:
        """The listener card's transcript of ``audio`` (an answer that is not audio: nothing)."""
        if not isinstance(audio, str) or not Path(audio).is_file():
            return ""
        try:
            return as_text(self.call(self.helper(LISTENER_CARD), {"audio": audio}).outputs["text"])
        except ToolFailed as exc:
            if exc.card == LISTENER_CARD and exc.reason.startswith("failed to load"):
                raise
            return ""  # the listener could not make sense of it: not speech

    def seen(self, image: Any) -> str:
        """The zoo's image classifier's label for ``image`` (an answer that is no image: "")."""
        if not isinstance(image, str) or not Path(image).is_file():
            return ""
        classifier = self.classifier()
        try:
            outputs = self.call(classifier, {classifier.inputs[0].name: image}).outputs
        except ToolFailed as exc:
            if exc.card == classifier.name and exc.reason.startswith("failed to load"):
                raise
            return ""  # not an image it can read
        return as_text(outputs[classifier.primary_output().name])

    def classifier(self) -> ToolCard:
        """The zoo's image classifier (the built-in one unless the zoo has another)."""
        from orchestrator.cards.zoo import Zoo

        if self.helpers is None:
            self.helpers = Zoo.load()
        for entry in self.helpers.for_task("image-classification"):
            if entry.available:
                return entry.card
        raise UserError("the text-to-image test needs an available image-classification card")


def _render_text(text: str, scratch: Path) -> str:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (64 + 24 * len(text), 120), "white")
    draw = ImageDraw.Draw(image)
    try:
        font: Any = ImageFont.load_default(size=40)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((32, 36), text, fill="black", font=font)
    path = scratch / f"text-{hashlib.md5(text.encode()).hexdigest()[:8]}.png"
    image.save(path)
    return str(path)


def _sample_image(name: str, scratch: Path) -> str:
    import skimage.data
    from PIL import Image

    # Named by a digest: a file name that says what the photo shows would give it away.
    path = scratch / f"sample-{hashlib.md5(name.encode()).hexdigest()[:8]}.png"
    if not path.exists():
        Image.fromarray(getattr(skimage.data, name)()).save(path)
    return str(path)


def _make_input(spec: dict[str, Any], card: ToolCard, bench: _Workbench) -> dict[str, Any]:
    """The card's inputs for one probe case, keyed by the card's input names."""
    if "text" in spec:
        value, io_type = spec["text"], "text"
    elif "image_text" in spec:
        value, io_type = _render_text(spec["image_text"], bench.scratch), "image"
    elif "image_sample" in spec:
        value, io_type = _sample_image(spec["image_sample"], bench.scratch), "image"
    elif "speech" in spec:
        value, io_type = bench.spoken(spec["speech"]), "audio"
    else:
        raise UserError(f"unknown probe input {sorted(spec)}; use one of {', '.join(INPUT_KINDS)}")
    target = next((io.name for io in card.inputs if io.type == io_type and not io.optional), None)
    if target is None:
        raise UserError(f"card {card.name} has no {io_type} input for this probe")
    return {target: value}


def _judged(cases: list[Case], i: int, answer: Any, bench: _Workbench) -> float:
    """Case ``i``'s score for the tool's primary output ``answer``.

    A graded score is contrasted with the probe's other cases: what the answer would score
    against their references is taken off (an answer as close to another case's reference as
    to its own says nothing about its input), so a constant or random answer scores about 0.
    """
    case = cases[i]
    if case.kind == "speech":
        answer = bench.heard(answer)
    elif case.kind == "image_of":
        answer = bench.seen(answer)

    source, others = str(case.input.get("text", "")), _others(cases, i)

    def against(other: Case) -> float:
        return score_case(case.kind, other.reference, answer, source=source, others=others)

    own = against(case)
    if case.kind in DISCRETE:
        return own
    decoys = [against(c) for j, c in enumerate(cases) if j != i and c.kind == case.kind]
    return max(0.0, own - max(decoys, default=0.0))


_LOST_IN_A_ROW = 2  # calls in a row that lost the worker before the test is given up


@dataclass
class _Tally:
    """What the probes measured so far, and why the rest are skipped (if they are)."""

    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # each call's seconds
    load_s: float = 0.0
    lost_in_a_row: int = 0
    given_up: str | None = None

    def add(self, probe: Probe, score: float, seconds: float, error: str | None) -> None:
        row: dict[str, Any] = {
            "instruction": probe.instruction,
            "score": round(score, 4),
            "seconds": round(seconds, 4),
        }
        if error is not None:
            row["error"] = error
        self.results.append(row)


class _Lost(Exception):
    """A call lost the worker (or the model did not load); the probe scores 0."""


def _answer(card: ToolCard, inputs: dict[str, Any], bench: _Workbench, tally: _Tally) -> Any:
    """The tool's primary output for ``inputs``; a failed call raises _Lost with the reason."""
    started = time.perf_counter()
    try:
        outcome = bench.call(card, inputs)
    except ToolFailed as exc:
        tally.seconds.append(time.perf_counter() - started)
        if exc.card == card.name and not bench.executor.is_warm(card):
            tally.lost_in_a_row += 1
            if exc.reason.startswith("failed to load") or tally.lost_in_a_row >= _LOST_IN_A_ROW:
                tally.given_up = f"not run: the tool failed before ({exc.reason})"
        raise _Lost(str(exc)) from exc
    tally.lost_in_a_row = 0
    tally.load_s = max(tally.load_s, outcome.load_seconds)
    tally.seconds.append(outcome.seconds)
    return outcome.outputs.get(card.primary_output().name)


def _score_pairs(probe: Probe, card: ToolCard, bench: _Workbench, tally: _Tally) -> float:
    name = next(io.name for io in card.inputs if io.type == "text")
    texts = [text for pair in probe.pairs for text in pair]
    return pair_ranking([as_vector(_answer(card, {name: t}, bench, tally)) for t in texts])


def _others(cases: list[Case], i: int) -> list[str]:
    """The reference words of every case but the ``i``-th."""
    words: list[str] = []
    for j, case in enumerate(cases):
        if j != i:
            ref = case.reference
            words += [str(w) for w in (ref if isinstance(ref, list) else [ref])]
    return words


def _score_cases(probe: Probe, card: ToolCard, bench: _Workbench, tally: _Tally) -> float:
    cases = probe.all_cases()
    right: list[float] = []
    for i, case in enumerate(cases):
        try:
            answer = _answer(card, _make_input(case.input, card, bench), bench, tally)
        except _Lost:
            if tally.given_up is not None or len(cases) == 1:
                raise
            right.append(0.0)
            continue
        right.append(_judged(cases, i, answer, bench))
    if cases and cases[0].kind in DISCRETE:
        return chance_corrected(right, [c.reference for c in cases])
    return float(sum(right) / len(right)) if right else 0.0


def _run_probe(probe: Probe, card: ToolCard, bench: _Workbench, tally: _Tally) -> str | None:
    """Run one probe (all its cases) and add its row; return why it failed (None when it ran)."""
    calls_before = len(tally.seconds)
    error: str | None = None
    try:
        if probe.pairs:
            score = _score_pairs(probe, card, bench, tally)
        else:
            score = _score_cases(probe, card, bench, tally)
    except _Lost as exc:
        score, error = 0.0, str(exc)
    except ToolFailed as exc:  # a helper (the speaker, the listener, the classifier) failed
        score, error = 0.0, str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        score, error = 0.0, f"the output could not be checked: {type(exc).__name__}: {exc}"
    spent = tally.seconds[calls_before:]
    seconds = sum(spent) / len(spent) if spent else 0.0
    tally.add(probe, score, seconds, error)
    return error


def profile_card(
    card: ToolCard,
    probes: list[Probe] | None = None,
    *,
    executor: Executor | None = None,
    helpers: Zoo | None = None,
    timeout_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the card's model on its aptitude test; return the profile record (not yet written).

    ``executor`` runs the calls (default: a sandboxed worker pool, closed at the end, that
    imports only installed modules: for a python card whose module lives beside it, pass one
    with that folder on its ``extra_sys_path``, e.g. ``WorkerPoolExecutor.from_config``);
    ``helpers`` is the zoo the test's helper cards come from (default: the built-in cards);
    ``timeout_s`` caps each call (default: the card's own call timeout).
    Each probe row has its score and seconds, and ``error`` when it failed.
    """
    from orchestrator.execution.pool import WorkerPoolExecutor

    probes = probes if probes is not None else probes_for(card)
    digest = probes_digest(probes)
    own = executor is None
    pool: Executor = executor if executor is not None else WorkerPoolExecutor()
    tally = _Tally()
    try:
        with tempfile.TemporaryDirectory(prefix="orchestrator-profile-") as folder:
            bench = _Workbench(Path(folder), pool, helpers, timeout_s)
            for probe in probes:
                if tally.given_up is not None:
                    tally.add(probe, 0.0, 0.0, tally.given_up)
                    error: str | None = tally.given_up
                else:
                    error = _run_probe(probe, card, bench, tally)
                if progress and error is not None:
                    progress(f"  {probe.instruction}: failed ({error})")
                elif progress:
                    row = tally.results[-1]
                    progress(f"  {row['score']:.2f}  {row['seconds']:6.2f}s  {probe.instruction}")
    finally:
        if own:
            pool.close()
    return {**_record(card, tally), "probes_digest": digest}


def _record(card: ToolCard, tally: _Tally) -> dict[str, Any]:
    results = tally.results
    ran = [r["seconds"] for r in results if "error" not in r]
    latency = statistics.median(ran) if ran else 0.0
    usd = card.cost.usd_per_call + card.cost.usd_per_second * Decimal(str(round(latency, 4)))
    return {
        "card": card.name,
        "card_digest": card_digest(card),
        "task": card.task,
        "probes": results,
        "mean_score": round(sum(r["score"] for r in results) / len(results), 4) if results else 0.0,
        "failed": sum("error" in r for r in results),
        "latency_s": round(latency, 4),
        "load_s": round(tally.load_s, 2),
        "usd_per_call": f"{usd.normalize():f}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
