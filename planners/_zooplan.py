"""Type-driven planning over the zoo's cards (the embedded planner's ``plan``).

For each clause of the request:

1. the capability it asks for: the card whose description (and its task's description) fits
   the clause best; a clause that fits no card is part of the clause before it, or, when it
   starts the request as a question or a writing request, goes to the zoo's general
   text-generation card(s); a second capability named in the same clause ("... and say it back
   to me") chains after the first when the types allow;
2. its inputs: a text quoted in the clause, a file named in it, a typed reference ("the
   recording", "the picture"), else the latest content the request has so far - a quoted text,
   a file, or what an earlier step made (a transcript, not a label);
3. bridging: when that input's type is not the type the card reads (an image for a text
   classifier), the converting step(s) are inserted from the cards whose inputs and outputs
   make the path, chosen by how well their descriptions fit the clause (read the text in an
   image vs describe it);
4. honesty: a capability no available card does (or none in the languages asked for) is left
   out of the plan and said in ``Plan.unserved`` with the card that would do it and how to make
   it available; steps that needed its result are left out too.

Steps that do not read each other's outputs have no dependency, so they run in parallel.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator._text import TfidfIndex, stem, tokens
from orchestrator.cards import ToolCard
from orchestrator.errors import NoCapableTool, PlanError
from orchestrator.plan import Arg, ComposeArg, FileArg, Plan, RefArg, Subtask, TextArg
from orchestrator.tasks import task_type
from orchestrator.zoo import Zoo, ZooEntry
from planners._advice import languages_fit, mentioned_languages, missing_advice

__all__ = ["ZooPlanner"]

_MIN_SIMILARITY = 0.08
_MIN_COVERAGE = 0.3  # the share of a clause's instruction words a fitting card's document has
_SECOND_CAPABILITY = 0.2  # what a clause's left-over words must match to add a second step
_HEAD_BONUS = 0.12  # the clause's leading verb is in the card's document
_FILE_KIND_BONUS = 0.15
_NEAR_BEST = 0.8  # a card of the same task this close to a missing one may stand in
_SAME_SIGNATURE = 0.5  # a card of another task this close to a missing one may stand in
_PROMPT_INPUTS = frozenset({"prompt", "instruction", "query", "question", "description"})
_GENERAL_TASK = "text-generation"
_POLITE = re.compile(
    r"^(?:(?:please|kindly|hey|hi|ok|okay|so|now)\b[\s,]*|(?:can|could|would|will)\s+you\s+"
    r"(?:please\s+)?|i\s+(?:want|need|would\s+like|'d\s+like)\s+(?:you\s+)?to\s+|"
    r"help\s+me\s+|let'?s\s+|i\s+wonder\s+)+",
    re.IGNORECASE,
)
_QUESTION_HEAD = frozenset(
    "what who whom whose when where why how which is are was were do does did can could "
    "should would will shall may might".split()
)
_TYPE_NOUNS = {
    "image": r"image|picture|photo|photograph|pic|scan|screenshot|drawing|snapshot|figure"
    r"|png|jpe?g",
    "audio": r"audio|recording|record|voice\s+(?:note|memo|message)|clip|sound|speech|wav|mp3"
    r"|podcast|dictation|memo|speaker|caller|narrator",
    "text": r"transcript|transcription|caption|text|message|summary|translation|note|document",
}
_TYPED_REF = {
    kind: re.compile(rf"\b(?:the|this|that|these|those|my|your|its)\s+(?:\w+\s+)?(?:{nouns})s?\b",
                     re.IGNORECASE)
    for kind, nouns in _TYPE_NOUNS.items()
}  # fmt: skip
_PRONOUN = re.compile(r"\b(?:it|its|this|that|them|these|those|the\s+same)\b", re.IGNORECASE)


@dataclass
class _Source:
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
class _Draft:
    """The plan being built."""

    request: str
    sources: list[_Source]
    steps: list[Subtask] = field(default_factory=list)
    cards: dict[str, ToolCard] = field(default_factory=dict)  # step id -> the card planned on
    made: dict[str, _Source] = field(default_factory=dict)  # step id -> its output as a source
    used: set[int] = field(default_factory=set)  # ids of the sources a step reads
    unserved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def given(self) -> frozenset[str]:
        """The kinds of input the request has."""
        return frozenset(s.kind for s in self.sources if s.missing is None)

    def new_id(self) -> str:
        return f"s{len(self.steps) + 1}"


class ZooPlanner:
    """Plans over one zoo; built once per zoo (the card index) and reused."""

    def __init__(self, zoo: Zoo) -> None:
        self.entries: list[ZooEntry] = list(zoo)
        if not self.entries:
            raise NoCapableTool("the zoo has no tool cards; add some to a cards folder")
        self.index = TfidfIndex(_card_document(e.card) for e in self.entries)
        self.own = TfidfIndex(_own_document(e.card) for e in self.entries)
        self.heads = [set(_raw_stems(_card_document(e.card))) for e in self.entries]
        self.tasks = sorted({e.card.task for e in self.entries})
        self.terms = [set(tokens(_card_document(e.card))) for e in self.entries]
        self.own_terms = [set(tokens(_own_document(e.card))) for e in self.entries]
        counts = Counter(t for terms in self.terms for t in terms)
        n = len(self.entries)
        self.idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in counts.items()}

    def coverage(self, text: str, own: bool = False) -> list[float]:
        """The share of the text's words (weighted by rarity) each card's document has.

        "Book a table at an Italian restaurant" shares one word in six with a language
        identifier: not what it does.
        """
        words = set(tokens(text))
        weight = {w: self.idf.get(w, math.log(1 + len(self.entries)) + 1.0) for w in words}
        total = sum(weight.values())
        if not total:
            return [0.0] * len(self.entries)
        documents = self.own_terms if own else self.terms
        return [sum(weight[w] for w in words & terms) / total for terms in documents]

    # -- matching ---------------------------------------------------------------------------

    def scores(
        self, clause: str, given: frozenset[str] = frozenset(), implied: str | None = None
    ) -> list[float]:
        """How well each card fits the clause's instruction (its inputs left out).

        ``given``: the kinds of input the request has (a card reading one the clause names -
        a file, or "this picture" - fits better).
        """
        text = _ize(_instruction(clause))
        head = _head(text)
        capability = _without_refs(clause)  # "the mood of the text in x.png": the mood
        if tokens(capability):
            text = capability
        kinds = _file_kinds(clause) | {
            k for k, p in _TYPED_REF.items() if k in given and p.search(clause)
        }
        if implied:
            kinds = kinds | {implied}
        out = []
        # The card's own words count as much as its task's: two cards of one task (OCR and a
        # captioner) share the task's words but not what each of them does.
        full, own = self.index.similarities(text), self.own.similarities(text)
        covered = self.coverage(text)
        if not _file_kinds(clause):
            # A card making something from a description is asked by the words before it:
            # "make me a picture" of a red fox, "draw" a cat wearing a hat.
            asked = self.coverage(_before_description(text))
            covered = [
                max(c, a) if _takes_prompt(e.card) else c
                for c, a, e in zip(covered, asked, self.entries, strict=True)
            ]
        for i, entry in enumerate(self.entries):
            sim = 0.5 * full[i] + 0.5 * own[i] if covered[i] >= _MIN_COVERAGE else 0.0
            score = sim
            if sim > 0 and head and head in self.heads[i]:
                score += _HEAD_BONUS
            if sim > 0 and kinds & entry.card.input_types():
                score += _FILE_KIND_BONUS
            out.append(score)
        return out

    def best(
        self, clause: str, given: frozenset[str] = frozenset(), implied: str | None = None
    ) -> tuple[int, float] | None:
        scores = self.scores(clause, given, implied)
        named = _file_kinds(clause)
        if named:  # a card must be able to read the named file, directly or converted
            reach = self._reachable(named | {"text"})
            scores = [
                sc if self.entries[k].card.input_types() <= reach else 0.0
                for k, sc in enumerate(scores)
            ]
        i = max(range(len(scores)), key=lambda k: (scores[k], -k))
        return (i, scores[i]) if scores[i] >= _MIN_SIMILARITY else None

    def _by_input(self, clause: str, given: frozenset[str]) -> tuple[int, float] | None:
        """The card for a clause naming an input but no capability ("what is in photo.jpg").

        Such a clause asks what the input shows or says: of the runnable cards reading that
        kind, the one whose description best fits that (and the clause's own words).
        """
        kinds = _file_kinds(clause) | {
            k for k, p in _TYPED_REF.items() if k in given and k != "text" and p.search(clause)
        }
        if not kinds:
            return None
        asked = f"{clause} says what the {' '.join(sorted(kinds))} shows, describes what is in it"
        sims = self.own.similarities(_ize(asked))
        readers = [
            (e.available, round(sims[i], 6), e.card.strength, -i)
            for i, e in enumerate(self.entries)
            if e.card.input_types() & kinds and not _takes_prompt(e.card)
        ]
        if not readers:
            return None
        best = max(readers)
        return (-best[3], _MIN_SIMILARITY)

    def _reachable(self, kinds: set[str]) -> set[str]:
        """The types the cards can make from ``kinds`` (converting steps only)."""
        reach = set(kinds)
        for _ in range(3):
            for entry in self.entries:
                card = entry.card
                if card.input_types() and card.input_types() <= reach and not _takes_prompt(card):
                    reach |= card.output_types()
        return reach

    def general(self) -> list[int]:
        """The zoo's general text-generation cards."""
        return [i for i, e in enumerate(self.entries) if e.card.task == _GENERAL_TASK]

    def is_general_request(self, clause: str) -> bool:
        """A question, or a request whose leading verb a general text-generation card does."""
        text = _POLITE.sub("", clause.strip()).strip()
        words = [w.removesuffix("'s") for w in re.findall(r"[a-z']+", text.lower())]
        if not words:
            return False
        if words[0] in _QUESTION_HEAD or clause.rstrip().endswith("?"):
            return True
        head = _head(_ize(_instruction(clause)))
        return any(head and head in self.heads[i] for i in self.general())

    # -- planning -----------------------------------------------------------------------------

    def plan(self, request: str, files: Sequence[Path], name: str) -> Plan:
        from planners.embedded import split_clauses

        clauses = split_clauses(request, colon_text=True)
        draft = _Draft(request=request, sources=_request_sources(request, clauses, files))
        self.unmatched: list[str] = []
        goals = self._goals(clauses, draft.given)
        draft.unserved.extend(self.unmatched)
        if not goals:
            raise NoCapableTool(
                f"no card of the zoo does what {_said(request)} asks; the zoo's cards do: "
                f"{', '.join(self.tasks)}. Add a tool card for a model or tool that does it "
                "(README: Tool cards), or rephrase the request."
            )
        for order, clause, chain in goals:
            self._plan_clause(draft, order, clause, self._rematch(draft, order, clause, chain))
        self._cover_files(draft)
        if not draft.steps:
            raise NoCapableTool(" ".join(draft.unserved) or "nothing in the request can be done")
        return Plan(
            request=request,
            subtasks=draft.steps,
            planner=name,
            notes=draft.notes,
            unserved=draft.unserved,
        )

    def _goals(
        self, clauses: list[str], given: frozenset[str]
    ) -> list[tuple[int, str, list[list[int]]]]:
        """Each clause with what it asks: groups of equal cards, in the order they chain.

        A fragment that fits no card joins the clause before it.
        """
        goals: list[tuple[int, str, list[list[int]]]] = []
        for order, clause in enumerate(clauses):
            found = self.best(clause, given) or self._by_input(clause, given)
            if goals and not tokens(_without_refs(clause)):
                found = None  # "... and in the second image": only names an input
            if found is None and not goals and self.is_general_request(clause) and self.general():
                goals.append((order, clause, [self.general()]))
            elif found is None and goals and _acts_on_it(clause):
                self.unmatched.append(
                    f"{_said(clause)}: no card of the zoo does this (its cards do: "
                    f"{', '.join(self.tasks)}); add a tool card that does"
                )
            elif found is None and goals:
                o, previous, chain = goals[-1]
                goals[-1] = (o, f"{previous} and {clause}", chain)
            elif found is not None:
                goals.append(
                    (order, clause, [[i] for i in self._chain_in_clause(clause, found[0])])
                )
        return goals

    def _implied_kind(self, draft: _Draft, order: int, clause: str) -> str | None:
        """The kind of input the clause will read: a file it names, else the latest content."""
        kinds = _file_kinds(clause)
        if kinds:
            return sorted(kinds)[0]
        content = [s for s in draft.sources if s.order <= order and s.content and s.missing is None]
        content += [s for s in draft.made.values() if s.content]
        return _latest(content, draft).kind if content else None

    def _rematch(
        self, draft: _Draft, order: int, clause: str, chain: list[list[int]]
    ) -> list[list[int]]:
        """Match again without the words naming an earlier step's output ("the caption")."""
        nouns = {n for s in [*draft.sources, *draft.made.values()] for n in s.nouns}
        if len(chain[0]) > 1 or not draft.steps and not _file_kinds(clause):
            return chain
        cleaned = clause
        if nouns:
            pattern = (
                r"\b(?:the|this|that|its|their)\s+(?:" + "|".join(map(re.escape, nouns)) + r")s?\b"
            )
            cleaned = re.sub(pattern, " ", clause, flags=re.IGNORECASE)
        implied = self._implied_kind(draft, order, clause)
        found = self.best(cleaned, draft.given, implied)
        if found is None:
            return chain
        return [[i] for i in self._chain_in_clause(cleaned, found[0])]

    def _chain_in_clause(self, clause: str, best: int) -> list[int]:
        """The best card, and a second one its left-over words ask for, when types chain."""
        doc = set(_raw_stems(_card_document(self.entries[best].card)))
        words = _ize(_instruction(clause))
        for pattern in _TYPED_REF.values():  # "the image", "the text": inputs, not capabilities
            words = pattern.sub(" ", words)
        rest = " ".join(w for w in words.split() if stem(w.lower()) not in doc)
        if not tokens(rest):
            return [best]
        first_card = self.entries[best].card
        if _takes_prompt(first_card):
            return [best]  # "explain quantum computing": the rest is what to write about
        sims = self.index.similarities(rest)
        others = [
            k
            for k, e in enumerate(self.entries)
            if e.card.task != first_card.task
            and not _takes_prompt(e.card)  # a generator from a description is never implied
            and e.card.input_types() <= first_card.output_types()
            and not e.card.output_types() & e.card.input_types()  # changes type
        ]
        if not others:
            return [best]
        second = max(others, key=lambda k: (sims[k], -k))
        second_card = self.entries[second].card
        head = _head(_ize(_instruction(clause)))
        leads = head in self.heads[second] and head not in doc  # "say the transcript ..."
        if (
            (sims[second] >= _SECOND_CAPABILITY or (leads and sims[second] > 0))
            and second_card.task != first_card.task
            and second_card.input_types() <= first_card.output_types()
            and not second_card.output_types() & second_card.input_types()  # changes type
        ):
            return [best, second]
        return [best]

    def _plan_clause(self, draft: _Draft, order: int, clause: str, chain: list[list[int]]) -> None:
        produced: _Source | None = None
        for position, cards in enumerate(chain):
            if position and produced is None:
                return
            used_here = {
                draft.cards[s.id].name for s in draft.steps if draft.made[s.id].order == order
            }
            if position and self.entries[cards[0]].card.name in used_here:
                return  # already done on the way (a bridge)
            produced = self._step(draft, order, clause, cards, given=produced)

    def _step(
        self,
        draft: _Draft,
        order: int,
        clause: str,
        cards: list[int],
        given: _Source | None = None,
    ) -> _Source | None:
        """Add the step doing ``cards``' capability for ``clause``; its output, or None."""
        alternatives = self._alternatives(draft, clause, cards)
        card = self.entries[alternatives[0]].card
        languages = mentioned_languages(clause) if task_type(card.task).makes_content else []
        fitting = [i for i in alternatives if languages_fit(self.entries[i].card, languages)]
        runnable = [i for i in fitting if self.entries[i].available]
        if not runnable:
            reason = self._advice(clause, card, alternatives, languages)
            self._unserved(draft, order, clause, card, reason)
            return None
        planned = self.entries[alternatives[0]].card
        card = self.entries[runnable[0]].card
        args = self._inputs(draft, order, clause, card, given)
        if args is None:
            return None
        if card.task != planned.task:
            # Another capability stands in ("what does sign.png say": an image classifier for
            # the missing captioner): done, and said, so a label is not read as the answer.
            reason = self._advice(clause, planned, alternatives[:1], languages)
            draft.unserved.append(
                f"{reason} {card.name} ({task_type(card.task).description}) answered instead."
            )
        same = [
            self.entries[i].card.name for i in runnable if self.entries[i].card.task == card.task
        ]
        return self._add(draft, order, clause, card, args, cards=same)

    def _unserved(
        self, draft: _Draft, order: int, clause: str, card: ToolCard, reason: str
    ) -> None:
        """Say why a step is left out; what it would have read is accounted for by that."""
        if reason not in draft.unserved:
            draft.unserved.append(reason)
        for io in card.inputs:
            if io.optional or _takes_prompt(card):
                continue
            read = self._find(draft, order, clause, io.type)
            if read is not None:
                draft.used.add(id(read))
        primary = card.primary_output()
        draft.sources.append(
            _Source(
                primary.type,
                TextArg(value=""),
                order,
                f"the {_output_noun(card)}",
                missing=reason,
                nouns=_nouns(card),
            )
        )

    def _alternatives(self, draft: _Draft, clause: str, cards: list[int]) -> list[int]:
        """The planned card(s) first, then those that may stand in for them.

        Cards of the same task that say they do it nearly as well are the step's fallbacks
        (a run retries on them when the first fails); when none of those can run, cards of
        another task that read and make the same types and fit the clause nearly as well
        stand in ("what's in this picture": an image classifier when the captioner is missing).
        """
        ranked = sorted(cards, key=lambda i: (not self.entries[i].available, i))
        if len(cards) > 1:
            return ranked
        best = self.entries[cards[0]].card
        scores = self.scores(clause, draft.given)
        own = self.own.similarities(_ize(_instruction(clause)))
        same_task = [  # a card of the same task that says it does this as well as the best one
            i
            for i, e in enumerate(self.entries)
            if e.available
            and i not in ranked
            and e.card.task == best.task
            and own[i] >= _NEAR_BEST * own[cards[0]] > 0
            and scores[i] >= _NEAR_BEST * scores[cards[0]]
        ]
        if self.entries[cards[0]].available:
            # What a run may retry on: a card of the same task whose own words cover the
            # clause as well (another sentiment model, not the language identifier).
            covered = self.coverage(_without_refs(clause), own=True)
            fallbacks = [
                i
                for i, e in enumerate(self.entries)
                if e.available
                and i not in ranked
                and e.card.task == best.task
                and covered[i] >= max(_MIN_COVERAGE, _NEAR_BEST * covered[cards[0]])
            ]
            return [*ranked, *sorted(fallbacks, key=lambda i: -scores[i])]
        if _takes_prompt(best):  # general models of one task stand in for each other
            ranked += [
                i
                for i in self.general()
                if i not in ranked
                and _takes_prompt(self.entries[i].card)
                and self.entries[i].card.task == best.task
            ]
        ranked += sorted((i for i in same_task if i not in ranked), key=lambda i: -scores[i])
        signature = (best.input_types(), best.primary_output().type)
        near = [
            i
            for i, e in enumerate(self.entries)
            if e.available
            and e.card.task != best.task
            and (e.card.input_types(), e.card.primary_output().type) == signature
            and scores[i] >= _SAME_SIGNATURE * scores[cards[0]] > 0
        ]
        return [*ranked, *sorted(near, key=lambda i: -scores[i])]

    def _advice(
        self, clause: str, card: ToolCard, alternatives: list[int], languages: list[str]
    ) -> str:
        """The unserved note: the capability, the cards that would do it, how to get one."""
        entries = [self.entries[i] for i in alternatives]
        keys = [
            stem(w)[:6]
            for w in card.task.split("-")
            if w not in ("to", "text", "image", "audio", "speech", "json")
        ]
        others = [
            e
            for e in self.entries
            if e.card.task != card.task
            and e not in entries
            and _takes_prompt(e.card)
            and keys
            and any(t.startswith(k) for k in keys for t in _raw_stems(_own_document(e.card)))
        ]
        return missing_advice(clause, card.task, entries, languages, others)

    # -- inputs -------------------------------------------------------------------------------

    def _inputs(
        self, draft: _Draft, order: int, clause: str, card: ToolCard, given: _Source | None
    ) -> dict[str, Arg] | None:
        args: dict[str, Arg] = {}
        for io in card.inputs:
            if io.optional or io.type in args:
                continue
            if io.type == "text" and io.name in _PROMPT_INPUTS and given is None:
                context = self._context(draft, order, clause)
                if context is not None:  # "write a reply to the text in note.png"
                    args["text"] = ComposeArg(steps=[context], prompt=_prompt(clause))
                    continue
                # The clause is the instruction; the texts it quotes are part of it.
                for source in draft.sources:
                    if isinstance(source.arg, TextArg) and source.arg.value in clause:
                        draft.used.add(id(source))
                args["text"] = TextArg(value=_prompt(clause))
                continue
            source = given or self._find(draft, order, clause, io.type)
            if source is None:
                source = self._generated(draft, order, clause, io.type, card)
            if source is None:
                raise PlanError(_no_input(clause, io.type, card))
            if source.missing is not None:
                self._unserved(
                    draft,
                    order,
                    clause,
                    card,
                    f"{_said(clause)} needs {source.name}, which cannot be made here (see above)",
                )
                return None
            source = self._bridge(draft, order, clause, source, io.type)
            if source is None:
                return None
            draft.used.add(id(source))
            args[io.type] = source.arg
        return args

    def _context(self, draft: _Draft, order: int, clause: str) -> str | None:
        """The step whose text a generator's clause is about, made text first if need be.

        A file the clause names (the text in an image, a recording's transcript), or what an
        earlier step made when the clause refers to it ("... and write a reply to it"). A
        quoted text stays in the prompt itself; None when the clause reads nothing.
        """
        source = None
        if any(s.path is not None and s.path in clause for s in draft.sources):
            source = self._explicit(draft, clause, "text")
        elif draft.made and (
            _PRONOUN.search(clause) or any(p.search(clause) for p in _TYPED_REF.values())
        ):
            source = self._find(draft, order, clause, "text")
        if (
            source is None
            or source.missing is not None
            or source.path is None
            and not isinstance(source.arg, RefArg)
        ):
            return None
        if isinstance(source.arg, FileArg) and source.kind == "text":
            return None  # a text file is read as the prompt's own text (see _inputs)
        made = self._bridge(draft, order, clause, source, "text")
        if made is None or not isinstance(made.arg, RefArg):
            return None
        draft.used.add(id(source))
        return made.arg.step

    def _explicit(self, draft: _Draft, clause: str, kind: str) -> _Source | None:
        """A source named in the clause itself: a file, or a quoted text."""
        from planners.embedded import quoted_text

        named = [s for s in draft.sources if s.path is not None and s.path in clause]
        if named:
            exact = [s for s in named if s.kind == kind and id(s) not in draft.used]
            return (exact or [s for s in named if id(s) not in draft.used] or named)[0]
        if kind != "text" and any(s.kind == kind and s.missing is None for s in draft.sources):
            return None  # a quoted text is not the audio or image the request has
        quoted = quoted_text(clause)
        if quoted is not None:
            for source in draft.sources:
                if isinstance(source.arg, TextArg) and source.arg.value == quoted:
                    return source
        colon = _after_colon(clause)
        for source in draft.sources:
            if colon and isinstance(source.arg, TextArg) and source.arg.value == colon:
                return source
        return None

    def _find(self, draft: _Draft, order: int, clause: str, kind: str) -> _Source | None:
        """The source the clause reads as its ``kind`` input."""
        from planners.embedded import ANSWER_REF

        explicit = self._explicit(draft, clause, kind)
        if explicit is not None:
            return explicit
        if kind == "text" and ANSWER_REF.search(clause) and draft.steps:
            return _Source(
                "text", ComposeArg(steps=[s.id for s in draft.steps]), order, "the answer"
            )
        earlier = [s for s in draft.sources if s.order <= order and s.content]
        made = [s for s in draft.made.values() if s.content]
        for wanted, pattern in _TYPED_REF.items():
            typed = [s for s in [*earlier, *made] if s.kind == wanted]
            if typed and pattern.search(clause):
                fresh = [s for s in typed if s.path is not None and id(s) not in draft.used]
                return fresh[0] if fresh else _latest(typed, draft)
        unused = [s for s in earlier if id(s) not in draft.used and s.kind == kind]
        if unused and not (made and _PRONOUN.search(clause)):
            return unused[0]
        candidates = [s for s in [*earlier, *made] if s.kind == kind]
        labels = [
            s for s in draft.made.values() if s.kind == kind and not s.content and s.order < order
        ]
        if not candidates and labels and _PRONOUN.search(clause):
            # "What animal is in cat.png? Say it out loud": the answer so far, not the photo
            # made into text by a card that reads printed text.
            return _latest(labels, draft)
        candidates = candidates or [*earlier, *made]
        if not candidates:
            return None
        return _latest(candidates, draft)

    def _generated(
        self, draft: _Draft, order: int, clause: str, kind: str, card: ToolCard
    ) -> _Source | None:
        """Text to read aloud (or to work on) that the request asks to be written first."""
        if kind != "text" or not task_type(card.task).makes_content:
            return None
        general = [i for i in self.general() if self.entries[i].available]
        if not general:
            return None
        writer = self.entries[general[0]].card
        return self._add(draft, order, clause, writer, {"text": TextArg(value=_prompt(clause))})

    def _bridge(
        self, draft: _Draft, order: int, clause: str, source: _Source, kind: str
    ) -> _Source | None:
        """``source`` converted to ``kind`` by the best-fitting card path (one or two steps)."""
        if source.kind == kind or (kind == "text" and source.kind == "json"):
            return source
        if kind == "text" and not source.content and source.kind in ("text", "json"):
            return source
        path = self.bridge_path(clause, source.kind, kind)
        if path is None:
            draft.unserved.append(
                f"{_said(clause)} needs {kind} but was given {source.kind} ({source.name}), and no "
                f"card of the zoo turns {source.kind} into {kind}; add a card that does"
            )
            draft.used.add(id(source))
            return None
        current = source
        for i in path:
            entry = self.entries[i]
            if not entry.available:
                draft.unserved.append(self._advice(clause, entry.card, [i], []))
                draft.used.add(id(source))
                return None
            draft.used.add(id(current))
            made = self._add(
                draft,
                order,
                _bridge_instruction(entry.card, current),
                entry.card,
                {current.kind: current.arg},
            )
            made.name = f"the {_output_noun(entry.card)} of {current.name}"
            current = made
        return current

    def bridge_path(self, clause: str, start: str, goal: str) -> list[int] | None:
        sims = self.own.similarities(_ize(_instruction(clause)))
        usable = [
            i
            for i, e in enumerate(self.entries)
            if len(e.card.input_types()) == 1 and not _takes_prompt(e.card)
        ]

        def score(path: list[int]) -> tuple[float, int]:
            avail = sum(1 for i in path if self.entries[i].available)
            # Text to work on is content (what an image says), not a label about it.
            content = task_type(self.entries[path[-1]].card.task).makes_content
            fit = sum(sims[i] for i in path) + 0.5 * avail / len(path) + 0.3 * content
            return (fit, -len(path))

        paths: list[list[int]] = []
        for i in usable:
            card = self.entries[i].card
            if card.input_types() != {start}:
                continue
            if goal in card.output_types():
                paths.append([i])
                continue
            for j in usable:
                nxt = self.entries[j].card
                if nxt.input_types() <= card.output_types() and goal in nxt.output_types():
                    paths.append([i, j])
        if not paths:
            return None
        one_step = [p for p in paths if len(p) == 1]
        return max(one_step or paths, key=score)

    def _add(
        self,
        draft: _Draft,
        order: int,
        instruction: str,
        card: ToolCard,
        args: dict[str, Arg],
        cards: list[str] | None = None,
    ) -> _Source:
        """Add a step (or reuse the same one) and return its output as a source."""
        for step in draft.steps:
            if draft.cards[step.id].name == card.name and step.args == args:
                return draft.made[step.id]
        deps = sorted(
            {a.step for a in args.values() if isinstance(a, RefArg)}
            | {s for a in args.values() if isinstance(a, ComposeArg) for s in a.steps},
            key=lambda s: int(s[1:]),
        )
        step = Subtask(
            id=draft.new_id(),
            task=card.task,
            instruction=instruction,
            deps=deps,
            args=args,
            cards=cards or [card.name],
        )
        draft.steps.append(step)
        draft.cards[step.id] = card
        primary = card.primary_output()
        made = _Source(
            kind=primary.type,
            arg=RefArg(step=step.id),
            order=order,
            name=f"the {_output_noun(card)}",
            content=task_type(card.task).makes_content,
            nouns=_nouns(card),
        )
        draft.made[step.id] = made
        return made

    def _cover_files(self, draft: _Draft) -> None:
        """Give each input no step reads a step like the one reading its kind, or a note.

        A second image, a second text to compare; else the answer says it was not read.
        """
        for source in list(draft.sources):
            quoted = isinstance(source.arg, TextArg) and source.missing is None
            if id(source) in draft.used or not (source.path is not None or quoted):
                continue
            twin = self._twin(draft, source)
            if twin is None and source.path is not None and self._again(draft, source):
                continue
            if twin is None:
                what = Path(source.path).name if source.path else source.name
                draft.unserved.append(
                    f"{what} was given but no step reads it; ask about it on its own"
                )
                draft.notes.append(f"{what} was given but no step reads it")
                continue
            self._add(
                draft,
                source.order,
                twin.instruction,
                draft.cards[twin.id],
                {**twin.args, source.kind: source.arg},
            )
            draft.used.add(id(source))

    def _again(self, draft: _Draft, source: _Source) -> bool:
        """Plan the clause that read a file of this kind again, for this file.

        "Which language are these in": the text of each image, and its language.
        """
        reader = next(
            (s for s in draft.steps if isinstance(s.args.get(source.kind), FileArg)), None
        )
        if reader is None:
            return False
        final = reader
        while True:
            consumer = next((s for s in draft.steps if final.id in s.referenced_steps()), None)
            if consumer is None:
                break
            final = consumer
        assert source.path is not None
        before = len(draft.steps)
        self._plan_clause(
            draft,
            source.order,
            f"{final.instruction} {source.path}",
            [[self._index(draft.cards[final.id])]],
        )
        draft.used.add(id(source))
        return len(draft.steps) > before

    def _index(self, card: ToolCard) -> int:
        return next(i for i, e in enumerate(self.entries) if e.card.name == card.name)

    def _twin(self, draft: _Draft, source: _Source) -> Subtask | None:
        """A step that reads a request input of the same kind and feeds no other step."""
        fed = {d for s in draft.steps for d in s.referenced_steps()}
        for step in draft.steps:
            arg = step.args.get(source.kind)
            same = isinstance(arg, FileArg) if source.path else isinstance(arg, TextArg)
            if same and step.id not in fed and not _takes_prompt(draft.cards[step.id]):
                return step
        return None


# -- helpers ------------------------------------------------------------------------------------


def _card_document(card: ToolCard) -> str:
    return " ".join([task_type(card.task).description, _own_document(card)])


def _own_document(card: ToolCard) -> str:
    """The card's description, tags, and the probe instructions its profile shows it does."""
    done = [p.instruction for p in card.profile.probes if p.score >= 0.5] if card.profile else []
    text = " ".join([card.description, " ".join(t.replace("-", " ") for t in card.tags), *done])
    return _ize(text)


_ISE = re.compile(r"\b(\w{4,})is(e|es|ed|ing|ation|ations|er|ers)\b", re.IGNORECASE)


def _ize(text: str) -> str:
    """British spelling as American ("summarises" as "summarizes"), so both match."""
    return _ISE.sub(r"\1iz\2", text)


def _instruction(clause: str) -> str:
    """The clause's instruction words: no quoted texts, file names or text after a colon."""
    from planners.embedded import instruction_words

    colon = _after_colon(clause)
    if colon:
        clause = clause[: clause.rindex(colon)]
    return instruction_words(clause)


def _raw_stems(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def _head(text: str) -> str:
    words = re.findall(r"[a-z']+", _POLITE.sub("", text.strip()).lower())
    return stem(words[0]) if words else ""


def _file_kinds(clause: str) -> set[str]:
    from planners.embedded import file_type, mentioned_files

    return {k for k in (file_type(f) for f in mentioned_files(clause)) if k}


_DESCRIPTION = re.compile(
    r"\b(?:of|about|showing|depicting|featuring|where|in\s+which|that\s+shows?)\b", re.IGNORECASE
)


def _before_description(text: str) -> str:
    """The words asking for something, without what it should show or say.

    "make me a picture of a red fox at dawn" -> "make me a picture"; with no such word, the
    first three words ("draw a cat" wearing a hat).
    """
    found = _DESCRIPTION.search(text)
    if found and tokens(text[: found.start()]):
        return text[: found.start()]
    return " ".join(text.split()[:3])


def _takes_prompt(card: ToolCard) -> bool:
    return any(io.name in _PROMPT_INPUTS for io in card.inputs if not io.optional)


def _prompt(clause: str) -> str:
    return _POLITE.sub("", clause.strip()).strip() or clause.strip()


def _latest(sources: list[_Source], draft: _Draft) -> _Source:
    """The latest source: by clause, then steps after request inputs, then later steps."""
    steps = [s.arg.step for s in draft.made.values()]

    def key(s: _Source) -> tuple[int, int, int]:
        if isinstance(s.arg, RefArg):
            return (s.order, 1, steps.index(s.arg.step))
        return (s.order, 0, 0)

    return max(sources, key=key)


def _answer_steps(draft: _Draft) -> list[str]:
    """The steps whose results make up the answer so far (those no other step reads)."""
    fed = {d for s in draft.steps for d in s.referenced_steps()}
    return [s.id for s in draft.steps if s.id not in fed] or [draft.steps[-1].id]


def _output_noun(card: ToolCard) -> str:
    label = card.result_label or task_type(card.task).label
    return label.lower()


def _without_refs(clause: str) -> str:
    """The clause's instruction words without the inputs it names ("the second image")."""
    words = _ize(_instruction(clause))
    for pattern in _TYPED_REF.values():
        words = pattern.sub(" ", words)
    return words


_ACTS_ON_IT = re.compile(r"^\s*[a-z]+\s+(?:it|them|this|that|these|those)\b", re.IGNORECASE)


def _acts_on_it(clause: str) -> bool:
    """An action on an earlier result ("email it to Bob"), not a fragment of the clause before."""
    return bool(_ACTS_ON_IT.match(_POLITE.sub("", clause))) and bool(tokens(_without_refs(clause)))


def _said(clause: str) -> str:
    """A clause quoted in a message (typographic quotes: a message's own quotes stay paired)."""
    return "“" + clause.replace("'", "’") + "”"


def _nouns(card: ToolCard) -> tuple[str, ...]:
    """What people call a card's result: its output's name, its label ("transcript")."""
    primary = card.primary_output()
    names = {primary.name.replace("_", " ").lower(), _output_noun(card)}
    return tuple(sorted(n for n in names if n and n not in ("text", "label", "output")))


def _bridge_instruction(card: ToolCard, source: _Source) -> str:
    first = re.split(r"[.:(;]", card.description, maxsplit=1)[0].strip()
    return f"{first}: {source.name}"


def _no_input(clause: str, kind: str, card: ToolCard) -> str:
    if kind == "text":
        return (
            f"{_said(clause)} needs a text for {card.task}: put the text in quotes, after a colon, "
            "or attach it as a .txt file"
        )
    example = "speech.wav" if kind == "audio" else "photo.png"
    return (
        f"{_said(clause)} needs an {kind} input for {card.task}: name an {kind} file in the "
        "request "
        f"(e.g. {example}) or attach one"
    )


def _request_sources(request: str, clauses: list[str], files: Sequence[Path]) -> list[_Source]:
    """The request's own inputs: quoted texts, named and attached files, text after a colon."""
    from planners.embedded import QUOTED, QUOTED_FILE, file_type, mentioned_files

    sources: list[_Source] = []
    seen: set[str] = set()
    for order, clause in enumerate(clauses):
        for path in mentioned_files(clause):
            kind = file_type(path)
            if kind and path not in seen:
                seen.add(path)
                sources.append(_Source(kind, FileArg(path=path), order, Path(path).name, path=path))
        for match in QUOTED.finditer(QUOTED_FILE.sub(" ", clause)):
            text = match.group(1) or match.group(2)
            if text.strip():
                sources.append(_Source("text", TextArg(value=text), order, _short_quote(text)))
        colon = _after_colon(clause)
        if colon:
            sources.append(_Source("text", TextArg(value=colon), order, _short_quote(colon)))
    for path in files:
        kind = file_type(str(path))
        if kind and not any(_same_file(path, named) for named in seen):
            seen.add(str(path))
            sources.append(_Source(kind, FileArg(path=str(path)), -1, path.name, path=str(path)))
    return sources


def _same_file(given: Path, named: str) -> bool:
    """Whether an attached file is the one the request names ("cat.png" and /in/cat.png)."""
    parts = Path(named).parts
    return bool(parts) and given.parts[-len(parts) :] == parts


_COLON_TEXT = re.compile(r"^[^:\"'“]{3,80}:\s*(\S.*)$", re.DOTALL)


def _after_colon(clause: str) -> str | None:
    from planners.embedded import QUOTED

    if QUOTED.search(clause):
        return None
    found = _COLON_TEXT.match(clause.strip())
    return found.group(1).strip() if found else None


def _short_quote(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return f"'{flat}'" if len(flat) <= limit else f"'{flat[: limit - 3]}...'"
