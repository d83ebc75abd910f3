"""Aptitude tests: the built-in ones per task, and the probes a card ships beside it.

A test is a YAML file: ``task`` and a list of ``probes``. Each probe has an ``instruction`` and
either ``cases`` (inputs, each with the reference its answer is checked against), one ``input``
and ``expect`` (a single case), or ``pairs`` (texts with similar meaning, for embeddings). The
checks are in :mod:`orchestrator.cards.probes.checks`.

The built-in tests are ``orchestrator/cards/probes/<task>.yaml``. A card may ship its own beside it,
``<card>.probes.yaml`` (same format): they are run after the built-in test of its task, or alone
for a task that has none. :func:`check_probes` finds what makes a probe unusable or gameable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.cards import ToolCard
from orchestrator.cards.probes.checks import DISCRETE, GRADED
from orchestrator.errors import UserError

__all__ = [
    "INPUT_KINDS",
    "PLACEHOLDER",
    "PROBES_DIR",
    "PROBES_SUFFIX",
    "Case",
    "Probe",
    "check_probes",
    "draft_probes",
    "load_probe_file",
    "load_probes",
    "own_probes_path",
    "probes_digest",
    "probes_for",
]

PROBES_DIR = Path(__file__).parent
PROBES_SUFFIX = ".probes.yaml"  # a card's own probes: <card>.probes.yaml beside <card>.yaml
PLACEHOLDER = "REPLACE ME"  # what a drafted probe file says where the user must write
# Probe input kinds and the card input type each fills.
INPUT_KINDS = {"text": "text", "image_text": "image", "image_sample": "image", "speech": "audio"}


@dataclass(frozen=True)
class Case:
    """One input of a probe and the reference its answer is checked against."""

    input: dict[str, Any]
    expect: dict[str, Any]

    @property
    def kind(self) -> str:
        return next(iter(self.expect))

    @property
    def reference(self) -> Any:
        return next(iter(self.expect.values()))


@dataclass(frozen=True)
class Probe:
    """One item of an aptitude test: an instruction and its cases (or embedding pairs)."""

    instruction: str
    input: dict[str, Any] | None = None
    expect: dict[str, Any] | None = None
    cases: tuple[Case, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def all_cases(self) -> list[Case]:
        if self.cases:
            return list(self.cases)
        if self.input is not None and self.expect:
            return [Case(self.input, self.expect)]
        return []


class _CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any]
    expect: dict[str, Any] = Field(min_length=1, max_length=1)


class _ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(min_length=3)
    input: dict[str, Any] | None = None
    expect: dict[str, Any] | None = Field(default=None, min_length=1, max_length=1)
    cases: list[_CaseSpec] = Field(default_factory=list)
    pairs: list[tuple[str, str]] = Field(default_factory=list)


class _ProbeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = None
    probes: list[_ProbeSpec] = Field(min_length=1)


def load_probe_file(path: Path) -> tuple[str | None, list[Probe]]:
    """The task and probes of one test file; a malformed file is a UserError saying what."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = _ProbeFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot be read as YAML ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: {where}: {first['msg']}") from exc
    probes = [
        Probe(
            p.instruction,
            p.input,
            p.expect,
            tuple(Case(c.input, c.expect) for c in p.cases),
            tuple(p.pairs),
        )
        for p in spec.probes
    ]
    return spec.task, probes


def load_probes(task: str, folder: Path = PROBES_DIR) -> list[Probe]:
    """The built-in aptitude test of a task type; a task without one raises UserError."""
    path = folder / f"{task}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise UserError(
            f"no aptitude test for task '{task}'; tests exist for: {known}. A card of another "
            "task ships its own probes beside it (<card>.probes.yaml; see "
            "orchestrator/cards/builtin/README.md)"
        )
    return load_probe_file(path)[1]


def own_probes_path(card_path: Path) -> Path:
    """``orchestrator/cards/builtin/x.yaml`` -> ``orchestrator/cards/builtin/x.probes.yaml``."""
    return card_path.with_name(card_path.stem + PROBES_SUFFIX)


