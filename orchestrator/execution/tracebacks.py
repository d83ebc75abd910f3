"""A failed call's traceback as the run record keeps it: the card's own code, no host paths.

The worker sends the whole Python traceback of a tool that raised. The run record keeps only
the frames in the card's code folder (the folder its ``python`` entry module is imported from),
each with its path relative to that folder, its line and the source line, and the exception's
own lines; any other absolute path in them is replaced by ``<path>``. A card that is not a
python card (a transformers pipeline, say) has no code of its own: only the exception is kept.
"""

from __future__ import annotations

import re

from orchestrator.cards import ToolCard

__all__ = ["card_traceback"]

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
_ABSOLUTE = re.compile(r"(?<![\w.])/(?:[^\s'\"/:]+/)*[^\s'\",:)]+")


def _module_files(card: ToolCard) -> tuple[str, ...]:
    """The file names (relative to the code folder) of the card's entry module."""
    entry = getattr(card.backend, "entry", None)
    if card.backend.kind != "python" or not entry:
        return ()
    module = str(entry).split(":", 1)[0].replace(".", "/")
    return (f"{module}.py", f"{module}/__init__.py")


def _code_folder(paths: list[str], files: tuple[str, ...]) -> str | None:
    for path in paths:
        for name in files:
            if path.endswith("/" + name):
                return path[: -len(name)]
    return None


def _masked(text: str, folder: str | None) -> str:
    def mask(match: re.Match[str]) -> str:
        path = match.group(0)
        if folder and path.startswith(folder):
            return path[len(folder) :]
        return "<path>"

    return _ABSOLUTE.sub(mask, text)


def card_traceback(card: ToolCard, detail: str) -> str | None:
    """The traceback ``detail`` cut to the card's own frames and its exception (None: none)."""
    lines = detail.splitlines()
    frames = [(i, m) for i, line in enumerate(lines) if (m := _FRAME.match(line))]
    if not frames:
        return None
    folder = _code_folder([m.group("path") for _, m in frames], _module_files(card))
    kept: list[str] = []
    for i, match in frames:
        path = match.group("path")
        if folder is None or not path.startswith(folder):
            continue
        where = f'  File "{path[len(folder) :]}", line {match.group("line")}'
        kept.append(f"{where}, in {match.group('func')}")
        source = lines[i + 1] if i + 1 < len(lines) else ""
        if source.startswith("    ") and not _FRAME.match(source):
            kept.append("    " + source.strip())
    # The exception's line: the first one after the last frame's source (the worker's log may
    # follow it).
    after = lines[frames[-1][0] + 1 :]
    tail = [next((x for x in after if x.strip() and not x.startswith(" ")), "")]
    body = "\n".join(kept) if kept else "  (no frame in the card's own code)"
    return _masked("Traceback (the card's code):\n" + body + "\n" + "\n".join(tail), folder)
