"""What a media file is, by its first bytes (never by its name): used where files come in.

The server stores uploads by it (:mod:`orchestrator.server.files`); runs refuse an attached or
named file whose content is not the kind its extension says (a PNG renamed ``.wav``), before
any model is paid to choke on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileKind", "content_problem", "sniff"]


@dataclass(frozen=True)
class FileKind:
    """A file type this server accepts."""

    io_type: str  # "image" or "audio"
    ext: str
    mime: str


def _is_mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


_SIGNATURES: list[tuple[FileKind, object]] = [
    (FileKind("image", "png", "image/png"), lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    (FileKind("image", "jpg", "image/jpeg"), lambda h: h.startswith(b"\xff\xd8\xff")),
    (FileKind("image", "gif", "image/gif"), lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    (FileKind("image", "bmp", "image/bmp"), lambda h: h.startswith(b"BM")),
    (FileKind("image", "webp", "image/webp"), lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    (FileKind("audio", "wav", "audio/wav"), lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE"),
    (FileKind("audio", "flac", "audio/flac"), lambda h: h.startswith(b"fLaC")),
    (FileKind("audio", "ogg", "audio/ogg"), lambda h: h.startswith(b"OggS")),
    (FileKind("audio", "mp3", "audio/mpeg"), _is_mp3),
]


def sniff(data: bytes) -> FileKind | None:
    """The accepted type of ``data`` by its first bytes, or None."""
    head = data[:16]
    for kind, test in _SIGNATURES:
        if test(head):  # type: ignore[operator]
            return kind
    return None


def content_problem(path: Path, io_type: str) -> str | None:
    """Why the file at ``path`` is not the ``io_type`` its extension says.

    None when it is, or when its format is one this check does not know. Content of another
    known kind is always refused; unknown content only for formats whose files always begin
    with a signature (not MP3, whose frames may follow other data).
    """
    ext = path.suffix.lower().lstrip(".")
    known = {kind.ext for kind, _ in _SIGNATURES} | {"jpeg"}
    if io_type not in ("audio", "image") or ext not in known:
        return None
    with path.open("rb") as handle:
        found = sniff(handle.read(16))
    if found is None and ext != "mp3":
        return f"{path.name} is named as {io_type} but its content is not a {ext.upper()} file"
    if found is None:
        return None
    if found.io_type != io_type:
        return (
            f"{path.name} is named as {io_type} but its content is a {found.ext.upper()} "
            f"{found.io_type} file; rename it to .{found.ext} or give the right file"
        )
    return None
