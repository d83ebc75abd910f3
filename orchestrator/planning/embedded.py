"""The embedded planner: no LLM, no network, deterministic.

Over the zoo's cards (``plan``):

split the request into clauses (sentences, commas, "then", "and"), then plan each clause by
type over the cards: its capability, its input, and the converting steps between them (see
``orchestrator.planning.zoo_plan``).

Over a tool set by name (``plan_tools``, e.g. a benchmark's tools): see
``orchestrator.planning.tool_plan``: clause matching, votes of similar solved requests, and an order
learned from the examples, the tool graph and where each tool matched in the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cards.zoo import Zoo
from orchestrator.errors import UserError
from orchestrator.file_kinds import input_extensions, kind_of
from orchestrator.plan import Plan
from orchestrator.planning.toolset import ToolPlan, ToolSet

if TYPE_CHECKING:
    from orchestrator.embed import Embedder
    from orchestrator.planning.graph_path import Embed
    from orchestrator.planning.tool_plan import ToolSetModel
    from orchestrator.planning.zoo_plan import ZooPlanner

__all__ = [
    "ANSWER_REF",
    "EmbeddedPlanner",
    "FILE_TYPES",
    "QUOTED",
    "QUOTED_FILE",
    "instruction_words",
    "file_type",
    "mentioned_files",
    "quoted_text",
    "split_clauses",
]

FILE_TYPES = input_extensions()  # text files are read as the text input of a step
_EXTENSIONS = "|".join(ext for exts in FILE_TYPES.values() for ext in exts)
_FILE = re.compile(rf"(?<![\w/.~-])([\w~./-]*[\w-]\.(?:{_EXTENSIONS}))\b", re.IGNORECASE)
QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]|(?<!\w)'([^']+)'(?!\w)")
# A quoted file name may hold spaces: 'Transcribe "my recording.wav"'.
QUOTED_FILE = re.compile(rf"[\"“']([^\"”'\n]+\.(?:{_EXTENSIONS}))[\"”']", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?;]+(?:\s+|$)")
# A comma between two digits is part of a number ("25,000"), not a joiner.
_JOINERS = re.compile(
    r"(?:(?<!\d),|,(?!\d))\s*|\s+(?:and\s+then|after\s+that|afterwards|finally|then|and|also|plus)\s+",
    re.IGNORECASE,
)
_LEADING_JOINER = re.compile(
    r"^(?:and\s+then|after\s+that|afterwards|finally|then|and|also|plus)\b[\s,]*", re.IGNORECASE
)
ANSWER_REF = re.compile(
    r"\b(?:the|your|this|that|my)\s+(?:answer|answers|result|results|output|outputs|findings|"
    r"reply|response)\b|\beverything\b|\ball\s+of\s+(?:it|that|this)\b",
    re.IGNORECASE,
)
_MIN_SIMILARITY = 0.08


def file_type(path: str) -> str | None:
    """'audio', 'image' or 'text' by the file's extension, or None."""
    kind = kind_of(path)
    return kind.io_type if kind is not None and kind.named else None


def split_clauses(request: str, *, colon_text: bool = False) -> list[str]:
    """Sentences, then comma / 'then' / 'and' pieces; quotes and file names stay whole.

    With ``colon_text``, the text after an instruction and a colon ("Is this positive: I came,
    I saw. I left.") is the input of the clause before it, kept whole.
    """
    head, text = request, ""
    if colon_text:
        found = _COLON_INPUT.match(request.strip())
        if found:
            head, text = found.group(1), found.group(2).strip()
    protected, kept = _protect(head)
    clauses: list[str] = []
    for sentence in _SENTENCE.split(protected):
        clauses.extend(_LEADING_JOINER.sub("", p.strip()) for p in _JOINERS.split(sentence))
    clauses = [_restore(c, kept) for c in clauses if c and c.strip(" ,")]
    if text:
        clauses[-1:] = [f"{clauses[-1]}: {text}" if clauses else text]
    return clauses


