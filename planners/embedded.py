"""The embedded planner: no LLM, no network, deterministic.

Over the zoo's cards (``plan``):

1. Split the request into clauses (sentences, commas, "then", "and").
2. Match each clause to the card that fits it best (TF-IDF over the task vocabulary and each
   card's description and tags); a fragment that matches nothing joins the clause before it.
3. Chain the steps by type: an input is filled from a quoted text, from the latest earlier step
   that outputs that type (content-making steps first), from "the answer" (a composition of the
   earlier results), or from a file named in or attached to the request.

Over a tool set by name (``plan_tools``, e.g. a benchmark's tools): see ``planners._toolplan``:
clause matching, votes of similar solved requests, and an order learned from the examples, the
tool graph and where each tool matched in the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator._text import TfidfIndex
from orchestrator.cards import ToolCard
from orchestrator.errors import NoCapableTool, PlanError, UserError
from orchestrator.plan import Arg, ComposeArg, FileArg, Plan, RefArg, Subtask, TextArg
from orchestrator.tasks import task_type
from orchestrator.zoo import Zoo
from planners.toolset import ToolPlan, ToolSet

if TYPE_CHECKING:
    from planners._toolplan import ToolSetModel

__all__ = [
    "EmbeddedPlanner",
    "FILE_TYPES",
    "file_type",
    "mentioned_files",
    "quoted_text",
    "split_clauses",
]

FILE_TYPES = {
    "audio": ("wav", "mp3", "flac", "ogg", "m4a", "opus"),
    "image": ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"),
    "text": ("txt", "md"),  # read as the text input of the step that needs one
}
_EXTENSIONS = "|".join(ext for exts in FILE_TYPES.values() for ext in exts)
_FILE = re.compile(rf"(?<![\w/.~-])([\w~./-]*[\w-]\.(?:{_EXTENSIONS}))\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]|(?<!\w)'([^']+)'(?!\w)")
# A quoted file name may hold spaces: 'Transcribe "my recording.wav"'.
_QUOTED_FILE = re.compile(rf"[\"“']([^\"”'\n]+\.(?:{_EXTENSIONS}))[\"”']", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?;]+(?:\s+|$)")
_JOINERS = re.compile(
    r",\s*|\s+(?:and\s+then|after\s+that|afterwards|finally|then|and|also|plus)\s+", re.IGNORECASE
)
_LEADING_JOINER = re.compile(
    r"^(?:and\s+then|after\s+that|afterwards|finally|then|and|also|plus)\b[\s,]*", re.IGNORECASE
)
_ANSWER_REF = re.compile(
    r"\b(?:the|your|this|that|my)\s+(?:answer|answers|result|results|output|outputs|findings|"
    r"reply|response)\b|\beverything\b|\ball\s+of\s+(?:it|that|this)\b",
    re.IGNORECASE,
)
_UNAVAILABLE_FACTOR = 0.85
_MIN_SIMILARITY = 0.08


def file_type(path: str) -> str | None:
    """'audio', 'image' or 'text' by the file's extension, or None."""
    ext = path.rsplit(".", 1)[-1].lower()
    for io_type, extensions in FILE_TYPES.items():
        if ext in extensions:
            return io_type
    return None


def split_clauses(request: str) -> list[str]:
    """Sentences, then comma / 'then' / 'and' pieces; quotes and file names stay whole."""
    protected, kept = _protect(request)
    clauses: list[str] = []
    for sentence in _SENTENCE.split(protected):
        clauses.extend(_LEADING_JOINER.sub("", p.strip()) for p in _JOINERS.split(sentence))
    return [_restore(c, kept) for c in clauses if c and c.strip(" ,")]


