"""Matching a clause to the zoo's cards: which card's words fit what the clause asks.

A card fits when its documents cover enough of the clause's instruction (a card making
something from a description is asked by the words before the description), scored by TF-IDF
over the card with its task and over its own words alone, with bonuses for the clause's leading
verb and for a card reading the kind of input the clause names.
"""

from __future__ import annotations

import re

from orchestrator.cards import ToolCard
from orchestrator.cards.tasks import task_type
from orchestrator.cards.zoo import Zoo, ZooEntry
from orchestrator.errors import NoCapableTool
from orchestrator.planning import plan_words as pw
from orchestrator.planning.advice import as_language_question
from orchestrator.text import LexicalIndex, stem, tokens

__all__ = ["CardMatcher"]

MIN_SIMILARITY = 0.08
MIN_COVERAGE = 0.3  # the share of a clause's instruction words a fitting card's document has
SECOND_CAPABILITY = 0.2  # what a clause's left-over words must match to add a second step
HEAD_BONUS = 0.12  # the clause's leading verb is in the card's document
OBJECT_BONUS = 0.12  # so is the noun it asks for by name ("compare the sentiment of")
FILE_KIND_BONUS = 0.15
ABSENT_MEDIA = 0.8  # a card reading an image or audio the request does not give
NEAR_BEST = 0.8  # a card of the same task this close to a missing one may stand in
SAME_SIGNATURE = 0.5  # a card of another task this close to a missing one may stand in


# Words of a question that ask what an input shows or says, not for a capability of its own.
ASKING = frozenset(
    tokens(
        "what whats who where which how anything everything something thing things stuff "
        "going happening happens show shows shown showing say says saying said see seen look "
        "looks looking like contain contains containing depict depicts depicted describe "
        "described inside there here exactly actually really basically quick quickly guess "
        "think mean means picture pictured photo image file kind sort type"
    )
    + [w for w in pw.QUESTION_HEAD]
)

# What a question about a photo or recording may ask that detectors and classifiers do not say
# (a face detector finds a face, not whose it is): the asking words, what is asked, and the words
# of a card that would answer it.
MEDIA = frozenset({"image", "audio"})
BEYOND_READING = (
    (
        re.compile(
            r"^\W*(?:who|whose|whom)\b|\bwho(?:'s|\s+is|\s+are|\s+was)\b|\bname of (?:the |"
            r"this |that )?(?:person|guy|man|woman|girl|boy|kid|lady|people|speaker)\b",
            re.IGNORECASE,
        ),
        "who someone is",
        re.compile(
            r"\bwho\b|\bidentit|\bface recogni|\bcelebrit|\bspeaker (?:identifi|recogni|verifi)",
            re.IGNORECASE,
        ),
        MEDIA,
    ),
    (
        re.compile(r"\bhow old\b|\bwhat age\b|\bage of\b", re.IGNORECASE),
        "how old someone is",
        re.compile(r"\bages?\b|\bhow old\b", re.IGNORECASE),
        MEDIA,
    ),
    (
        re.compile(r"\bhow long\b|\bduration\b|\blength of\b", re.IGNORECASE),
        "how long it lasts",
        re.compile(r"\bduration|\blength of (?:an? |the )?(?:audio|recording)", re.IGNORECASE),
        MEDIA,
    ),
    (  # a recording's mood is its transcript's; a photo's, unless its text is asked of
        re.compile(
            r"^(?!.*\b(?:text|words?|writing|written|says?|message|sign|letter)\b).*"
            r"(?:\bsmil|\bfeel|\bemotion|\bexpression|\bmood\b|\bangry\b|\bsad\b)",
            re.IGNORECASE,
        ),
        "how someone feels",
        re.compile(r"\bemotion|\bexpression|\bsmil|\bmood", re.IGNORECASE),
        frozenset({"image"}),
    ),
    (
        re.compile(r"\bcolou?rs?\b|\bcolou?red\b", re.IGNORECASE),
        "what colour something is",
        re.compile(r"\bcolou?r", re.IGNORECASE),
        frozenset({"image"}),
    ),
)
HOW_MANY = re.compile(r"\bhow\s+many\s+([a-z]+)", re.IGNORECASE)

MEDIA_NOUN = {"image": "a photo", "audio": "a recording"}


def _claims(card: ToolCard) -> str:
    """What a card says it does: its task, tags and description without what it does not do."""
    sentences = re.split(r"(?<=[.;:!?])\s+", card.description)
    said = [x for x in sentences if not re.search(r"\b(?:not|no|never|cannot)\b", x, re.I)]
    return " ".join([card.task, *card.tags, *said])