def probes_for(card: ToolCard, card_path: Path | None = None) -> list[Probe]:
    """The probes a card is profiled on: its task's built-in test, then its own (if any)."""
    own: list[Probe] = []
    path = own_probes_path(card_path) if card_path is not None else None
    if path is not None and path.is_file():
        task, own = load_probe_file(path)
        if task is not None and task != card.task:
            raise UserError(f"{path}: its task is '{task}' but the card's is '{card.task}'")
        problems = check_probes(own, card)
        if problems:
            raise UserError(f"{path}: " + "; ".join(problems))
    if (PROBES_DIR / f"{card.task}.yaml").is_file():
        return load_probes(card.task) + own
    if own:
        return own
    return load_probes(card.task)  # raises: no test for this task, and the card ships none


def probes_digest(probes: list[Probe]) -> str:
    """A digest of a test's content: a profile made on other probes is stale."""
    body = json.dumps([repr(p) for p in probes])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _probe_problems(probe: Probe, card: ToolCard | None) -> list[str]:
    name = f"probe '{probe.instruction}'"
    if PLACEHOLDER in repr(probe):
        return [f"{name}: replace every '{PLACEHOLDER}' of the draft with your own text"]
    if probe.pairs:
        return [f"{name}: needs at least two pairs"] if len(probe.pairs) < 2 else []
    cases = probe.all_cases()
    if not cases:
        return [f"{name}: give it cases (or input and expect, or pairs)"]
    problems = []
    for case in cases:
        if case.kind not in (*DISCRETE, *GRADED):
            known = ", ".join((*DISCRETE, *GRADED))
            problems.append(f"{name}: unknown check '{case.kind}'; use one of {known}")
        unknown = set(case.input) - set(INPUT_KINDS)
        if len(case.input) != 1 or unknown:
            problems.append(f"{name}: an input is one of {', '.join(INPUT_KINDS)}")
        elif card is not None:
            io_type = INPUT_KINDS[next(iter(case.input))]
            if not any(io.type == io_type for io in card.inputs):
                problems.append(f"{name}: the card has no {io_type} input")
    discrete = [c for c in cases if c.kind in DISCRETE]
    refs = {json.dumps(c.reference, sort_keys=True, default=str) for c in discrete}
    if discrete and len(refs) < 2:
        problems.append(
            f"{name}: give it two or more cases with different answers, or a tool that always "
            "gives the same answer passes it"
        )
    return problems


def check_probes(probes: list[Probe], card: ToolCard | None = None) -> list[str]:
    """What is wrong with a card's probes (empty: nothing)."""
    return [problem for probe in probes for problem in _probe_problems(probe, card)]


_DRAFT_CHECK = {  # the check a draft uses per output type of the card
    "text": "label",
    "json": "count",
    "audio": "speech",
    "image": "image_of",
}


def draft_probes(card: ToolCard) -> str:
    """A probe file for ``card`` to fill in (``cards new`` writes it beside the card draft)."""
    inputs = {"text": "text", "image": "image_text", "audio": "speech"}
    source = inputs.get(card.inputs[0].type, "text")
    check = _DRAFT_CHECK.get(card.primary_output().type, "label")
    builtin = (PROBES_DIR / f"{card.task}.yaml").is_file()
    why = (
        f"They run after the built-in {card.task} test."
        if builtin
        else f"No built-in test exists for '{card.task}': these probes are the card's whole test."
    )
    lines = [
        f"# Probes of {card.name}, run by `orchestrator profile {card.name}`. {why}",
        "# Give each probe two or more cases with different answers (a tool that always gives",
        "# one answer must not pass). Checks: label, keywords, count, wer, cer, summary,",
        "# translation, speech, image_of (see orchestrator/cards/builtin/README.md).",
        "# `orchestrator cards validate` checks this file.",
        f"task: {card.task}",
        "probes:",
        f"  - instruction: {PLACEHOLDER} (a request this card should serve)",
        "    cases:",
    ]
    for n in (1, 2):
        lines.append(
            f'      - {{input: {{{source}: "{PLACEHOLDER} {n}"}}, '
            f'expect: {{{check}: "{PLACEHOLDER} {n}"}}}}'
        )
    return "\n".join(lines) + "\n"