def _protect(text: str) -> tuple[str, list[str]]:
    """Replace quoted texts and file names by placeholders that no splitter matches."""
    kept: list[str] = []

    def hide(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    return _FILE.sub(hide, _QUOTED.sub(hide, text)), kept


def _restore(text: str, kept: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


@dataclass
class _Step:
    subtask: Subtask
    card: ToolCard


@dataclass
class _Chain:
    """What the plan has produced so far, to fill later inputs from."""

    files: list[tuple[str, str]]  # (path, io type), in order of mention
    steps: list[_Step] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # the files a step reads

    def latest(self, io_type: str) -> _Step | None:
        producers = [s for s in self.steps if io_type in s.card.output_types()]
        if io_type == "text":
            producers = [s for s in self.steps if s.card.output_types() & {"text", "json"}]
            content = [s for s in producers if task_type(s.card.task).makes_content]
            producers = content or producers
        return producers[-1] if producers else None

    def file(self, io_type: str, clause: str) -> str | None:
        """The file of ``io_type`` the clause names, else the first one no step reads yet.

        Else the first one: "the first image ... the second image" reads both.
        """
        in_clause = [p for p, t in self.files if t == io_type and p in clause]
        anywhere = [p for p, t in self.files if t == io_type]
        unused = [p for p in anywhere if p not in self.used]
        found = (in_clause or unused or anywhere or [None])[0]
        if found is not None:
            self.used.add(found)
        return found

    def spread(self, notes: list[str]) -> None:
        """Give each file no step reads a step of its own, like the one reading its type.

        When that step feeds later ones, the plan notes that the file was not used.
        """
        for path, kind in self.files:
            if path in self.used:
                continue
            readers = [s for s in self.steps if _reads_file(s.subtask, kind)]
            fed = {d for s in self.steps for d in s.subtask.referenced_steps()}
            twin = next((s for s in readers if s.subtask.id not in fed), None)
            if twin is None:
                notes.append(
                    f"{Path(path).name} was given but no step reads it; ask about it on its own"
                )
                continue
            subtask = twin.subtask.model_copy(
                update={
                    "id": f"s{len(self.steps) + 1}",
                    "args": {**twin.subtask.args, kind: FileArg(path=path)},
                }
            )
            self.steps.append(_Step(subtask, twin.card))
            self.used.add(path)


def _reads_file(subtask: Subtask, kind: str) -> bool:
    return isinstance(subtask.args.get(kind), FileArg)


class EmbeddedPlanner:
    """Plans multi-step requests over the zoo with no LLM."""

    name = "embedded"

    def __init__(self, min_similarity: float = _MIN_SIMILARITY) -> None:
        self.min_similarity = min_similarity
        self._models: dict[int, tuple[ToolSet, object]] = {}

    def plan_tools(self, request: str, tools: ToolSet) -> ToolPlan:
        """Plan ``request`` over a tool set by name: tools in order and their links.

        What it learns from ``tools`` (tool documents, similar solved requests, tool order) is
        built once per tool set and kept while the tool set lives.
        """
        request = request.strip()
        if not request:
            raise UserError("the request is empty: say what you want done")
        return self.prepare_tools(tools).plan(request)

    def prepare_tools(self, tools: ToolSet) -> ToolSetModel:
        """Learn from ``tools`` now (``plan_tools`` does it on first use of a tool set)."""
        from planners._toolplan import ToolSetModel

        cached = self._models.get(id(tools))
        if cached is None or cached[0] is not tools:
            cached = (tools, ToolSetModel(tools))
            self._models = {id(tools): cached}  # one tool set at a time: folds replace each other
        model = cached[1]
        assert isinstance(model, ToolSetModel)
        return model

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """Plan ``request`` over the cards of ``zoo``."""
        request = request.strip()
        if not request:
            raise UserError("the request is empty: say what you want done, e.g. 'Transcribe a.wav'")
        entries = list(zoo)
        if not entries:
            raise NoCapableTool("the zoo has no tool cards; add some to a cards folder")
        index = TfidfIndex(_card_document(e.card) for e in entries)
        matched = self._match_clauses(request, entries, index)
        if not matched:
            tasks = ", ".join(sorted(zoo.tasks()))
            raise NoCapableTool(
                f"no tool in the zoo matches this request; the zoo can do: {tasks}. "
                "Rephrase the request, or add a tool card for what you need."
            )
        chain = _Chain(files=_mentioned_files(request, files))
        notes: list[str] = []
        for clause, card in matched:
            subtask = self._subtask(f"s{len(chain.steps) + 1}", clause, card, chain)
            if any(_same_work(subtask, s.subtask) for s in chain.steps):
                notes.append(f"'{clause}' repeats an earlier step; planned once")
                continue
            chain.steps.append(_Step(subtask, card))
        chain.spread(notes)
        return Plan(
            request=request,
            subtasks=[s.subtask for s in chain.steps],
            planner=self.name,
            notes=notes,
        )

    def _match_clauses(
        self, request: str, entries: list, index: TfidfIndex
    ) -> list[tuple[str, ToolCard]]:
        matched: list[tuple[str, ToolCard]] = []
        for clause in split_clauses(request):
            card = self._best_card(clause, entries, index)
            if card is not None:
                matched.append((clause, card))
            elif matched:
                # A fragment that names no task belongs to the clause before it.
                previous, previous_card = matched[-1]
                merged = f"{previous} and {clause}"
                matched[-1] = (merged, self._best_card(merged, entries, index) or previous_card)
        return matched

    def _best_card(self, clause: str, entries: list, index: TfidfIndex) -> ToolCard | None:
        # Quoted texts and file names are the inputs, not the instruction.
        text = _ANSWER_REF.sub(" ", _FILE.sub(" ", _QUOTED.sub(" ", clause)))
        similarities = index.similarities(text)
        kinds = {file_type(m) for m in _FILE.findall(clause)}
        best, best_score = None, self.min_similarity
        for entry, similarity in zip(entries, similarities, strict=True):
            score = similarity * (1.0 if entry.available else _UNAVAILABLE_FACTOR)
            if kinds and entry.card.input_types() & kinds:
                score += 0.05
            if score > best_score:
                best, best_score = entry.card, score
        return best

    def _subtask(self, step_id: str, clause: str, card: ToolCard, chain: _Chain) -> Subtask:
        args: dict[str, Arg] = {}
        for io in card.inputs:
            if io.optional:
                continue
            args[io.type] = _fill(io.type, clause, card, chain)
        deps = sorted(
            {a.step for a in args.values() if isinstance(a, RefArg)}
            | {s for a in args.values() if isinstance(a, ComposeArg) for s in a.steps},
            key=lambda s: int(s[1:]),
        )
        return Subtask(id=step_id, task=card.task, instruction=clause, deps=deps, args=args)


def _fill(io_type: str, clause: str, card: ToolCard, chain: _Chain) -> Arg:
    if io_type == "text":
        quoted = quoted_text(_QUOTED_FILE.sub(" ", clause))  # a quoted file name is a file
        if quoted:
            return TextArg(value=quoted)
        if _ANSWER_REF.search(clause) and chain.steps:
            return ComposeArg(steps=[s.subtask.id for s in chain.steps])
    producer = chain.latest(io_type)
    if producer is not None:
        return RefArg(step=producer.subtask.id)
    if io_type == "text":
        path = chain.file("text", clause)  # an attached or named text file
        return FileArg(path=path) if path else TextArg(value=_text_after_colon(chain, clause))
    if io_type in FILE_TYPES:
        path = chain.file(io_type, clause)
        if path is None:
            raise PlanError(
                f"'{clause}' needs an {io_type} input for {card.task}: name an {io_type} file "
                f"in the request (e.g. {'speech.wav' if io_type == 'audio' else 'photo.png'}) "
                "or attach one"
            )
        return FileArg(path=path)
    raise PlanError(f"'{clause}' needs a {io_type} input that no earlier step produces")


def _text_after_colon(chain: _Chain, clause: str) -> str:
    return clause.split(":", 1)[1].strip() if ":" in clause else clause


def _same_work(a: Subtask, b: Subtask) -> bool:
    return a.task == b.task and a.args == b.args and a.instruction.lower() == b.instruction.lower()


def quoted_text(text: str) -> str | None:
    """The first text quoted in ``text`` (single or double quotes), or None."""
    found = _QUOTED.search(text)
    return (found.group(1) or found.group(2)) if found else None


def mentioned_files(text: str) -> list[str]:
    """Audio, image and text file names in ``text``, in order."""
    quoted = _QUOTED_FILE.findall(text)
    return quoted + _FILE.findall(_QUOTED_FILE.sub(" ", text))


def _mentioned_files(request: str, attached: Sequence[Path]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in [*mentioned_files(request), *(str(p) for p in attached)]:
        kind = file_type(path)
        if kind is not None and (path, kind) not in found:
            found.append((path, kind))
    return found


def _card_document(card: ToolCard) -> str:
    return " ".join([task_type(card.task).description, card.description, " ".join(card.tags)])