# "what is written here" asks for the words read, not which language they are in.
_WRITTEN = re.compile(r"\bwhat(?:'s|\s+is|\s+was|\s+does\s+it\s+say)\s+written\b", re.IGNORECASE)


class CardMatcher:
    """The zoo's cards indexed for matching clauses (built once per zoo)."""

    def __init__(self, zoo: Zoo) -> None:
        self.entries: list[ZooEntry] = list(zoo)
        if not self.entries:
            raise NoCapableTool("the zoo has no tool cards; add some to a cards folder")
        self.index = LexicalIndex(tokens(pw.card_document(e.card)) for e in self.entries)
        self.own = LexicalIndex(tokens(pw.own_document(e.card)) for e in self.entries)
        self.heads = [set(pw.raw_stems(pw.card_document(e.card))) for e in self.entries]
        self.tasks = sorted({e.card.task for e in self.entries})
        self.terms = [set(tokens(pw.card_document(e.card))) for e in self.entries]
        self.own_terms = [set(tokens(pw.own_document(e.card))) for e in self.entries]
        self.vocabulary = {
            w
            for e in self.entries
            for w in re.findall(r"[a-z]{6,}", pw.card_document(e.card).lower())
        }
        self._mended: dict[str, str] = {}  # word -> the card word it is a slip of ("": none)

    def spelled(self, text: str) -> str:
        """``text`` with each long word the cards do not have, but have one slip away, mended.

        "the langauge of": a swapped, missing, extra or wrong letter in a word of six letters or
        more, when exactly one word of the cards' documents is that close.
        """

        def mend(found: re.Match[str]) -> str:
            word = found.group(0)
            lower = word.lower()
            if lower in self.vocabulary:
                return word
            if lower in self._mended:
                return self._mended[lower] or word
            near = [
                v for v in self.vocabulary if abs(len(v) - len(lower)) <= 1 and _one_slip(lower, v)
            ]
            if len(self._mended) > 10_000:  # a long-lived server meets endless new words
                self._mended.clear()
            self._mended[lower] = near[0] if len(near) == 1 else ""
            return self._mended[lower] or word

        return re.sub(r"[A-Za-z]{6,}", mend, text)

    def coverage(self, text: str, own: bool = False) -> list[float]:
        """The share of the text's words (weighted by rarity) each card's document has.

        "Book a table at an Italian restaurant" shares one word in six with a language
        identifier: not what it does.
        """
        words = set(tokens(text))
        weight = {w: self.index.idf(w) for w in words}
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
        clause = as_language_question(clause)
        text = self.spelled(pw.ize(pw.instruction(clause)))
        head = pw.head(text)
        capability = self.spelled(pw.without_refs(clause))  # "the mood of the text in x.png"
        if tokens(capability):
            text = capability
        elif capability.split() != text.split():
            # It only names its input ("what's in this picture?"): no capability to match by
            # the input's own noun (that is a question for the readers of the input).
            return [0.0] * len(self.entries)
        kinds = pw.file_kinds(clause) | {
            k for k, p in pw.TYPED_REF.items() if k in given and p.search(clause)
        }
        if implied:
            kinds = kinds | {implied}
        out = []
        # The card's own words count as much as its task's: two cards of one task (OCR and a
        # captioner) share the task's words but not what each of them does.
        full, own = self.index.similarities(tokens(text)), self.own.similarities(tokens(text))
        covered = self.coverage(text)
        if not pw.file_kinds(clause):
            # A card making something from a description is asked by the words before it:
            # "make me a picture" of a red fox, "draw" a cat wearing a hat.
            asked = self.coverage(pw.before_description(text))
            covered = [
                max(c, a) if pw.takes_prompt(e.card) and not e.card.output_types() & given else c
                for c, a, e in zip(covered, asked, self.entries, strict=True)
            ]
        asked_for, made = pw.asked_object(clause), pw.made_kinds(clause)
        for i, entry in enumerate(self.entries):
            sim = 0.5 * full[i] + 0.5 * own[i] if covered[i] >= MIN_COVERAGE else 0.0
            if made and not made & entry.card.output_types():
                sim = 0.0  # "turn memo.wav into text": not a card making a voice of it
            score = sim
            if sim > 0 and head and head in self.heads[i]:
                score += HEAD_BONUS
            if sim > 0 and asked_for and asked_for in self.heads[i]:
                score += OBJECT_BONUS
            if sim > 0 and kinds & entry.card.input_types():
                score += FILE_KIND_BONUS
            out.append(score)
        return out

    def best(
        self,
        clause: str,
        given: frozenset[str] = frozenset(),
        implied: str | None = None,
        first: bool = True,
    ) -> tuple[int, float] | None:
        if not re.search(r"\blanguage", clause, re.IGNORECASE):
            clause = _WRITTEN.sub("read the text", clause)
        scores = self.scores(clause, given, implied)
        named = pw.file_kinds(clause) | pw.referred_kinds(clause, given, first)
        if named:  # a card must be able to read the named input, directly or converted
            # Never through what the clause asks to be made: "make a text file of cat.png" is
            # not its label spoken and transcribed.
            reach = self._reachable(named | {"text"}, avoid=pw.made_kinds(clause))
            scores = [
                sc if self.entries[k].card.input_types() <= reach else 0.0
                for k, sc in enumerate(scores)
            ]
        # Of cards that fit alike, one reading media the request does not have fits less: "say
        # hello" is for the voice, not for reading what a picture says.
        scores = [
            sc * ABSENT_MEDIA if e.card.input_types() - {"text"} - given else sc
            for sc, e in zip(scores, self.entries, strict=True)
        ]
        absent = [bool(e.card.input_types() - {"text"} - given) for e in self.entries]
        if (
            not named
            and pw.quoted_or_colon(clause)
            and any(sc >= MIN_SIMILARITY for sc, a in zip(scores, absent, strict=True) if not a)
        ):  # 'describe the mood of "..."' reads that text when a card of text fits at all
            scores = [0.0 if a else sc for sc, a in zip(scores, absent, strict=True)]
        if self.asks_in_words(clause):  # "what does notes.txt say": its words, not a voice
            scores = [
                sc if _in_words(e.card) else 0.0 for sc, e in zip(scores, self.entries, strict=True)
            ]
        i = max(range(len(scores)), key=lambda k: (scores[k], -k))
        if scores[i] >= MIN_SIMILARITY and not self._makes_else(clause, i):
            return (i, scores[i])
        return self._converter(clause, named)

    def _makes_else(self, clause: str, i: int) -> bool:
        """Whether the clause asks its input be made into a thing the card does not make.

        "turn cat.png into a video": the voice card's words fit "turn ... into", but it makes
        speech, and no card here speaks of videos. A kind of content the card makes ("into an
        audio file"), a word of its own document, or a writer (it writes anything) is no such
        thing.
        """
        found = pw.MADE_INTO.search(clause)
        card = self.entries[i].card
        if found is None or pw.takes_prompt(card) or pw.made_kinds(clause) & card.output_types():
            return False
        doc = set(pw.raw_stems(pw.card_document(card)))
        return stem(found["thing"].lower()) not in doc

    def chain_in_clause(self, clause: str, best: int) -> list[int]:
        """The best card, and a second one its left-over words ask for, when types chain."""
        doc = set(pw.raw_stems(pw.card_document(self.entries[best].card)))
        words = pw.ize(pw.instruction(clause))
        for pattern in pw.TYPED_REF.values():  # "the image", "the text": inputs, not capabilities
            words = pattern.sub(" ", words)
        rest = " ".join(w for w in words.split() if stem(w.lower()) not in doc)
        if not tokens(rest):
            return [best]
        first_card = self.entries[best].card
        if pw.takes_prompt(first_card):
            return [best]  # "explain quantum computing": the rest is what to write about
        if pw.made_kinds(clause) & first_card.output_types():
            return [best]  # "turn memo.wav into text": made, nothing more to do to it
        inputs = pw.request_sources(clause, [clause], [])
        if sum(1 for s in inputs if s.kind in first_card.input_types()) > 1:
            return [best]  # "compare the sentiment of 'a' and 'b'": each gets the first card
        sims = self.index.similarities(tokens(rest))
        others = [
            k
            for k, e in enumerate(self.entries)
            if e.card.task != first_card.task
            and not pw.takes_prompt(e.card)  # a generator from a description is never implied
            and e.card.input_types() <= first_card.output_types()
            and not e.card.output_types() & e.card.input_types()  # changes type
        ]
        if not others:
            return [best]
        second = max(others, key=lambda k: (sims[k], -k))
        second_card = self.entries[second].card
        head = pw.head(pw.ize(pw.instruction(clause)))
        leads = head in self.heads[second] and head not in doc  # "say the transcript ..."
        if (
            (sims[second] >= SECOND_CAPABILITY or (leads and sims[second] > 0))
            # A label is acted on only when the clause leads with that act ("say the sentiment
            # of ..."), not for a stray word ("figure out if it's positive": no voice).
            and (leads or task_type(first_card.task).makes_content)
            and second_card.task != first_card.task
            and second_card.input_types() <= first_card.output_types()
            and not second_card.output_types() & second_card.input_types()  # changes type
        ):
            return [best, second]
        return [best]

    def _converter(self, clause: str, named: set[str]) -> tuple[int, float] | None:
        """The card turning the clause's input into the kind it asks for, by types alone.

        "make an audio version of notes.txt": no card's words fit, but one reads text and
        makes audio (the available one, the strongest first).
        """
        made = pw.made_kinds(clause)
        kinds = set(named) | ({"text"} if pw.quoted_or_colon(clause) else set())
        if not made or not kinds:
            return None
        found = [
            (e.available, e.card.strength, -k)
            for k, e in enumerate(self.entries)
            if e.card.input_types() & kinds
            and e.card.output_types() & made
            and not pw.takes_prompt(e.card)
        ]
        return (-max(found)[2], MIN_SIMILARITY) if found else None

    def _by_input(
        self, clause: str, given: frozenset[str], first: bool = True
    ) -> tuple[int, float] | None:
        """The card for a clause naming an input but no capability ("what is in photo.jpg").

        Such a clause asks what the input shows or says: of the runnable cards reading that
        kind, the one whose description best fits that (and the clause's own words).
        """
        # A text shows nothing but its words: a question about it names what it asks (the mood,
        # the language) or is for a general card.
        kinds = pw.referred_kinds(clause, given, first)
        words = tokens(pw.without_refs(clause))
        asks_made = len(words) > 2 or pw.MADE_INTO.search(clause)
        if not kinds or asks_made and not self.is_question(clause):
            # "turn x.jpg into a painting in the style of ...": a capability no card has, not
            # a question about the input.
            return None
        asked = f"{clause} says what the {' '.join(sorted(kinds))} shows, describes what is in it"
        sims = self.own.similarities(tokens(pw.ize(asked)))
        reading = [
            i
            for i, e in enumerate(self.entries)
            if e.card.input_types() & kinds and not pw.takes_prompt(e.card) and _in_words(e.card)
        ]
        if self.unanswered(clause, given, first):
            return None
        readers = [
            (self.entries[i].available, round(sims[i], 6), self.entries[i].card.strength, -i)
            for i in reading
        ]
        if not readers:
            return None
        best = max(readers)
        return (-best[3], MIN_SIMILARITY)

    def unanswered(self, clause: str, given: frozenset[str], first: bool = True) -> str | None:
        """Why no card answers a question about an image or audio input, or None.

        "what is the dominant colour in cat.png", "is cat.png blurry": a word naming what is
        asked that no reader of the input speaks of is a question none of them answers (and
        the words read off a photo would not answer it either).
        """
        if "text" in pw.file_kinds(clause) and not pw.quoted_or_colon(clause):
            # A general card would answer without the file: it reads only the request.
            return (
                f"{pw.said(clause)}: no card of the zoo answers this about a text file (the "
                "general model reads only the request: put the text in it, in quotes)"
            )
        kinds = pw.referred_kinds(clause, given, first) & {"image", "audio"}
        if not kinds or not self.is_question(clause):
            return None
        reading = [i for i, e in enumerate(self.entries) if e.card.input_types() & kinds]
        known = set().union(*(self.terms[i] for i in reading))
        words = tokens(pw.without_refs(clause))
        unknown = [w for w in words if len(w) >= 4 and w not in known and w not in ASKING]
        if not unknown:
            return None
        tasks = sorted({self.entries[i].card.task for i in reading}) or ["none"]
        kind = " or ".join(sorted(kinds))
        return (
            f"{pw.said(clause)}: no card of the zoo answers this about an {kind} (its cards "
            f"reading an {kind} do: {', '.join(tasks)}); add a tool card that does"
        )

    def beyond(self, clause: str, given: frozenset[str], first: bool = True) -> str | None:
        """Why no card answers a question asking more of an image or audio than cards read.

        "who is the person in face.png", "is she smiling", "how many cats are in cat.png", "how
        long is memo.wav": a face detector would answer with a face count, a summarizer would
        take "long"; unless a card reading that kind claims it, none answers it.
        """
        kinds = pw.referred_kinds(clause, given, first) & MEDIA
        if first and not kinds and len(given & MEDIA) == 1 and not pw.quoted_or_colon(clause):
            kinds = set(given & MEDIA)  # "what colour is the cat", a photo given
        if not kinds or not self.is_question(clause):
            return None
        reading = [i for i, e in enumerate(self.entries) if e.card.input_types() & kinds]
        claims = [" ".join(tokens(_claims(self.entries[i].card))) for i in reading]
        documents = " ".join(_claims(self.entries[i].card) for i in reading)
        asked = [(a, what, claims) for a, what, claims, of in BEYOND_READING if kinds & of]
        if counted := HOW_MANY.search(clause):  # "how many cats": a face detector counts faces
            noun = stem(counted.group(1).lower())
            counting = [c for c in claims if "count" in c and re.search(rf"\b{noun}", c)]
            asked += (
                [] if counting else [(HOW_MANY, f"how many {counted.group(1)} there are", None)]
            )
        for asking, what, answering in asked:
            if asking.search(clause) and not (answering and answering.search(documents)):
                tasks = sorted({self.entries[i].card.task for i in reading}) or ["none"]
                kind = " or ".join(MEDIA_NOUN[k] for k in sorted(kinds))
                return (
                    f"{pw.said(clause)}: no card of the zoo tells {what} from {kind} (its cards "
                    f"reading one do: {', '.join(tasks)}); add a tool card that does"
                )
        return None

    def _reachable(self, kinds: set[str], avoid: set[str] = frozenset()) -> set[str]:
        """The types the cards can make from ``kinds``.

        Converting steps only, and none reading a type in ``avoid``.
        """
        reach = set(kinds)
        for _ in range(3):
            for entry in self.entries:
                card = entry.card
                reads = card.input_types()
                if reads and reads <= reach and not reads & avoid and not pw.takes_prompt(card):
                    reach |= card.output_types()
        return reach

    def round_trip(self, clause: str, path: list[int], start: str, then: frozenset[str]) -> bool:
        """Whether a bridge ``path`` from ``start`` feeding a card making ``then`` goes round.

        It does when it makes on the way what that card makes ("transcribe cat.png": its label
        spoken, then transcribed), or when that card makes ``start`` again unasked ("count the
        words in notes.txt": the text spoken, then transcribed; "say the transcript of x.wav
        back" asks for it).
        """
        on_the_way = {t for i in path[:-1] for t in self.entries[i].card.output_types()}
        named = {n for i in path for n in pw.nouns(self.entries[i].card)}
        back = start in then and not any(n in clause.lower() for n in named)
        return bool(then & on_the_way) or back

    def general(self) -> list[int]:
        """The zoo's general text-generation cards."""
        return [i for i, e in enumerate(self.entries) if e.card.task == pw.GENERAL_TASK]

    @staticmethod
    def is_question(clause: str) -> bool:
        """Whether the clause asks a question ("what is ...", "... written in?")."""
        text = pw.POLITE.sub("", clause.strip()).strip()
        words = [w.removesuffix("'s") for w in re.findall(r"[a-z']+", text.lower())]
        return bool(words) and (words[0] in pw.QUESTION_HEAD or clause.rstrip().endswith("?"))

    @staticmethod
    def asks_in_words(clause: str) -> bool:
        """A question whose answer is words.

        "what does it say", "is it ...", "tell me whether ...", but not "can you say ...".
        """
        text = pw.POLITE.sub("", clause.strip()).strip()
        text = re.sub(r"^(?:tell|show)\s+(?:me|us)\s+", "", text, flags=re.IGNORECASE)
        words = [w.removesuffix("'s") for w in re.findall(r"[a-z']+", text.lower())]
        return bool(words) and words[0] in (pw.QUESTION_HEAD - pw.MODAL_HEAD) | {"whether", "if"}

    def is_general_request(self, clause: str) -> bool:
        """A question, or a request whose leading verb a general text-generation card does."""
        if pw.SMALL_TALK.match(clause):  # "thanks!": the chat model says you're welcome
            return True
        text = pw.POLITE.sub("", clause.strip()).strip()
        if not re.search(r"[a-z']", text.lower()):
            return False
        if self.is_question(clause):
            return True
        head = pw.head(pw.ize(pw.instruction(clause)))
        return any(head and head in self.heads[i] for i in self.general())

    def bridge_path(self, clause: str, start: str, goal: str) -> list[int] | None:
        """The cards (one or two) turning ``start`` into ``goal`` that fit ``clause`` best."""
        sims = self.own.similarities(tokens(pw.ize(pw.instruction(clause))))
        usable = [
            i
            for i, e in enumerate(self.entries)
            if len(e.card.input_types()) == 1 and not pw.takes_prompt(e.card)
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


def _in_words(card: ToolCard) -> bool:
    """Whether the card's main result can be said in words (a text, a label, found objects).

    What an input shows or says is answered in words, never by a voice or a picture made of it.
    """
    return card.primary_output().type in ("text", "json")


def _one_slip(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one swapped pair, missing, extra or wrong letter."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    if len(long) - len(short) != 1:
        return False
    i = next((k for k, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]
