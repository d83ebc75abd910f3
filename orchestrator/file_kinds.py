"""File types: the one table of extensions and media types, and sniffing content by its first bytes.

The server takes uploads by their first bytes (:mod:`orchestrator.server.files`); runs refuse an
attached or named file whose content is not the kind its extension says (a PNG renamed
``.wav``), before any model is paid to choke on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KINDS",
    "FileKind",
    "content_problem",
    "input_extensions",
    "kind_of",
    "sniff",
    "text_kind",
    "text_problem",
    "upload_labels",
]


@dataclass(frozen=True)
class FileKind:
    """A file type: what it holds, its media type, and where it is taken."""

    io_type: str  # "audio", "image", "text" or "data"
    ext: str
    mime: str
    named: bool = True  # a run reads it when attached or named in a request
    uploaded: bool = False  # the server takes it as an upload (known by its first bytes)
    served: bool = False  # the server serves such a file a run made or was given
    label: str = ""  # its name in the list of uploads the server takes ("" : not listed)


# The one table of file types: every list of extensions or media types is read from it.
KINDS: tuple[FileKind, ...] = (
    FileKind("audio", "wav", "audio/wav", uploaded=True, served=True, label="WAV"),
    FileKind("audio", "mp3", "audio/mpeg", uploaded=True, served=True, label="MP3"),
    FileKind("audio", "flac", "audio/flac", uploaded=True, served=True, label="FLAC"),
    FileKind("audio", "ogg", "audio/ogg", uploaded=True, served=True, label="Ogg"),
    FileKind("audio", "m4a", "audio/mp4"),
    FileKind("audio", "opus", "audio/opus"),
    FileKind("image", "png", "image/png", uploaded=True, served=True, label="PNG"),
    FileKind("image", "jpg", "image/jpeg", uploaded=True, served=True, label="JPEG"),
    FileKind("image", "jpeg", "image/jpeg", uploaded=True, served=True),
    FileKind("image", "gif", "image/gif", uploaded=True, served=True, label="GIF"),
    FileKind("image", "bmp", "image/bmp", uploaded=True, served=True, label="BMP"),
    FileKind("image", "webp", "image/webp", uploaded=True, served=True, label="WebP"),
    FileKind("image", "tif", "image/tiff"),
    FileKind("image", "tiff", "image/tiff"),
    # Text files are read as the text input of the step that needs one.
    # The server takes every text kind a run reads as an upload, by its name (text has no
    # first-bytes signature) once its content is checked to be text (see text_problem).
    FileKind("text", "txt", "text/plain", served=True),
    FileKind("text", "md", "text/markdown"),
    FileKind("data", "json", "application/json", named=False, served=True),  # made by runs
)
_BY_EXT = {kind.ext: kind for kind in KINDS}
_TEXT_EXTS = ", .".join(k.ext for k in KINDS if k.io_type == "text" and k.named)


def kind_of(path: str) -> FileKind | None:
    """The file type of ``path`` by its extension (any case), or None."""
    return _BY_EXT.get(path.rsplit(".", 1)[-1].lower())


def input_extensions() -> dict[str, tuple[str, ...]]:
    """The extensions a run reads, by the kind of input: audio, image, text."""
    out: dict[str, tuple[str, ...]] = {}
    for kind in KINDS:
        if kind.named:
            out[kind.io_type] = (*out.get(kind.io_type, ()), kind.ext)
    return out


def upload_labels() -> str:
    """The uploads the server takes, in words: "PNG, ... images, WAV, ... audio and ... text"."""
    images = ", ".join(k.label for k in KINDS if k.label and k.io_type == "image")
    audio = ", ".join(k.label for k in KINDS if k.label and k.io_type == "audio")
    return f"{images} images, {audio} audio and UTF-8 text files named .{_TEXT_EXTS}"


def text_kind(name: str | None, media_type: str | None = None) -> FileKind | None:
    """The text kind a file's name (or, without a known extension, its media type) says.

    Only the text kinds a run reads (``named``): those the CLI takes, the server takes too.
    """
    by_name = kind_of(name) if name and "." in name else None
    if by_name is not None:
        return by_name if by_name.io_type == "text" and by_name.named else None
    return next(
        (k for k in KINDS if k.io_type == "text" and k.named and k.mime == media_type), None
    )


def text_problem(data: bytes) -> str | None:
    """Why ``data`` is not plain text (UTF-8 without control bytes), or None when it is."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"its bytes are not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})"
    control = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    if "\x00" in text or control > len(text) // 100:
        return "it holds binary data (control bytes), not text"
    return None


def _is_mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


# First bytes of the uploaded types, tried in this order (MP3's loose test last).
_SIGNATURES: list[tuple[FileKind, Callable[[bytes], bool]]] = [
    (_BY_EXT["png"], lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    (_BY_EXT["jpg"], lambda h: h.startswith(b"\xff\xd8\xff")),
    (_BY_EXT["gif"], lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    (_BY_EXT["bmp"], lambda h: h.startswith(b"BM")),
    (_BY_EXT["webp"], lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    (_BY_EXT["wav"], lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE"),
    (_BY_EXT["flac"], lambda h: h.startswith(b"fLaC")),
    (_BY_EXT["ogg"], lambda h: h.startswith(b"OggS")),
    (_BY_EXT["mp3"], _is_mp3),
]


def sniff(data: bytes) -> FileKind | None:
    """The accepted type of ``data`` by its first bytes, or None."""
    head = data[:16]
    for kind, test in _SIGNATURES:
        if test(head):
            return kind
    return None


def content_problem(path: Path, io_type: str) -> str | None:
    """Why the file at ``path`` is not the ``io_type`` its extension says.

    None when it is, or when its format is one this check does not know. Content of another
    known kind is always refused; unknown content only for formats whose files always begin
    with a signature (not MP3, whose frames may follow other data).
    """
    ext = path.suffix.lower().lstrip(".")
    kind = _BY_EXT.get(ext)
    if io_type not in ("audio", "image") or kind is None or not kind.uploaded:
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
