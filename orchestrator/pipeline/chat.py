"""Conversations: follow-up requests that refer to earlier results and files.

A :class:`Conversation` remembers each turn (request, answer, produced files) and turns a
follow-up into what one run needs (:meth:`Conversation.inputs_for`):

* files attached since the last turn go with the next request;
* a file name from an earlier turn ("read speech-1a2b.wav again") is replaced by its full path;
* a reference to earlier results ("it", "that", "the transcript", "the answer", "the
  image" ...) in a request with no input of its own brings the latest turn's produced files
  and its answer, quoted, so the planner can fill a text, audio or image input from them.

A :class:`ChatSession` adds the orchestrator and one budget for the whole conversation: money,
tokens and calls spent by earlier turns are taken from what later turns may spend.

The HTTP server rebuilds a conversation from OpenAI chat messages
(:meth:`Conversation.from_messages`): produced files appear in assistant messages as links of
the form ``/v1/files/<run_id>/<file name>``, resolved under the server's runs folder.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.budget import Budget
from orchestrator.cards.tasks import task_type
from orchestrator.cards.zoo import Zoo
from orchestrator.errors import MissingInput, UserError
from orchestrator.events import Event
from orchestrator.pipeline.checks import checked_files
from orchestrator.pipeline.orchestrator import Orchestrator, RunResult
from orchestrator.planning.embedded import QUOTED, mentioned_files, quoted_text
from orchestrator.planning.plan_words import UNREAD

__all__ = ["ChatSession", "Conversation", "FILE_LINK", "InputJudge", "Turn", "refers_back"]

FILE_LINK = re.compile(r"/v1/files/([A-Za-z0-9_-]+)/([A-Za-z0-9_.-]+)")
"""A produced file's link in an assistant message: ``/v1/files/<run_id>/<name>``."""

_REFERENCE = re.compile(
    r"\b(?:it|its|that|this|them|those|these|again|above|previous(?:ly)?|earlier|last)\b"
    r"|\b(?:the|your)\s+(?:answer|result|results|output|outputs|text|transcript|transcription|"
    r"translation|summary|caption|description|reply|response|audio|recording|speech|sound|"
    r"image|picture|photo|file|files)\b",
    re.IGNORECASE,
)
_QUOTE = re.compile(r"[\"“”]")
_OWN_TEXT = re.compile(
    r"[\"“][^\"”]+[\"”]"  # a quoted text
    r"|(?<!\w)'[^']+'(?!\w)"  # a single-quoted text
    r"|:\s*\S+(?:\s+\S+){2,}"  # a colon and then at least three words: "read this: ..."
    r"|\?\s+\S+(?:\s+\S+){2,}"  # a question and then its text: "is this positive? I love it"
)
_SWAP = re.compile(  # "and this one?", "what about 'x'", "same for y.png too"
    r"^[\s,.!-]*(?P<marker>(?:(?:and|ok(?:ay)?|now|so|also|then)[\s,.!-]+)*"
    r"(?:(?:what|how)\s+about|(?:do\s+)?(?:the\s+)?same\s+(?:thing\s+)?(?:for|with))?)"
    r"\s*(?P<rest>.*?)(?:\s+(?:too|as\s+well|please))?[\s?.!]*$",
    re.IGNORECASE | re.DOTALL,
)
_JUST_INPUT = re.compile(
    r"(?:(?:this|that|the\s+other|the\s+next|these|those)(?:\s+(?:one|ones|photo|picture|"
    r"image|pic|file|recording|clip|audio|text|sentence|review|message))?|it|them|now)?",
    re.IGNORECASE,
)
_NO_RESULT = ("rejected", "unservable", "failed")
_MAX_QUOTED_CHARS = 2000


