"""The words of requests and cards the zoo planner works with.

A request's own inputs (quoted texts, named and attached files, text after a colon), what a
clause refers to ("it", "the recording"), the instruction left once its inputs are taken out,
and a card's documents (its task's description, its own words, the probes it passed). The plan
being built (``Draft``) and the inputs a step can read (``Source``) are here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.cards import ToolCard
from orchestrator.cards.tasks import task_type
from orchestrator.plan import Arg, FileArg, RefArg, Subtask, TextArg
from orchestrator.text import stem, tokens

PROMPT_INPUTS = frozenset({"prompt", "instruction", "query", "question", "description"})
GENERAL_TASK = "text-generation"
UNREAD = "was given but no step reads it"  # the note on an input no step of a plan reads
POLITE = re.compile(
    r"^(?:(?:please|pls|plz|kindly|hey|hi|ok|okay|so|now)\b[\s,]*|(?:can|could|would|will)\s+"
    r"(?:you|u|ya)\s+(?:please\s+|pls\s+|plz\s+)?|i\s+(?:want|need|would\s+like|'d\s+like)\s+(?:you\s+)?to\s+|"
    r"help\s+me\s+|let'?s\s+|i\s+wonder\s+)+",
    re.IGNORECASE,
)
SMALL_TALK = re.compile(
    r"^\W*(?:(?:many\s+)?thanks?(?:\s+you)?(?:\s+(?:so|very)\s+much|\s+a\s+lot)?|thank\s+you|"
    r"thx|ty|hi|hello|hey(?:\s+there)?|good\s+(?:morning|afternoon|evening|night)|bye|goodbye|"
    r"see\s+you|cheers|great|cool|nice|perfect|awesome)(?:\s+(?:again|there|all))?\W*$",
    re.IGNORECASE,
)
"""A message that only greets or thanks: a chat model answers it, no specialised card."""
QUESTION_HEAD = frozenset(
    "what who whom whose when where why how which is are was were do does did can could "
    "should would will shall may might".split()
)
MODAL_HEAD = frozenset("can could should would will shall may might".split())  # often a request
TYPE_NOUNS = {
    "image": r"image|picture|photo|photograph|pic|scan|screenshot|drawing|snapshot|figure"
    r"|png|jpe?g",
    "audio": r"audio|recording|record|voice\s+(?:note|memo|message)|clip|sound|speech|wav|mp3"
    r"|podcast|dictation|memo|speaker|caller|narrator",
    "text": r"transcript|transcription|caption|text|message|summary|translation|note|document",
}
TYPED_REF = {
    kind: re.compile(rf"\b(?:the|this|that|these|those|my|your|its)\s+(?:\w+\s+)?(?:{nouns})s?\b",
                     re.IGNORECASE)
    for kind, nouns in TYPE_NOUNS.items()
}  # fmt: skip
OBJECT = re.compile(r"\bthe\s+([a-z]+)\s+(?:of|in)\b", re.IGNORECASE)  # "the mood of ..."
INTO = {  # the kind a clause asks its input be made into: "turn memo.wav into text"
    kind: re.compile(
        rf"\b(?:into|as|(?:turn|convert|change|transform)\b.*?\bto)\s+(?:\w+\s+)?(?:{nouns})s?\b"
        rf"|\b(?:an?\s+)?(?:{nouns})\s+(?:version|copy|file)\s+of\b"
        rf"|\b(?:show|give|send|get)\s+(?:me|us)\s+(?:an?|some)\s+(?:{nouns})s?\s+of\b",
        re.IGNORECASE,
    )
    for kind, nouns in TYPE_NOUNS.items()
}
MADE_INTO = re.compile(  # "turn cat.png into a video": the thing asked for, after its article
    r"\b(?:turn|convert|change|transform|make)\b.*?\b(?:into|to)\s+(?:an?|some)\s+"
    r"(?:\w+\s+)?(?P<thing>[a-z]+)\b",
    re.IGNORECASE,
)
STARTS_WITH_INPUT = re.compile(r"^\s*(?:[\"'“‘]|[\w./-]+\.[A-Za-z0-9]{2,4}\b)")  # a quote, a file
SAID = re.compile(  # "what did I say", "what was he talking about": what was said in it
    r"\b(?:i|we|you|he|she|they)\s+(?:say|said|says|saying|talk|talked|talking|mention|"
    r"mentioned|ask|asked)\b",
    re.IGNORECASE,
)
PRONOUN = re.compile(r"\b(?:it|its|this|that|them|these|those|the\s+same)\b", re.IGNORECASE)


@dataclass
class Source:
    """Something a step can read: a quoted text, a file, or an earlier step's output."""

    kind: str  # io type
    arg: Arg
    order: int  # clause index where it appeared (-1: attached)
    name: str  # how an answer or a note names it
    content: bool = True  # content ("it" can mean it), not a label about other content
    path: str | None = None
    missing: str | None = None  # why it cannot be made (a step left out of the plan)
    nouns: tuple[str, ...] = ()  # what a later clause calls it ("caption", "transcript")


