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

import re
from collections.abc import Sequence
from pathlib import Path

from orchestrator.cards import ToolCard
from orchestrator.cards.tasks import task_type
from orchestrator.errors import MissingInput, NoCapableTool
from orchestrator.plan import Arg, ComposeArg, FileArg, Plan, RefArg, Subtask, TextArg
from orchestrator.planning import advice
from orchestrator.planning import card_match as cm
from orchestrator.planning import plan_words as pw
from orchestrator.planning.advice import languages_fit, mentioned_languages, missing_advice
from orchestrator.planning.card_match import CardMatcher
from orchestrator.text import stem, tokens

__all__ = ["ZooPlanner"]


class ZooPlanner(CardMatcher):
    """Plans over one zoo; built once per zoo (the card index) and reused."""

    # -- planning -----------------------------------------------------------------------------

    def plan(self, request: str, files: Sequence[Path], name: str) -> Plan:
        from orchestrator.planning.embedded import split_clauses

        split = pw.lend_input(split_clauses(request, colon_text=True))
        clauses = [c for clause in split for c in advice.asked_steps(clause)]
        draft = pw.Draft(request=request, sources=pw.request_sources(request, clauses, files))
        self.unmatched: list[str] = []
        goals = self._goals(clauses, draft.given)
        draft.unserved.extend(self.unmatched)
        if not goals and len(self.unmatched) == 1 and len(clauses) == 1:
            raise NoCapableTool(f"{self.unmatched[0]}. Or rephrase the request.")
        if not goals:
            raise NoCapableTool(
                f"no card of the zoo does what {pw.said(request)} asks; the zoo's cards do: "
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
            first = not goals
            if why := self.beyond(clause, given, first):
                self.unmatched.append(why)
                continue
            found = self.best(clause, given, first=first) or self._by_input(clause, given, first)
            if goals and not tokens(pw.without_refs(clause)):
                found = None  # "... and in the second image": only names an input
            elif goals and pw.STARTS_WITH_INPUT.match(clause):
                # "read sign.png and fr.png aloud": what follows the second input is asked of
                # both, when the whole fits a card.
                o, previous, _ = goals[-1]
                joined = f"{previous} and {clause}"
                whole = self.best(joined, given, first=len(goals) == 1)
                if whole is not None:
                    goals[-1] = (o, joined, [[i] for i in self.chain_in_clause(joined, whole[0])])
                    continue
            if found is None and (why := self.unanswered(clause, given, first)):
                self.unmatched.append(why)
            elif found is None and not goals and self.is_general_request(clause) and self.general():
                goals.append((order, clause, [self.general()]))
            elif found is None and goals and pw.acts_on_it(clause):
                self.unmatched.append(
                    f"{pw.said(clause)}: no card of the zoo does this (its cards do: "
                    f"{', '.join(self.tasks)}); add a tool card that does"
                )
            elif found is None and goals:
                o, previous, chain = goals[-1]
                joined = f"{previous} and {clause}"
                if len(chain[0]) == 1:  # a group of equal cards is kept as it is
                    chain = [[i] for i in self.chain_in_clause(joined, chain[0][0])]
                goals[-1] = (o, joined, chain)
            elif found is not None:
                goals.append((order, clause, [[i] for i in self.chain_in_clause(clause, found[0])]))
        return goals

    def _implied_kind(self, draft: pw.Draft, order: int, clause: str) -> str | None:
        """The kind of input the clause will read: a file it names, else the latest content."""
        kinds = pw.file_kinds(clause)
        if kinds:
            return sorted(kinds)[0]
        content = [s for s in draft.sources if s.order <= order and s.content and s.missing is None]
        content += [s for s in draft.made.values() if s.content]
        return pw.latest(content, draft).kind if content else None

    def _rematch(
        self, draft: pw.Draft, order: int, clause: str, chain: list[list[int]]
    ) -> list[list[int]]:
        """Match again without the words naming an earlier step's output ("the caption")."""
        nouns = {n for s in [*draft.sources, *draft.made.values()] for n in s.nouns}
        if len(chain[0]) > 1 or not draft.steps and not pw.file_kinds(clause):
            return chain
        cleaned = clause
        if nouns:
            pattern = (
                r"\b(?:the|this|that|its|their)\s+(?:" + "|".join(map(re.escape, nouns)) + r")s?\b"
            )
            cleaned = re.sub(pattern, " ", clause, flags=re.IGNORECASE)
        implied = self._implied_kind(draft, order, clause)
        found = self.best(cleaned, draft.given, implied, first=not draft.steps)
        if found is None:
            return chain
        return [[i] for i in self.chain_in_clause(cleaned, found[0])]

    def _plan_clause(
        self, draft: pw.Draft, order: int, clause: str, chain: list[list[int]]
    ) -> None:
        produced: pw.Source | None = None
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
        draft: pw.Draft,
        order: int,
        clause: str,
        cards: list[int],
        given: pw.Source | None = None,
    ) -> pw.Source | None:
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
        self, draft: pw.Draft, order: int, clause: str, card: ToolCard, reason: str
    ) -> None:
        """Say why a step is left out; what it would have read is accounted for by that."""
        if reason not in draft.unserved:
            draft.unserved.append(reason)
        for io in card.inputs:
            if io.optional or pw.takes_prompt(card):
                continue
            read = self._find(draft, order, clause, io.type)
            if read is not None:
                draft.used.add(id(read))
        primary = card.primary_output()
        draft.sources.append(
            pw.Source(
                primary.type,
                TextArg(value=""),
                order,
                f"the {pw.output_noun(card)}",
                missing=reason,
                nouns=pw.nouns(card),
            )
        )

    def _alternatives(self, draft: pw.Draft, clause: str, cards: list[int]) -> list[int]:
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
        own = self.own.similarities(tokens(pw.ize(pw.instruction(clause))))
        same_task = [  # a card of the same task that says it does this as well as the best one
            i
            for i, e in enumerate(self.entries)
            if e.available
            and i not in ranked
            and e.card.task == best.task
            and own[i] >= cm.NEAR_BEST * own[cards[0]] > 0
            and scores[i] >= cm.NEAR_BEST * scores[cards[0]]
        ]
        if self.entries[cards[0]].available:
            # What a run may retry on: a card of the same task whose own words cover the
            # clause as well (another sentiment model, not the language identifier).
            covered = self.coverage(pw.without_refs(clause), own=True)
            fallbacks = [
                i
                for i, e in enumerate(self.entries)
                if e.available
                and i not in ranked
                and e.card.task == best.task
                and covered[i] >= max(cm.MIN_COVERAGE, cm.NEAR_BEST * covered[cards[0]])
            ]
            return [*ranked, *sorted(fallbacks, key=lambda i: -scores[i])]
        if pw.takes_prompt(best):  # general models of one task stand in for each other
            ranked += [
                i
                for i in self.general()
                if i not in ranked
                and pw.takes_prompt(self.entries[i].card)
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
            and scores[i] >= cm.SAME_SIGNATURE * scores[cards[0]] > 0
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
            and pw.takes_prompt(e.card)
            and keys
            and any(t.startswith(k) for k in keys for t in pw.raw_stems(pw.own_document(e.card)))
        ]
        return missing_advice(clause, card.task, entries, languages, others)

    # -- inputs -------------------------------------------------------------------------------

    def _inputs(
        self, draft: pw.Draft, order: int, clause: str, card: ToolCard, given: pw.Source | None
    ) -> dict[str, Arg] | None:
        args: dict[str, Arg] = {}
        for io in card.inputs:
            if io.optional or io.type in args:
                continue
            if io.type == "text" and io.name in pw.PROMPT_INPUTS and given is None:
                context = self._context(draft, order, clause)
                if context is not None:  # "write a reply to the text in note.png"
                    args["text"] = ComposeArg(steps=[context], prompt=pw.prompt(clause))
                    continue
                # The clause is the instruction; the texts it quotes are part of it.
                for source in draft.sources:
                    if isinstance(source.arg, TextArg) and source.arg.value in clause:
                        draft.used.add(id(source))
                args["text"] = TextArg(value=pw.prompt(clause))
                continue
            source = given or self._find(draft, order, clause, io.type)
            if source is None:
                source = self._generated(draft, order, clause, io.type, card)
            if source is None:
                raise MissingInput(pw.no_input(clause, io.type, card), io.type)
            if source.missing is not None:
                self._unserved(
                    draft,
                    order,
                    clause,
                    card,
                    f"{pw.said(clause)} needs {source.name}, which cannot be made here (see above)",
                )
                return None
            source = self._bridge(draft, order, clause, source, io.type, card.output_types())
            if source is None:
                return None
            draft.used.add(id(source))
            args[io.type] = source.arg
        return args

    def _context(self, draft: pw.Draft, order: int, clause: str) -> str | None:
        """The step whose text a generator's clause is about, made text first if need be.

        A file the clause names (the text in an image, a recording's transcript), or what an
        earlier step made when the clause refers to it ("... and write a reply to it"). A
        quoted text stays in the prompt itself; None when the clause reads nothing.
        """
        source = None
        if any(s.path is not None and s.path in clause for s in draft.sources):
            source = self._explicit(draft, clause, "text")
        elif draft.made and (
            pw.PRONOUN.search(clause) or any(p.search(clause) for p in pw.TYPED_REF.values())
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

    def _explicit(self, draft: pw.Draft, clause: str, kind: str) -> pw.Source | None:
        """A source named in the clause itself: a file, or a quoted text."""
        from orchestrator.planning.embedded import quoted_text

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
        colon = pw.after_colon(clause)
        for source in draft.sources:
            if colon and isinstance(source.arg, TextArg) and source.arg.value == colon:
                return source
        return None

    def _find(self, draft: pw.Draft, order: int, clause: str, kind: str) -> pw.Source | None:
        """The source the clause reads as its ``kind`` input."""
        from orchestrator.planning.embedded import ANSWER_REF

        explicit = self._explicit(draft, clause, kind)
        if explicit is not None:
            return explicit
        if kind == "text" and ANSWER_REF.search(clause) and draft.steps:
            return pw.Source(
                "text", ComposeArg(steps=[s.id for s in draft.steps]), order, "the answer"
            )
        earlier = [s for s in draft.sources if s.order <= order and s.content]
        made = [s for s in draft.made.values() if s.content]
        for wanted, pattern in pw.TYPED_REF.items():
            typed = [s for s in [*earlier, *made] if s.kind == wanted]
            if typed and pattern.search(clause):
                fresh = [s for s in typed if s.path is not None and id(s) not in draft.used]
                return fresh[0] if fresh else pw.latest(typed, draft)
        unused = [s for s in earlier if id(s) not in draft.used and s.kind == kind]
        if unused and not (made and pw.PRONOUN.search(clause)):
            return unused[0]
        candidates = [s for s in [*earlier, *made] if s.kind == kind]
        labels = [
            s for s in draft.made.values() if s.kind == kind and not s.content and s.order < order
        ]
        if not candidates and labels and pw.PRONOUN.search(clause):
            # "What animal is in cat.png? Say it out loud": the answer so far, not the photo
            # made into text by a card that reads printed text.
            return pw.latest(labels, draft)
        candidates = candidates or [*earlier, *made]
        if not candidates:
            return None
        return pw.latest(candidates, draft)

    def _generated(
        self, draft: pw.Draft, order: int, clause: str, kind: str, card: ToolCard
    ) -> pw.Source | None:
        """Text to read aloud (or to work on) that the request asks to be written first."""
        if kind != "text" or not task_type(card.task).makes_content:
            return None
        general = [i for i in self.general() if self.entries[i].available]
        if not general:
            return None
        writer = self.entries[general[0]].card
        return self._add(draft, order, clause, writer, {"text": TextArg(value=pw.prompt(clause))})

    def _bridge(
        self,
        draft: pw.Draft,
        order: int,
        clause: str,
        source: pw.Source,
        kind: str,
        then: frozenset[str] = frozenset(),
    ) -> pw.Source | None:
        """``source`` converted to ``kind`` by the best-fitting card path (one or two steps).

        ``then``: what the card fed by the path makes. A path that makes it on the way, or
        whose card makes the kind the path starts from, is a round trip ("transcribe cat.png":
        its label spoken, then transcribed; "count the words in notes.txt": the text spoken,
        then transcribed), never a bridge.
        """
        if source.kind == kind or (kind == "text" and source.kind == "json"):
            return source
        if kind == "text" and not source.content and source.kind in ("text", "json"):
            return source
        path = self.bridge_path(clause, source.kind, kind)
        if path is not None and self.round_trip(clause, path, source.kind, then):
            draft.unserved.append(
                f"{pw.said(clause)} needs {kind} but was given {source.kind} ({source.name}); "
                f"making {kind} of it only to read it back would be a round trip, not an "
                f"answer: give {'an' if kind[0] in 'aeiou' else 'a'} {kind} input, or ask for what "
                "the zoo's cards do"
            )
            draft.used.add(id(source))
            return None
        if path is None:
            draft.unserved.append(
                f"{pw.said(clause)} needs {kind} but was given {source.kind} ({source.name}), "
                f"and no card of the zoo turns {source.kind} into {kind}; add a card that does"
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
                pw.bridge_instruction(entry.card, current),
                entry.card,
                {current.kind: current.arg},
            )
            made.name = f"the {pw.output_noun(entry.card)} of {current.name}"
            current = made
        return current

    def _add(
        self,
        draft: pw.Draft,
        order: int,
        instruction: str,
        card: ToolCard,
        args: dict[str, Arg],
        cards: list[str] | None = None,
    ) -> pw.Source:
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
        made = pw.Source(
            kind=primary.type,
            arg=RefArg(step=step.id),
            order=order,
            name=f"the {pw.output_noun(card)}",
            content=task_type(card.task).makes_content,
            nouns=pw.nouns(card),
        )
        draft.made[step.id] = made
        return made

    def _cover_files(self, draft: pw.Draft) -> None:
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
                draft.unserved.append(f"{what} {pw.UNREAD}; ask about it on its own")
                draft.notes.append(f"{what} {pw.UNREAD}")
                continue
            self._add(
                draft,
                source.order,
                twin.instruction,
                draft.cards[twin.id],
                {**twin.args, source.kind: source.arg},
            )
            draft.used.add(id(source))

    def _again(self, draft: pw.Draft, source: pw.Source) -> bool:
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

    def _twin(self, draft: pw.Draft, source: pw.Source) -> Subtask | None:
        """A step that reads a request input of the same kind and feeds no other step."""
        fed = {d for s in draft.steps for d in s.referenced_steps()}
        for step in draft.steps:
            arg = step.args.get(source.kind)
            same = isinstance(arg, FileArg) if source.path else isinstance(arg, TextArg)
            if same and step.id not in fed and not pw.takes_prompt(draft.cards[step.id]):
                return step
        return None
