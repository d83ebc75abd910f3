"""The task-type vocabulary (Hugging Face pipeline tags where one fits).

Each task type says in plain words what it does (the planner matches request clauses against
this and the cards' own descriptions), how its result reads in an answer, and whether it makes
new content (a transcript, a translation) or only describes its input (a label, a box).
A card may name a task type that is not listed here: it then works with defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASK_TYPES", "TaskType", "task_type"]


@dataclass(frozen=True)
class TaskType:
    """What a task type is, for planning and for the final answer."""

    name: str
    description: str
    label: str
    makes_content: bool


_TASKS = [
    TaskType(
        "automatic-speech-recognition",
        "transcribe speech in an audio recording or voice file into written text; what is said",
        "Transcript",
        True,
    ),
    TaskType(
        "text-to-speech",
        "read text aloud, speak it, say it out loud, voice it, synthesize speech audio from text",
        "Spoken audio",
        True,
    ),
    TaskType(
        "text-classification",
        "classify a text: its label, category, sentiment, or the language it is written in",
        "Label",
        False,
    ),
    TaskType(
        "image-to-text",
        "read or describe what an image shows in words: the text in a picture, a caption",
        "Text in image",
        True,
    ),
    TaskType(
        "image-classification",
        "classify an image: what object, animal or thing the picture or photo shows",
        "Image class",
        False,
    ),
    TaskType(
        "object-detection",
        "detect and locate objects or faces in an image or photo, with bounding boxes; count them",
        "Detections",
        False,
    ),
    TaskType(
        "feature-extraction",
        "compute an embedding vector of a text for semantic search or similarity",
        "Embedding",
        False,
    ),
    TaskType(
        "summarization",
        "summarize a long text into a short summary; the gist, the key points, shorten it",
        "Summary",
        True,
    ),
    TaskType(
        "translation",
        "translate a text from one language into another language",
        "Translation",
        True,
    ),
    TaskType(
        "text-generation",
        "write, tell, answer, explain or generate text with a language model; chat, reply, compose",
        "Generated text",
        True,
    ),
    TaskType(
        "text-to-image",
        "generate, draw, paint or create a picture or image from a text description",
        "Generated image",
        True,
    ),
]

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in _TASKS}


def task_type(name: str) -> TaskType:
    """The vocabulary entry of ``name``, or a default one for task types it does not list."""
    known = TASK_TYPES.get(name)
    if known is not None:
        return known
    return TaskType(name, name.replace("-", " "), name.replace("-", " ").capitalize(), True)