# An instruction (no quotes, no colon; "what's" is a word, not a quote), a colon and a space,
# then the text to work on.
_COLON_INPUT = re.compile(r"^((?:[^:\"'“”’\n]|(?<=\w)['’](?=\w)){3,80}?):\s+(\S.*)$", re.DOTALL)


def _protect(text: str) -> tuple[str, list[str]]:
    """Replace quoted texts and file names by placeholders that no splitter matches."""
    kept: list[str] = []

    def hide(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    return _FILE.sub(hide, QUOTED.sub(hide, text)), kept


def _restore(text: str, kept: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


class EmbeddedPlanner:
    """Plans multi-step requests over the zoo with no LLM."""

    name = "embedded"

    def __init__(
        self, min_similarity: float = _MIN_SIMILARITY, embedder: Embedder | None = None
    ) -> None:
        self.min_similarity = min_similarity
        # Sentence embeddings for a tool set with no examples (None: MiniLM, on first use).
        self.embedder = embedder
        self._models: dict[int, tuple[ToolSet, object]] = {}
        self._zoo_planner: ZooPlanner | None = None
        self._zoo_key: object = None

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
        from orchestrator.planning.tool_plan import ToolSetModel

        cached = self._models.get(id(tools))
        if cached is None or cached[0] is not tools:
            embed = None if tools.examples else self._embed()
            cached = (tools, ToolSetModel(tools, embed=embed))
            self._models = {id(tools): cached}  # one tool set at a time: folds replace each other
        model = cached[1]
        assert isinstance(model, ToolSetModel)
        return model

    def _embed(self) -> Embed:
        """Sentence vectors (cached on disk) for matching requests to tools with no examples."""
        from orchestrator.embed import EmbeddingCache, default_embedder

        return EmbeddingCache(self.embedder or default_embedder()).vectors

    def plan(self, request: str, zoo: Zoo, *, files: Sequence[Path] = ()) -> Plan:
        """Plan ``request`` over the cards of ``zoo`` (see ``orchestrator.planning.zoo_plan``)."""
        from orchestrator.planning.zoo_plan import ZooPlanner

        request = request.strip()
        if not request:
            raise UserError("the request is empty: say what you want done, e.g. 'Transcribe a.wav'")
        key = (id(zoo), tuple((e.card.name, e.unavailable) for e in zoo))
        if self._zoo_key != key:
            self._zoo_planner, self._zoo_key = ZooPlanner(zoo), key
        assert self._zoo_planner is not None
        return self._zoo_planner.plan(request, files, self.name)


_SHORTHAND = {"u": "you", "ur": "your", "ya": "you", "pls": "please", "plz": "please"}
_SHORTHAND_WORD = re.compile(r"\b(?:" + "|".join(_SHORTHAND) + r")\b", re.IGNORECASE)


def instruction_words(clause: str) -> str:
    """The clause without its inputs: quoted texts, file names, references to "the answer".

    Chat shorthand in the instruction is read as the words it stands for ("could u" is "could
    you"); quoted texts are gone by then, so their words are never touched.
    """
    words = ANSWER_REF.sub(" ", _FILE.sub(" ", QUOTED.sub(" ", clause)))
    return _SHORTHAND_WORD.sub(lambda m: _SHORTHAND[m.group(0).lower()], words)


def quoted_text(text: str) -> str | None:
    """The first text quoted in ``text`` (single or double quotes), or None."""
    found = QUOTED.search(text)
    return (found.group(1) or found.group(2)) if found else None


def mentioned_files(text: str) -> list[str]:
    """Audio, image and text file names in ``text``, in order."""
    quoted = QUOTED_FILE.findall(text)
    return quoted + _FILE.findall(QUOTED_FILE.sub(" ", text))


def _mentioned_files(request: str, attached: Sequence[Path]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in [*mentioned_files(request), *(str(p) for p in attached)]:
        kind = file_type(path)
        if kind is not None and (path, kind) not in found:
            found.append((path, kind))
    return found
