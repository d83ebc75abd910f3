"""Answer: render each step's outputs as text and aggregate them into the final answer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.cards.tasks import task_type
from orchestrator.plan import ComposeArg, FileArg, Plan, RefArg, TextArg

__all__ = ["StepResult", "compose_answer", "render_output", "render_value"]

_MAX_JSON_CHARS = 400
_QUOTE_CHARS = 80
_PROMPT_INPUTS = frozenset({"prompt", "instruction", "query", "question", "description"})


@dataclass(frozen=True)
class StepResult:
    """The accepted outputs of one step and the card that made them."""

    step: str
    instruction: str
    card: ToolCard
    outputs: dict[str, Any]

    @property
    def label(self) -> str:
        return self.card.result_label or task_type(self.card.task).label


def render_value(io_type: str, value: Any) -> str:
    """A short human reading of one value of the given IO type."""
    if io_type == "text":
        return str(value).strip()
    if io_type in ("audio", "image"):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "; ".join(_render_record(v) for v in value[:5])
    if _vector(value) is not None and len(value) > 8:
        return f"a vector of {len(value)} numbers"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_JSON_CHARS else text[: _MAX_JSON_CHARS - 3] + "..."


def _render_record(record: dict[str, Any]) -> str:
    parts = []
    for key, value in record.items():
        if isinstance(value, float):
            value = round(value, 3)
        elif isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} values]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def render_output(result: StepResult) -> str:
    """The reading of a step's primary output (the card's first output)."""
    primary = result.card.primary_output()
    if primary.name not in result.outputs:
        return ""
    return render_value(primary.type, result.outputs[primary.name])


def compose_answer(
    results: Iterable[StepResult], *, spoken: bool = False, plan: Plan | None = None
) -> str:
    """One sentence per step result: 'Transcript: ... Language: French.'.

    ``spoken`` leaves out file paths (for a text that will be read aloud). With the ``plan``,
    the answer is about what the request asked: one sentence per final step saying what it
    worked on ("Language of the text in fr.png ('Le chat noir ...'): French."), and which model
    wrote a generated text; the steps on the way are evidence in the result's steps.
    """
    results = list(results)
    if plan is not None and not spoken:
        return _answer_for(plan, results)
    sentences = []
    for result in results:
        primary = result.card.primary_output()
        if spoken and primary.type in ("audio", "image"):
            continue
        text = render_output(result)
        if primary.type in ("audio", "image"):
            text = Path(text).name
        sentence = f"{result.label}: {text}"
        sentences.append(sentence if sentence.endswith((".", "!", "?")) else sentence + ".")
    return " ".join(sentences)


def _vector(value: Any) -> list[float] | None:
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


def _quote(text: str, limit: int | None = _QUOTE_CHARS) -> str:
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 3].rstrip() + "..."
    return f"'{flat}'"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", "...", "'")) else text + "."


def _answer_for(plan: Plan, results: list[StepResult]) -> str:
    """The answer from the steps the request asked for, each saying what it worked on.

    Those are the final steps (no other step reads them) and the content the request itself
    asked for on the way ("Transcribe a.wav and tell me its sentiment": the transcript too);
    a step the planner added to convert an input (the text read from an image on the way to
    its language) is evidence, kept in the result's steps and quoted where it helps.
    """
    done = {r.step: r for r in results}
    # A step read by another is on the way; one only composed into a text read aloud is not.
    fed = {
        a.step
        for s in plan.subtasks
        if s.id in done
        for a in s.args.values()
        if isinstance(a, RefArg)
    }
    stated = [r for r in results if r.step not in fed or _asked(plan, r)]
    said = {r.step for r in stated}
    sentences = [_final_sentence(plan, done, r, said) for r in stated]
    sentences.extend(_similarities(plan, [r for r in results if r.step not in fed]))
    return " ".join(sentences)


_TRUSTED = 0.5  # a writing card's prior strength below which its answer carries its caveat


def _asked(plan: Plan, result: StepResult) -> bool:
    """A content-making step whose instruction is part of the request (not a bridge)."""
    if not task_type(result.card.task).makes_content or _takes_prompt(result.card):
        return False
    instruction = " ".join(result.instruction.lower().split())
    return bool(instruction) and instruction in " ".join(plan.request.lower().split())


def _takes_prompt(card: ToolCard) -> bool:
    return any(io.name in _PROMPT_INPUTS for io in card.inputs if not io.optional)


def _final_sentence(
    plan: Plan, done: dict[str, StepResult], result: StepResult, said: set[str]
) -> str:
    primary = result.card.primary_output()
    value = render_output(result)
    if primary.type in ("audio", "image"):
        value = Path(value).name
    if _takes_prompt(result.card):
        said_by = f"{result.card.name} answered: {_sentence(value)}"
        card = result.card
        if card.strength < _TRUSTED and card.limitations:  # when unsure, say so
            said_by += f" (Mind: {card.name} is a weak model: {card.limitations[0]}.)"
        return said_by
    records = result.outputs.get(primary.name)
    if primary.type == "json" and isinstance(records, list):
        value = f"{len(records)} found ({value})" if records else "none found"
    if primary.type == "text" and value and result.step in said and result.step in _fed(plan):
        value = _quote(value, limit=None)
    subject = _subject(plan, done, result.step, said=said)
    if subject:
        return _sentence(f"{result.label} of {subject}: {value}")
    return _sentence(f"{result.label}: {value}")


def _fed(plan: Plan) -> set[str]:
    return {d for s in plan.subtasks for d in s.referenced_steps()}


def _subject(
    plan: Plan,
    done: dict[str, StepResult],
    step: str,
    depth: int = 0,
    said: frozenset[str] | set[str] = frozenset(),
) -> str:
    """What a step worked on, in words: 'the text in fr.png ('Le chat ...')', "'I love it'".

    An earlier result the answer states itself is named, not quoted again.
    """
    try:
        subtask = plan.get(step)
    except KeyError:
        return ""
    for arg in subtask.args.values():
        if isinstance(arg, TextArg):
            return _quote(arg.value)
        if isinstance(arg, FileArg):
            return Path(arg.path).name
        if isinstance(arg, ComposeArg):
            return "the answer"
        if isinstance(arg, RefArg) and arg.step in done and depth < 3:
            producer = done[arg.step]
            noun = producer.label.lower()
            if _takes_prompt(producer.card):
                noun = f"text {producer.card.name} wrote"
            if arg.step in said:
                return f"the {noun}"
            inner = _subject(plan, done, arg.step, depth + 1, said)
            text = render_output(producer)
            quoted = f" ({_quote(text)})" if producer.card.primary_output().type == "text" else ""
            if " in " in noun and inner:  # "text in image" of fr.png: the text in fr.png
                return f"the {noun.split(' in ')[0]} in {inner}{quoted}"
            return f"the {noun}{' of ' + inner if inner else ''}{quoted}"
    return ""


def _similarities(plan: Plan, finals: list[StepResult]) -> list[str]:
    """Two or more vectors made by the same card: how close each pair is (cosine)."""
    import math

    vectors = [
        (r, v)
        for r in finals
        if (v := _vector(r.outputs.get(r.card.primary_output().name))) is not None
    ]
    sentences = []
    for i, (a, va) in enumerate(vectors):
        for b, vb in vectors[i + 1 :]:
            if a.card.name != b.card.name or len(va) != len(vb):
                continue
            norm = math.sqrt(sum(x * x for x in va)) * math.sqrt(sum(y * y for y in vb))
            if norm:
                cosine = sum(x * y for x, y in zip(va, vb, strict=True)) / norm
                sentences.append(
                    f"Similarity of {_subject(plan, {}, a.step)} and {_subject(plan, {}, b.step)}"
                    f" (cosine of their {a.card.name} vectors, -1 to 1): {cosine:.2f}."
                )
    return sentences