@dataclass
class Turn:
    """One request and what came of it."""

    request: str
    answer: str
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None
    status: str = "ok"
    usd: Decimal = Decimal(0)
    texts: list[str] = field(default_factory=list)
    analysed: str = ""  # the literal text the turn worked on, if one
    made: list[Path] = field(default_factory=list)  # the files it produced (also in ``files``)
    asked: str = ""  # the request in full, when it only swapped the input of the one before

    def referent(self) -> tuple[list[Path], str]:
        """What "it" in a follow-up hands on: (files, text).

        A text the turn made (a transcript) is "it"; else the files it made (the speech it
        wrote); else what it was given and its answer.
        """
        if self.texts:
            return [], self.quotable()
        if self.made:
            return list(self.made), ""
        return list(self.files), self.quotable()

    def offering(self, kind: str) -> tuple[list[Path], str] | None:
        """What this turn can hand a follow-up that needs an input of ``kind``, if anything.

        A text is "it" (see :meth:`referent`); an image or a recording is a file the turn was
        given or made.
        """
        from orchestrator.planning.embedded import file_type

        if kind == "text":
            files, text = self.referent()
            return (files, text) if text.strip() else None
        files = [f for f in self.files if file_type(str(f)) == kind]
        return (files[-1:], "") if files else None

    def quotable(self) -> str:
        """What "it" means in a follow-up: the text the turn made, or worked on, or its answer.

        Made texts are those of content-making steps (a transcript, a caption, a summary), not
        labels (a sentiment, a language): after "Is 'I hate rain' negative?", "which language
        is it in?" asks about "I hate rain", not about the label "Sentiment: negative.".
        """
        if len(self.texts) == 1:
            return self.texts[0]
        return self.analysed or self.answer


