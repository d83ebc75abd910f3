"""Capability profiles: run a card's model on the aptitude test of its task type.

The tests ship with the project (``orchestrator/probes/<task>.yaml``): each probe is an
instruction, an input made here (a literal text, text rendered into an image with PIL, a sample
photo from scikit-image, or speech synthesized by the TTS card) and a check of the answer that
gives a score in 0..1. The card's model runs through an :class:`~orchestrator.execute.Executor`
(by default sandboxed worker processes, as in a run, with the card's timeouts): a probe whose
call fails, crashes or times out scores 0 and records why; after two calls in a row that lost
the worker (or a model that does not load) the remaining probes are not run.

The result is written next to the card as ``<name>.profile.json`` with
the per-probe scores and seconds, the median latency and the cost per call, and the digest of
the card's content: a changed card no longer matches its profile and is profiled again. The zoo
attaches a matching profile to its card when it loads (:func:`attach_profile`).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.backends import CallContext
from orchestrator.cards import CapabilityProfile, ProbeResult, ToolCard
from orchestrator.errors import ToolFailed, UserError

if TYPE_CHECKING:
    from orchestrator.execute import CallOutcome, Executor
    from orchestrator.zoo import Zoo

__all__ = [
    "PROBES_DIR",
    "Probe",
    "attach_profile",
    "card_digest",
    "load_probes",
    "profile_card",
    "profile_path",
    "read_profile",
    "write_profile",
]

PROBES_DIR = Path(__file__).parent / "probes"
SPEAKER_CARD = "piper-joe-en"
LISTENER_CARD = "whisper-tiny-en"
MAX_PROFILE_BYTES = 4 * 2**20  # a profile is a small JSON file beside its card: read no more


def card_digest(card: ToolCard) -> str:
    """A digest of the card's content (its profile excluded): changes when the card changes.

    Fields left at their defaults are left out, so a new optional card field added to the schema
    does not make every profile stale.
    """
    body = card.model_dump_json(exclude={"profile"}, exclude_defaults=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def profile_path(card_path: Path) -> Path:
    """``tool_cards/x.yaml`` -> ``tool_cards/x.profile.json``."""
    return card_path.with_name(card_path.stem + ".profile.json")


def read_profile(card_path: Path) -> dict[str, Any] | None:
    """The profile file next to a card, or None when there is none."""
    path = profile_path(card_path)
    if not path.is_file():
        return None
    with path.open("rb") as file:
        text = file.read(MAX_PROFILE_BYTES + 1)
    if len(text) > MAX_PROFILE_BYTES:
        raise UserError(
            f"{path}: larger than {MAX_PROFILE_BYTES // 2**20} MB, too large for a profile; "
            "delete it and profile again"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}); delete it and profile again") from exc
    return data if isinstance(data, dict) else None


def attach_profile(card: ToolCard, card_path: Path | None) -> ToolCard:
    """The card with the profile next to it, if that profile was made from this exact card."""
    if card_path is None or card.profile is not None:
        return card
    data = read_profile(card_path)
    if not data or data.get("card_digest") != card_digest(card):
        return card  # no profile, or a stale one: the card changed since it was profiled
    profile = CapabilityProfile(
        card_digest=data["card_digest"],
        probes=[ProbeResult(**p) for p in data.get("probes", [])],
        latency_s=data.get("latency_s"),
        usd_per_call=data.get("usd_per_call"),
    )
    return card.model_copy(update={"profile": profile})


@dataclass(frozen=True)
class Probe:
    """One item of an aptitude test."""

    instruction: str
    input: dict[str, Any]
    expect: dict[str, Any]


def load_probes(task: str, folder: Path = PROBES_DIR) -> list[Probe]:
    """The aptitude test of a task type; a task without one raises UserError."""
    path = folder / f"{task}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise UserError(f"no aptitude test for task '{task}'; tests exist for: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Probe(p["instruction"], p["input"], p["expect"]) for p in data["probes"]]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_recall(expected: str, got: str) -> float:
    """Share of the expected words found in ``got`` (order ignored)."""
    want = _words(expected)
    have = set(_words(got))
    return sum(w in have for w in want) / len(want) if want else 0.0


@dataclass
class _Workbench:
    """The executor, the helper cards and a scratch folder shared by one profiling run."""

    scratch: Path
    executor: Executor
    helpers: Zoo | None = None
    timeout_s: float | None = None

    def helper(self, name: str) -> ToolCard:
        """A built-in card the test needs besides the profiled one (the TTS, the listener)."""
        from orchestrator.zoo import Zoo

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

    path = scratch / f"sample-{name}.png"
    if not path.exists():
        Image.fromarray(getattr(skimage.data, name)()).save(path)
    return str(path)


def _make_input(probe: Probe, card: ToolCard, bench: _Workbench) -> dict[str, Any]:
    """The card's inputs for a probe, keyed by the card's input names."""
    spec = probe.input
    if "text" in spec:
        value, io_type = spec["text"], "text"
    elif "image_text" in spec:
        value, io_type = _render_text(spec["image_text"], bench.scratch), "image"
    elif "image_sample" in spec:
        value, io_type = _sample_image(spec["image_sample"], bench.scratch), "image"
    elif "speech" in spec:
        spoken = bench.call(bench.helper(SPEAKER_CARD), {"text": spec["speech"]}).outputs
        value, io_type = spoken["audio"], "audio"
    else:
        raise UserError(f"probe '{probe.instruction}': unknown input {sorted(spec)}")
    target = next((io.name for io in card.inputs if io.type == io_type and not io.optional), None)
    if target is None:
        raise UserError(f"card {card.name} has no {io_type} input for probe '{probe.instruction}'")
    return {target: value}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 0.0


def _count(outputs: dict[str, Any]) -> int:
    lists = [v for v in outputs.values() if isinstance(v, list)]
    return len(lists[0]) if lists else 0


def _check(probe: Probe, card: ToolCard, outputs: dict[str, Any], bench: _Workbench) -> float:
    """The probe's score in 0..1 for the tool's outputs."""
    expect = probe.expect
    primary = outputs.get(card.primary_output().name)
    if "contains_any" in expect:
        text = _as_text(primary).lower()
        return 1.0 if any(str(w).lower() in text for w in expect["contains_any"]) else 0.0
    if "word_recall" in expect:
        return word_recall(expect["word_recall"], _as_text(primary))
    if "speech_recall" in expect:
        heard = bench.call(bench.helper(LISTENER_CARD), {"audio": primary}).outputs
        return word_recall(expect["speech_recall"], _as_text(heard.get("text", "")))
    if "count_at_least" in expect:
        return 1.0 if _count(outputs) >= int(expect["count_at_least"]) else 0.0
    if "count_equals" in expect:
        return 1.0 if _count(outputs) == int(expect["count_equals"]) else 0.0
    if "closer" in expect:
        name, out = card.inputs[0].name, card.primary_output().name
        similar = bench.call(card, {name: expect["closer"]["similar"]}).outputs[out]
        different = bench.call(card, {name: expect["closer"]["different"]}).outputs[out]
        return 1.0 if _cosine(primary, similar) > _cosine(primary, different) else 0.0
    if "is_image" in expect:
        from PIL import Image

        try:
            with Image.open(str(primary)) as image:
                return 1.0 if image.size[0] > 0 else 0.0
        except (OSError, ValueError):
            return 0.0
    raise UserError(f"probe '{probe.instruction}': unknown check {sorted(expect)}")


_LOST_IN_A_ROW = 2  # calls in a row that lost the worker before the test is given up


@dataclass
class _Tally:
    """What the probes measured so far, and why the rest are skipped (if they are)."""

    results: list[dict[str, Any]] = field(default_factory=list)
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


def _run_probe(probe: Probe, card: ToolCard, bench: _Workbench, tally: _Tally) -> str | None:
    """Run one probe and add its row; return why it failed (None when it ran)."""
    started = time.perf_counter()
    try:
        inputs = _make_input(probe, card, bench)
        started = time.perf_counter()
        outcome = bench.call(card, inputs)
    except ToolFailed as exc:
        tally.add(probe, 0.0, time.perf_counter() - started, str(exc))
        if exc.card == card.name and not bench.executor.is_warm(card):
            tally.lost_in_a_row += 1
            if exc.reason.startswith("failed to load") or tally.lost_in_a_row >= _LOST_IN_A_ROW:
                tally.given_up = f"not run: the tool failed before ({exc.reason})"
        return str(exc)
    tally.lost_in_a_row = 0
    tally.load_s = max(tally.load_s, outcome.load_seconds)
    try:
        score, error = _check(probe, card, outcome.outputs, bench), None
    except ToolFailed as exc:
        score, error = 0.0, str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        score, error = 0.0, f"the output could not be checked: {type(exc).__name__}: {exc}"
    tally.add(probe, score, outcome.seconds, error)
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
    from orchestrator.execute import WorkerPoolExecutor

    probes = probes if probes is not None else load_probes(card.task)
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
    return _record(card, tally)


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


def write_profile(card_path: Path, record: dict[str, Any]) -> Path:
    """Write the profile next to its card; return the file written."""
    path = profile_path(card_path)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path