@dataclass
class Draft:
    """The plan being built."""

    request: str
    sources: list[Source]
    steps: list[Subtask] = field(default_factory=list)
    cards: dict[str, ToolCard] = field(default_factory=dict)  # step id -> the card planned on
    made: dict[str, Source] = field(default_factory=dict)  # step id -> its output as a source
    used: set[int] = field(default_factory=set)  # ids of the sources a step reads
    unserved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def given(self) -> frozenset[str]:
        """The kinds of input the request has."""
        return frozenset(s.kind for s in self.sources if s.missing is None)

    def new_id(self) -> str:
        return f"s{len(self.steps) + 1}"


def card_document(card: ToolCard) -> str:
    return " ".join([task_type(card.task).description, own_document(card)])


def own_document(card: ToolCard) -> str:
    """The card's description, tags, and the probe instructions its profile shows it does."""
    done = [p.instruction for p in card.profile.probes if p.score >= 0.5] if card.profile else []
    text = " ".join([card.description, " ".join(t.replace("-", " ") for t in card.tags), *done])
    return ize(text)


ISE = re.compile(r"\b(\w{4,})is(e|es|ed|ing|ation|ations|er|ers)\b", re.IGNORECASE)


def ize(text: str) -> str:
    """British spelling as American ("summarises" as "summarizes"), so both match."""
    return ISE.sub(r"\1iz\2", text)


def instruction(clause: str) -> str:
    """The clause's instruction words: no quoted texts, file names or text after a colon."""
    from orchestrator.planning.embedded import instruction_words

    colon = after_colon(clause)
    if colon:
        clause = clause[: clause.rindex(colon)]
    return instruction_words(clause)