@dataclass
class Conversation:
    """Earlier turns and files attached for the next one."""

    turns: list[Turn] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    _asked: str = ""  # the last request in full (see :meth:`_swapped`)

    def attach(self, path: str | Path) -> Path:
        """Attach a file to the next request (its path is checked now).

        A path as a terminal pastes or completes it (quoted, or with escaped spaces) is read
        as the shell would.
        """
        given = _unquoted(path) if isinstance(path, str) else path
        found = Path(given).expanduser().resolve()
        if found.is_dir():
            raise UserError(f"cannot attach {given}: it is a folder; attach its files one by one")
        if not found.is_file():
            raise UserError(f"cannot attach {given}: no such file")
        problem = checked_files([found])
        if problem is not None:
            raise UserError(f"cannot attach {given}: {problem}")
        self.pending.append(found)
        return found

    def known_files(self) -> list[Path]:
        """Every file of this conversation: attached or produced, oldest first."""
        return [f for t in self.turns for f in t.files] + list(self.pending)

    def inputs_for(
        self,
        request: str,
        files: Sequence[str | Path] = (),
        missing: Callable[[str, list[Path]], str | None] | None = None,
    ) -> tuple[str, list[Path]]:
        """The prompt and attached files for ``request`` in the light of earlier turns.

        Earlier turns are used when the request refers to them ("it", "the transcript"), or
        when it gives nothing of what it needs (``missing``: the kind of input it lacks) and the
        last turn has that ("how many faces?" after a photo).
        """
        text = request.strip()
        if not text:
            raise UserError("the request is empty: say what you want done")
        attached = [Path(f).resolve() for f in [*self.pending, *files]]
        last = self._last_with_results()
        text = self._asked = self._swapped(text, attached, last) or text
        text = self._full_paths(text)
        own_input = bool(attached or mentioned_files(text) or _OWN_TEXT.search(text))
        if own_input:
            return text, _unique(attached)
        if (refused := self._refused_with_files()) is not None and missing is not None:
            # "who is this?" with a photo was refused; "ok, how many faces then" means that photo
            kind = missing(text, attached)
            handed = refused.offering(kind) if kind and kind != "text" else None
            if handed is not None:
                return text, _unique([*attached, *handed[0]])
        if last is None:
            return text, _unique(attached)
        handed = last.referent() if refers_back(text) else None
        judge = missing if isinstance(missing, InputJudge) else None
        if handed is None and missing is not None:
            kind = missing(text, attached)
            handed = last.offering(kind) if kind else None
            if handed is None and kind and judge is not None:
                # "what did I say?" after a recording: planned as a photo's text, it fits the
                # recording the last turn had.
                fits = [f for f in last.files if judge.reads_all(text, [*attached, f])]
                handed = (fits[-1:], "") if fits else None
        if handed is not None:
            files, quoted = handed
            if files and quoted.strip() and judge is not None:
                files, quoted = _what_is_read(judge, text, attached, files, quoted)
            attached.extend(files)
            if quoted.strip():
                text = self._full_paths(f'{text}: "{_quotable(quoted)}"')
        return text, _unique(attached)

    def record(self, request: str, result: RunResult) -> Turn:
        """Remember a finished run as a turn; attached files are used up."""
        inputs = list(self.pending)
        self.pending.clear()
        made = {str(p) for p in result.artifacts}
        texts = [  # what content-making steps wrote (a transcript, not a sentiment label)
            value
            for step in result.steps
            if step.status == "done" and task_type(step.task).makes_content
            for value in (step.outputs or {}).values()
            if isinstance(value, str) and value.strip() and value not in made
        ]
        asked, self._asked = self._asked, ""
        turn = Turn(
            asked=asked if asked != request else "",
            request=request,
            answer=result.answer,
            files=_unique([*inputs, *(Path(p).resolve() for p in result.artifacts)]),
            run_id=result.run_id,
            status=result.status,
            usd=sum((Decimal(str(s.usd)) for s in result.steps), Decimal(0)),
            texts=texts,
            analysed=_literal_text(result),
            made=[Path(p).resolve() for p in result.artifacts],
        )
        self.turns.append(turn)
        return turn

    @classmethod
    def from_messages(
        cls,
        messages: Iterable[dict[str, Any]],
        files_root: Path,
        attachments: Callable[[int], list[Path]] | None = None,
    ) -> tuple[Conversation, str]:
        """Earlier turns rebuilt from OpenAI chat messages, and the last user request.

        Produced files are recognised by their links (:data:`FILE_LINK`) in assistant messages
        and kept only if they exist under ``files_root``; files attached to an earlier user
        message come from ``attachments(index)`` (the caller decodes the message's parts).
        System messages are ignored.
        """
        conversation = cls()
        request: str | None = None
        given: list[Path] = []
        listed = list(messages)
        last_user = max((i for i, m in enumerate(listed) if m.get("role") == "user"), default=-1)
        for index, message in enumerate(listed):
            role, content = message.get("role"), _text_of(message.get("content"))
            if role == "user":
                if request is not None:
                    conversation.turns.append(
                        Turn(request, "", given, analysed=conversation._analysed(request))
                    )
                request = content
                earlier = attachments is not None and index != last_user
                given = list(attachments(index)) if earlier else []
            elif role == "assistant" and request is not None:
                files = [
                    path
                    for run_id, name in FILE_LINK.findall(content)
                    if (path := (files_root / run_id / name).resolve()).is_file()
                    and path.is_relative_to(files_root.resolve())
                ]
                last = conversation._last_with_results()
                conversation.turns.append(
                    Turn(
                        request=request,
                        asked=conversation._swapped(request, given, last) or "",
                        answer=FILE_LINK.sub("", content),
                        files=given + files,
                        analysed=conversation._analysed(request),
                        made=files,
                    )
                )
                request, given = None, []
        if request is None:
            raise UserError("the last message must be the user's request")
        return conversation, request

    @staticmethod
    def _swapped(text: str, attached: list[Path], last: Turn | None) -> str | None:
        """The last request asked again of new inputs, when ``text`` only gives those.

        "and this one?" (a photo attached), 'what about "best dinner ever"', "same for
        face.png": the last request with its input swapped for the new one. None otherwise.
        """
        found = _SWAP.match(text)
        quote, named = quoted_text(text), mentioned_files(text)
        if last is None or found is None or not (quote or named or attached):
            return None
        rest = QUOTED.sub(" ", found["rest"])
        for name in named:
            rest = rest.replace(name, " ")
        rest = " ".join(re.sub(r"[^\w' ]", " ", rest).split())
        if not _JUST_INPUT.fullmatch(rest) or not (found["marker"] or rest):
            return None
        before = last.asked or last.request
        old_quote, old_files = quoted_text(before), mentioned_files(before)
        if quote and old_quote:
            before = before.replace(old_quote, quote, 1)
        elif quote:
            before = f'{before}: "{quote}"'
        new_files = [*named, *(p.name for p in attached)]
        if new_files and old_files:
            before = before.replace(old_files[0], " and ".join(new_files), 1)
        return before

    def _analysed(self, request: str) -> str:
        """The text an earlier request worked on: its quoted text, or what "it" meant then."""
        quoted = quoted_text(request)
        if quoted:
            return quoted
        last = self._last_with_results()
        if last is not None and refers_back(request) and not _OWN_TEXT.search(request):
            return last.quotable()
        return ""

    def _full_paths(self, text: str) -> str:
        by_name = {f.name: f for f in self.known_files()}
        for name in mentioned_files(text):
            if name in by_name and not Path(name).exists():
                text = re.sub(rf"(?<![\w/.-]){re.escape(name)}\b", str(by_name[name]), text)
        return text

    def _refused_with_files(self) -> Turn | None:
        """The latest turn, when nothing was done for it though it was given files."""
        turn = self.turns[-1] if self.turns else None
        if turn is not None and turn.status in _NO_RESULT and turn.files:
            return turn
        return None

    def _last_with_results(self) -> Turn | None:
        for turn in reversed(self.turns):
            if turn.status not in _NO_RESULT and (turn.files or turn.answer.strip()):
                return turn
        return None


