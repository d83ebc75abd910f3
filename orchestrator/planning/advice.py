"""What to tell the user when the zoo cannot serve part of a request, and language names.

The advice names the missing capability (from the task vocabulary), the card(s) of the zoo that
would do it and why each cannot run here (its availability reason says how to make it
available), and, when no card fits at all, what kind of card to add (with the languages asked
for). Nothing here is specific to one zoo: everything comes from the cards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from orchestrator.cards import ToolCard
from orchestrator.cards.tasks import task_type
from orchestrator.cards.zoo import ZooEntry

__all__ = [
    "LANGUAGES",
    "as_language_question",
    "language_names",
    "languages_fit",
    "mentioned_languages",
    "asked_steps",
    "missing_advice",
]

# ISO 639-1 code of common language names (the words people use in requests).
LANGUAGES: dict[str, str] = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it",
    "portuguese": "pt", "dutch": "nl", "japanese": "ja", "chinese": "zh", "mandarin": "zh",
    "korean": "ko", "russian": "ru", "arabic": "ar", "hindi": "hi", "turkish": "tr",
    "polish": "pl", "swedish": "sv", "norwegian": "no", "danish": "da", "finnish": "fi",
    "greek": "el", "czech": "cs", "hungarian": "hu", "romanian": "ro", "ukrainian": "uk",
    "hebrew": "he", "thai": "th", "vietnamese": "vi", "indonesian": "id", "persian": "fa",
    "bengali": "bn", "urdu": "ur", "swahili": "sw", "catalan": "ca", "irish": "ga",
    "welsh": "cy", "latin": "la",
}  # fmt: skip
_LANGUAGE = re.compile(r"\b(" + "|".join(LANGUAGES) + r")\b", re.IGNORECASE)
_NAMES = {code: name.capitalize() for name, code in reversed(LANGUAGES.items())}


def mentioned_languages(text: str) -> list[str]:
    """ISO codes of the language names in ``text``, in order, each once."""
    codes: list[str] = []
    for name in _LANGUAGE.findall(text):
        code = LANGUAGES[name.lower()]
        if code not in codes:
            codes.append(code)
    return codes


_WHETHER = re.compile(
    r"^\W*(?:(?:please\s+)?(?:tell|show)\s+(?:me|us)\s+|(?:can\s+you\s+)?check\s+)?"
    r"(?:is|are|was|were|whether|if|which)\b",
    re.IGNORECASE,
)
_TRANSLATING = re.compile(r"\btranslat|\binto\b|\bversion\b", re.IGNORECASE)


def as_language_question(clause: str) -> str:
    """A clause asking whether a text is in a language, with "language" for the language name.

    "tell me if they're french", "which of these is in French?" ask for the language of a
    text, not a translation into it; any other clause is returned as it is.
    """
    if not _WHETHER.match(clause) or _TRANSLATING.search(clause):
        return clause
    return _LANGUAGE.sub("language", clause)


_SAID_IN = re.compile(
    r"^(?P<ask>.*\b(?:say|says|said|written|mean|means)\b.*?)\s+in\s+"
    r"(?P<language>" + "|".join(LANGUAGES) + r")\W*$",
    re.IGNORECASE,
)
_SAID_IN_TEXT = re.compile(
    r"^\W*what\s+(?:does|do|did)\s+(?:it|this|that)\s+(?:say|mean)\s+in\s+"
    r"(?P<language>" + "|".join(LANGUAGES) + r")\s*(?P<text>:.+)$",
    re.IGNORECASE | re.DOTALL,
)
_MEANING = re.compile(
    r"^\W*(?:what\s+(?:does|do|did)\s+(?P<a>[\"“][^\"”]+[\"”])\s+mean|(?:what\s+is\s+)?the\s+"
    r"meaning\s+of\s+(?P<b>[\"“][^\"”]+[\"”]))(?:\s+in\s+(?P<language>"
    + "|".join(LANGUAGES)
    + r"))?\W*$",
    re.IGNORECASE,
)

_ANYONE = re.compile(
    r"\b(?:any|some)(?:one|body)\b(?=.*\b(?:pic|pics|picture|photo|image|\w+\.(?:png|jpe?g)))",
    re.IGNORECASE,
)


def asked_steps(clause: str) -> list[str]:
    """A clause asking what a text or an input means or says in a language, as the steps asked.

    'what does "merci" mean in English' is a translation and 'what does "merci" mean' a
    question for a general model (not a meaning vector); "what does fr.png say in english"
    asks for its words, then for them in English; "is it written in French" asks for the
    language; "is there anyone in this pic" asks for a person in it. Any other clause is
    returned as it is.
    """
    clause = _ANYONE.sub("a person", clause)
    if meaning := _MEANING.match(clause):
        text = meaning["a"] or meaning["b"]
        return [
            f"translate {text} to {meaning['language']}"
            if meaning["language"]
            else f"explain {text}"
        ]
    if said := _SAID_IN_TEXT.match(clause):  # a chat's follow-up: its text after a colon
        return [f"translate to {said['language']}{said['text']}"]
    found = _SAID_IN.match(clause)
    gives_text = re.search(r"[\"“”:]|(?:^|\s)'[^']+'", clause)
    if not found or gives_text or _WHETHER.match(clause) or _TRANSLATING.search(clause):
        return [clause]
    return [found["ask"], f"translate it to {found['language']}"]


def language_names(codes: Iterable[str]) -> str:
    return ", ".join(_NAMES.get(c, c) for c in codes)


def languages_fit(card: ToolCard, codes: Iterable[str]) -> bool:
    """Whether ``card`` handles every language in ``codes`` (a card listing none handles all)."""
    wanted = set(codes)
    return not wanted or not card.languages or wanted <= set(card.languages)


def capability_name(task: str) -> str:
    """The capability of a task in words: 'summarization (summarize a long text ...)'."""
    return f"{task} ({task_type(task).description.split(';')[0]})"


def missing_advice(
    what: str, task: str, entries: list[ZooEntry], languages: list[str], others: list[ZooEntry]
) -> str:
    """Why ``what`` (a clause) cannot be done here and how to make it possible.

    ``entries`` are the cards of the capability (none of them can run here, or none fits the
    ``languages``); ``others`` are cards of other tasks whose description covers it.
    """
    wanted = f" for {language_names(languages)}" if languages else ""
    said = "“" + what.replace("'", "’") + "”"
    head = f"{said} needs {capability_name(task)}{wanted}, which no card can do here"
    reasons = []
    for entry in [*entries, *others]:
        card = entry.card
        if not languages_fit(card, languages):
            reasons.append(f"{card.name} only handles {language_names(card.languages)}")
        elif entry.unavailable:
            reasons.append(f"{card.name} would, but it {_unavailable(entry.unavailable)}")
    add = (
        f"add a tool card for a {task} model that handles {language_names(languages)} "
        f"(with languages: [{', '.join(languages)}])"
        if languages
        else f"add a tool card for a {task} model you have"
    )
    if reasons:
        return f"{head}: {'; '.join(reasons)}. Make one of them available, or {add}."
    return f"{head}: the zoo has no card for it; {add}."


def _unavailable(reason: str) -> str:
    reason = reason.strip().rstrip(".").replace("'", "’")
    return f"cannot run here ({reason})"