def raw_stems(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def head(text: str) -> str:
    words = re.findall(r"[a-z']+", POLITE.sub("", text.strip()).lower())
    return stem(words[0]) if words else ""


def file_kinds(clause: str) -> set[str]:
    from orchestrator.planning.embedded import file_type, mentioned_files

    return {k for k in (file_type(f) for f in mentioned_files(clause)) if k}


def referred_kinds(clause: str, given: frozenset[str], first: bool = True) -> set[str]:
    """The kinds of media input a clause is about.

    A file it names, "this recording" when one was given, or - in the request's first clause
    (later, "it" is what came before) - "it" when the request was given media of one kind only.
    """
    kinds = file_kinds(clause) | {
        k for k, p in TYPED_REF.items() if k in given and k != "text" and p.search(clause)
    }
    media = given - {"text"}
    if first and not kinds and len(media) == 1 and (PRONOUN.search(clause) or SAID.search(clause)):
        kinds = set(media)
    return kinds - {"text"}


def asked_object(clause: str) -> str:
    """The stem of what a clause asks for by name: "compare the sentiment of ..." -> sentiment."""
    found = OBJECT.search(clause)
    return stem(found.group(1).lower()) if found else ""


def quoted_or_colon(clause: str) -> bool:
    """Whether the clause gives a text of its own (quoted, or after a colon)."""
    from orchestrator.planning.embedded import QUOTED

    return bool(QUOTED.search(clause) or after_colon(clause))


def made_kinds(clause: str) -> set[str]:
    """The kinds a clause asks its input be turned into ("into text", "as speech")."""
    return {k for k, p in INTO.items() if p.search(clause)}


DESCRIPTION = re.compile(
    r"\b(?:of|about|for|showing|depicting|featuring|where|in\s+which|that\s+shows?)\b",
    re.IGNORECASE,
)


def before_description(text: str) -> str:
    """The words asking for something, without what it should show or say.

    "make me a picture of a red fox at dawn" -> "make me a picture"; with no such word, the
    first three words ("draw a cat" wearing a hat).
    """
    found = DESCRIPTION.search(text)
    if found and tokens(text[: found.start()]):
        return text[: found.start()]
    return " ".join(text.split()[:3])


def takes_prompt(card: ToolCard) -> bool:
    return any(io.name in PROMPT_INPUTS for io in card.inputs if not io.optional)


def prompt(clause: str) -> str:
    return POLITE.sub("", clause.strip()).strip() or clause.strip()


def latest(sources: list[Source], draft: Draft) -> Source:
    """The latest source: by clause, then steps after request inputs, then later steps."""
    steps = [s.arg.step for s in draft.made.values()]

    def key(s: Source) -> tuple[int, int, int]:
        if isinstance(s.arg, RefArg):
            return (s.order, 1, steps.index(s.arg.step))
        return (s.order, 0, 0)

    return max(sources, key=key)


def answer_steps(draft: Draft) -> list[str]:
    """The steps whose results make up the answer so far (those no other step reads)."""
    fed = {d for s in draft.steps for d in s.referenced_steps()}
    return [s.id for s in draft.steps if s.id not in fed] or [draft.steps[-1].id]


def output_noun(card: ToolCard) -> str:
    label = card.result_label or task_type(card.task).label
    return label.lower()


def without_refs(clause: str) -> str:
    """The clause's instruction words without the inputs it names ("the second image")."""
    words = ize(instruction(clause))
    for pattern in TYPED_REF.values():
        words = pattern.sub(" ", words)
    return words


ACTS_ON_IT = re.compile(r"^\s*[a-z]+\s+(?:it|them|this|that|these|those)\b", re.IGNORECASE)


def acts_on_it(clause: str) -> bool:
    """An action on an earlier result ("email it to Bob"), not a fragment of the clause before."""
    return bool(ACTS_ON_IT.match(POLITE.sub("", clause))) and bool(tokens(without_refs(clause)))


def said(clause: str) -> str:
    """A clause quoted in a message (typographic quotes: a message's own quotes stay paired)."""
    return "“" + clause.replace("'", "’") + "”"


def nouns(card: ToolCard) -> tuple[str, ...]:
    """What people call a card's result: its output's name, its label ("transcript")."""
    primary = card.primary_output()
    names = {primary.name.replace("_", " ").lower(), output_noun(card)}
    return tuple(sorted(n for n in names if n and n not in ("text", "label", "output")))


def bridge_instruction(card: ToolCard, source: Source) -> str:
    first = re.split(r"[.:(;]", card.description, maxsplit=1)[0].strip()
    return f"{first}: {source.name}"


def no_input(clause: str, kind: str, card: ToolCard) -> str:
    if kind == "text":
        return (
            f"{said(clause)} needs a text for {card.task}: put the text in quotes, after a colon, "
            "or attach it as a .txt file"
        )
    example = "speech.wav" if kind == "audio" else "photo.png"
    return (
        f"{said(clause)} needs an {kind} input for {card.task}: name an {kind} file in the "
        "request "
        f"(e.g. {example}) or attach one"
    )


def request_sources(request: str, clauses: list[str], files: Sequence[Path]) -> list[Source]:
    """The request's own inputs: quoted texts, named and attached files, text after a colon."""
    from orchestrator.planning.embedded import QUOTED, QUOTED_FILE, file_type, mentioned_files

    sources: list[Source] = []
    seen: set[str] = set()
    for order, clause in enumerate(clauses):
        for path in mentioned_files(clause):
            kind = file_type(path)
            if kind and path not in seen:
                seen.add(path)
                sources.append(Source(kind, FileArg(path=path), order, Path(path).name, path=path))
        for match in QUOTED.finditer(QUOTED_FILE.sub(" ", clause)):
            text = match.group(1) or match.group(2)
            if text.strip():
                sources.append(Source("text", TextArg(value=text), order, short_quote(text)))
        colon = after_colon(clause)
        if colon:
            sources.append(Source("text", TextArg(value=colon), order, short_quote(colon)))
    for path in files:
        kind = file_type(str(path))
        if kind and not any(same_file(path, named) for named in seen):
            seen.add(str(path))
            sources.append(Source(kind, FileArg(path=str(path)), -1, path.name, path=str(path)))
    return sources


def same_file(given: Path, named: str) -> bool:
    """Whether an attached file is the one the request names ("cat.png" and /in/cat.png)."""
    parts = Path(named).parts
    return bool(parts) and given.parts[-len(parts) :] == parts


COLON_TEXT = re.compile(r"^(?:[^:\"'“’]|(?<=\w)['’](?=\w)){3,80}:\s*(\S.*)$", re.DOTALL)


def after_colon(clause: str) -> str | None:
    from orchestrator.planning.embedded import QUOTED

    if QUOTED.search(clause):
        return None
    found = COLON_TEXT.match(clause.strip())
    return found.group(1).strip() if found else None


def short_quote(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return f"'{flat}'" if len(flat) <= limit else f"'{flat[: limit - 3]}...'"


LONE_VERB = re.compile(r"\s*(?:please\s+)?[a-z]+\W*", re.IGNORECASE)


def lend_input(clauses: list[str]) -> list[str]:
    """Clauses where one of a lone verb reads what the next names, which then reads "it".

    "transcribe and summarize memo.wav" is "transcribe memo.wav", "summarize it": the first
    clause names no input of its own.
    """
    from orchestrator.planning.embedded import QUOTED, mentioned_files

    lent = list(clauses)
    for i in range(len(lent) - 1):
        named = mentioned_files(lent[i + 1]) or [q.group(0) for q in QUOTED.finditer(lent[i + 1])]
        if LONE_VERB.fullmatch(lent[i]) and len(named) == 1:
            lent[i] = f"{lent[i].strip()} {named[0]}"
            lent[i + 1] = lent[i + 1].replace(named[0], "it", 1)
    return lent