class ChatSession:
    """A conversation with an orchestrator under one budget for all its turns."""

    def __init__(self, orchestrator: Orchestrator, budget: Budget | None = None) -> None:
        self.orchestrator = orchestrator
        self.budget = budget if budget is not None else orchestrator.config.budget.to_budget()
        self.conversation = Conversation()
        self.results: list[RunResult] = []
        self.spent_usd = Decimal(0)
        self.spent_tokens = 0
        self.spent_calls = 0

    def attach(self, path: str | Path) -> Path:
        """Attach a file to the next request."""
        return self.conversation.attach(path)

    def budget_left(self) -> Budget:
        """What later turns may still spend (wall seconds are a limit per turn)."""
        b = self.budget
        return Budget(
            usd=None if b.usd is None else max(b.usd - self.spent_usd, Decimal(0)),
            seconds=b.seconds,
            tokens=None if b.tokens is None else max(b.tokens - self.spent_tokens, 0),
            calls=None if b.calls is None else max(b.calls - self.spent_calls, 0),
        )

    def send(
        self,
        request: str,
        *,
        files: Sequence[str | Path] = (),
        on_event: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run one turn; a cancelled turn is recorded too (its run can be resumed later)."""
        for path in files:  # a turn's own files are part of it, as attached ones are
            self.conversation.attach(path)
        prompt, attached = self.conversation.inputs_for(
            request, (), missing_input(self.orchestrator.zoo)
        )
        result = self.orchestrator.run(
            prompt, budget=self.budget_left(), files=attached, on_event=on_event, cancel=cancel
        )
        self.spent_usd += Decimal(str(result.spent.get("usd") or 0))
        self.spent_tokens += int(result.spent.get("tokens") or 0)
        self.spent_calls += int(result.spent.get("calls") or 0)
        self.conversation.record(request, result)
        self.results.append(result)
        return result


class InputJudge:
    """What the embedded planner makes of a request and its inputs, before any run.

    It is free and deterministic, so a conversation can ask it before any (paid) run. Called,
    it returns the kind of input a request needs and does not give (or None).
    """

    def __init__(self, zoo: Zoo) -> None:
        from orchestrator.planning.embedded import EmbeddedPlanner

        self.zoo = zoo
        self.planner = EmbeddedPlanner()

    def __call__(self, request: str, files: list[Path]) -> str | None:
        try:
            self.planner.plan(request, self.zoo, files=files)
        except MissingInput as exc:
            return exc.kind
        except UserError:
            return None
        return None

    def reads_all(self, request: str, files: list[Path]) -> bool:
        """Whether the request plans, and every input it is given is read by a step."""
        try:
            plan = self.planner.plan(request, self.zoo, files=files)
        except UserError:
            return False
        return not any(note.endswith(UNREAD) for note in plan.notes)


def missing_input(zoo: Zoo) -> InputJudge:
    """The judge of inputs a conversation asks before a run (see :class:`InputJudge`)."""
    return InputJudge(zoo)


def _what_is_read(
    judge: InputJudge, text: str, attached: list[Path], files: list[Path], quoted: str
) -> tuple[list[Path], str]:
    """Of an earlier turn's files and text, what a follow-up reads: both, the text, or the files.

    "read it aloud" after a photo reads the answer about it; "how many faces are in it" looks
    at the photo. Handing both when one is not read would leave the run partial.
    """
    asked = f'{text}: "{_quotable(quoted)}"'
    if judge.reads_all(asked, [*attached, *files]):
        return files, quoted
    words = quoted  # the text alone: a file it names is a word in it, not an input
    for name in mentioned_files(quoted):
        words = words.replace(name, Path(name).stem)
    if judge.reads_all(f'{text}: "{_quotable(words)}"', attached):
        return [], words
    if judge.reads_all(text, [*attached, *files]):
        return files, ""
    return files, quoted


def _text_of(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(str(p.get("text", "")) for p in parts)
    return ""


def refers_back(request: str) -> bool:
    """Whether ``request`` refers to an earlier turn.

    It does when its first clause says "it", "that", "the transcript" ...; "Write a story and
    read it aloud" refers to its own story.
    """
    from orchestrator.planning.embedded import split_clauses

    clauses = split_clauses(request) or [request]
    return bool(_REFERENCE.search(clauses[0]))


_MARKUP = re.compile(
    r"!?\[([^\]]*)\]\([^)]*\)"  # a markdown link or image: keep its text
    r"|https?://\S+"  # a link
    r"|(?<![\w.])/[\w.~-]+(?:/[\w.~ -]+)+\.\w+"  # an absolute file path
    r"|[*_`#>]+"  # emphasis, code, headings, quotes
)


def _quotable(answer: str) -> str:
    """An earlier answer as text a tool may read: no file links, paths or markup."""
    plain = FILE_LINK.sub(" ", answer)
    plain = _MARKUP.sub(lambda m: m.group(1) or " ", plain)
    flat = " ".join(_QUOTE.sub("'", plain).split())
    return flat[:_MAX_QUOTED_CHARS]


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def _literal_text(result: RunResult) -> str:
    """The literal text the run's first step that had one worked on ("" when none)."""
    from orchestrator.plan import TextArg

    for subtask in result.plan.subtasks if result.plan else []:
        for arg in subtask.args.values():
            if isinstance(arg, TextArg) and arg.value.strip():
                return arg.value
    return ""


def _unquoted(text: str) -> str:
    """A path as the shell reads it: quotes removed, backslash escapes undone."""
    import shlex

    try:
        parts = shlex.split(text)
    except ValueError:  # an unbalanced quote: take the text as it is
        return text.strip()
    return " ".join(parts) if parts else text.strip()
