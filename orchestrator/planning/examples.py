"""A small bank of worked plans over the built-in tasks, shown to the LLM planner as examples.

Written for this project. The LLM planner shows the few whose requests are nearest to the one
it plans (TF-IDF), and only those whose tasks the zoo can do.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLE_PLANS"]


def _ref(step: str) -> dict[str, Any]:
    return {"kind": "ref", "step": step}


def _file(path: str) -> dict[str, Any]:
    return {"kind": "file", "path": path}


def _text(value: str) -> dict[str, Any]:
    return {"kind": "text", "value": value}


def _step(
    step_id: str, task: str, instruction: str, args: dict[str, Any], deps: list[str] | None = None
) -> dict[str, Any]:
    return {
        "id": step_id,
        "task": task,
        "instruction": instruction,
        "deps": deps or [],
        "args": args,
    }


EXAMPLE_PLANS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Transcribe meeting.wav and summarize it",
        [
            _step(
                "s1",
                "automatic-speech-recognition",
                "Transcribe meeting.wav",
                {"audio": _file("meeting.wav")},
            ),
            _step("s2", "summarization", "summarize it", {"text": _ref("s1")}, ["s1"]),
        ],
    ),
    (
        "What does the sign in street.jpg say? Translate it into English",
        [
            _step(
                "s1",
                "image-to-text",
                "What does the sign in street.jpg say",
                {"image": _file("street.jpg")},
            ),
            _step("s2", "translation", "Translate it into English", {"text": _ref("s1")}, ["s1"]),
        ],
    ),
    (
        "Say 'welcome home' out loud",
        [
            _step(
                "s1",
                "text-to-speech",
                "Say 'welcome home' out loud",
                {"text": _text("welcome home")},
            )
        ],
    ),
    (
        "How many faces are in party.png?",
        [
            _step(
                "s1",
                "object-detection",
                "How many faces are in party.png",
                {"image": _file("party.png")},
            )
        ],
    ),
    (
        "Tell me whether the review 'the food was cold and late' is positive or negative",
        [
            _step(
                "s1",
                "text-classification",
                "is the review positive or negative",
                {"text": _text("the food was cold and late")},
            )
        ],
    ),
    (
        "Describe photo.jpg and read the description aloud",
        [
            _step("s1", "image-to-text", "Describe photo.jpg", {"image": _file("photo.jpg")}),
            _step(
                "s2", "text-to-speech", "read the description aloud", {"text": _ref("s1")}, ["s1"]
            ),
        ],
    ),
    (
        "Transcribe call.wav and tell me which language it is in",
        [
            _step(
                "s1",
                "automatic-speech-recognition",
                "Transcribe call.wav",
                {"audio": _file("call.wav")},
            ),
            _step(
                "s2", "text-classification", "which language it is in", {"text": _ref("s1")}, ["s1"]
            ),
        ],
    ),
    (
        "What animal is in pet.png?",
        [
            _step(
                "s1",
                "image-classification",
                "What animal is in pet.png",
                {"image": _file("pet.png")},
            )
        ],
    ),
    (
        "Write a short poem about the sea",
        [
            _step(
                "s1",
                "text-generation",
                "Write a short poem about the sea",
                {"text": _text("Write a short poem about the sea")},
            )
        ],
    ),
]
