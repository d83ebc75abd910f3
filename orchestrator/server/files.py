"""Files in and out of ``orchestrator serve``: what is accepted, where it is kept, how it is served.

Accepted inputs are images (PNG, JPEG, GIF, BMP, WebP), audio (WAV, MP3, FLAC, Ogg) and the text
files a run reads (.txt, .md), each at most ``max_upload_bytes``. The type of an image or audio
file is read from its first bytes, not from its name or a declared content type, and the stored
file gets the matching extension; text has no such signature, so a text file is known by its
name (or declared media type) and taken only when its content is UTF-8 text. Uploads
(``POST /v1/files``) are kept under ``RUNS/uploads/file-ID/``; files attached inline to a
message are written into the run's own folder ``RUNS/RUN_ID/inputs/``. Produced files are served
from ``GET /v1/files/RUN_ID/NAME`` (only media files inside that run's folder). Both belong to
the client that made them (the server's :class:`~orchestrator.server.retention.Ledger` says
which): another client finds neither, as if it did not exist. Both are deleted after a while
(:mod:`orchestrator.server.retention`).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from pathlib import Path

from orchestrator.errors import RequestRejected
from orchestrator.file_kinds import KINDS, FileKind, sniff, text_kind, text_problem, upload_labels
from orchestrator.server.retention import UPLOADS, Ledger

__all__ = [
    "ACCEPTED",
    "MEDIA_TYPES",
    "FileKind",
    "UploadStore",
    "decode_base64",
    "data_url_type",
    "decode_data_url",
    "file_ids_in",
    "how_to_attach",
    "produced_file",
    "sniff",
    "store_input",
]


ACCEPTED = upload_labels()

# What GET /v1/files serves, by extension (produced files and inputs).
MEDIA_TYPES = {kind.ext: kind.mime for kind in KINDS if kind.served}

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
# An upload's id named in a message's text ("summarise file-3f2a..."): "file-" then letters and
# digits, at least one a digit (so "file-based" is a word, not an id).
_FILE_ID_IN_TEXT = re.compile(r"(?<![\w/.-])file-(?=[0-9a-z]*[0-9])[0-9a-z]{6,}(?![\w-])")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)$", re.S)


def decode_base64(text: str, param: str) -> bytes:
    """Base64 (standard alphabet, padding optional); bad input is a 400 naming ``param``."""
    cleaned = "".join(text.split())
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestRejected(400, f"{param} is not valid base64: {exc}", param=param) from exc


def decode_data_url(url: str, param: str) -> bytes:
    """The bytes of a ``data:...;base64,...`` URL; other URLs are a 400 saying what to send."""
    if url.startswith(("http://", "https://")):
        raise RequestRejected(
            400,
            f"{param}: this server does not fetch URLs (it may be offline); send the file as a "
            "data: URL (data:image/png;base64,...) or upload it with POST /v1/files",
            param=param,
            code="url_not_supported",
        )
    match = _DATA_URL.match(url)
    if match is None:
        raise RequestRejected(
            400, f"{param} must be a base64 data: URL like data:image/png;base64,...", param=param
        )
    return decode_base64(match.group(3), param)


def data_url_type(url: str) -> str | None:
    """The media type a ``data:`` URL declares (``data:text/plain;base64,...``), or None."""
    match = _DATA_URL.match(url)
    return match.group(1) if match else None


def file_ids_in(text: str) -> list[str]:
    """The upload ids named in ``text``, in order, each once."""
    return list(dict.fromkeys(_FILE_ID_IN_TEXT.findall(text)))


def how_to_attach(file_id: str) -> str:
    """What to do when a message names an id this client has no upload of."""
    return (
        f"upload the file with POST /v1/files and name the id it answers, or attach it to the "
        f'message as a content part {{"type": "file", "file": {{"file_id": "{file_id}"}}}} '
        "(or inline as file_data with its filename)"
    )


def _safe_name(filename: str | None, kind: FileKind) -> str:
    stem = Path(filename or "").stem if filename else ""
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._")[:60] or kind.io_type
    return f"{stem}.{kind.ext}"


def checked_kind(
    data: bytes,
    limit: int,
    what: str,
    param: str | None,
    name: str | None = None,
    media_type: str | None = None,
) -> FileKind:
    """The type of an attached file; too big (413) or not an accepted type (415) is refused.

    A file named (or declared) as text must hold UTF-8 text: binary data is a 415 saying so.
    """
    if len(data) > limit:
        raise RequestRejected(
            413,
            f"{what} is {len(data) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB per file",
            param=param,
            code="file_too_large",
        )
    if not data:
        raise RequestRejected(400, f"{what} is empty", param=param, code="empty_file")
    kind, text = sniff(data), text_kind(name, media_type)
    if text is not None:
        problem = (
            f"its content is a {kind.ext.upper()} {kind.io_type} file; rename it to .{kind.ext}"
            if kind is not None
            else text_problem(data)
        )
        if problem is None:
            return text
        raise RequestRejected(
            415,
            f"{what} is named as a .{text.ext} text file but {problem}",
            param=param,
            code="unsupported_file_type",
        )
    if kind is None:
        raise RequestRejected(
            415,
            f"{what} is not a file type this server accepts ({ACCEPTED})",
            param=param,
            code="unsupported_file_type",
        )
    return kind


def store_input(
    data: bytes,
    filename: str | None,
    folder: Path,
    *,
    limit: int,
    param: str | None = None,
    media_type: str | None = None,
) -> Path:
    """Check an attached file and write it into ``folder`` under a safe, unused name."""
    what = f"the attached file '{filename}'" if filename else "the attached file"
    if param:
        what += f" ({param})"
    kind = checked_kind(data, limit, what, param, filename, media_type)
    folder.mkdir(parents=True, exist_ok=True)
    name = _safe_name(filename, kind)
    path = folder / name
    count = 1
    while path.exists():
        count += 1
        path = folder / f"{Path(name).stem}-{count}.{kind.ext}"
    path.write_bytes(data)
    return path


class UploadStore:
    """Files uploaded with ``POST /v1/files``, kept as ``ROOT/file-ID/NAME``, each its client's."""

    def __init__(self, root: Path, limit: int, ledger: Ledger) -> None:
        self.root = root
        self.limit = limit
        self.ledger = ledger

    def save(
        self, data: bytes, filename: str | None, owner: str, media_type: str | None = None
    ) -> tuple[str, Path]:
        """Check and keep one upload of client ``owner``; return its id and path."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        folder = self.root / file_id
        path = store_input(
            data, filename, folder, limit=self.limit, param="file", media_type=media_type
        )
        self.ledger.record(UPLOADS, file_id, owner)
        return file_id, path

    def ids(self, owner: str) -> list[str]:
        """The ids of ``owner``'s uploads kept now, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            d
            for d in self.root.iterdir()
            if _FILE_ID.match(d.name) and d.is_dir() and self.ledger.owner(UPLOADS, d.name) == owner
        ]
        return [d.name for d in sorted(found, key=lambda d: d.stat().st_mtime)]

    def info(self, file_id: str, owner: str, param: str = "file_id") -> dict[str, object]:
        """An upload as an OpenAI file object (a 404 for an unknown id)."""
        path = self.path(file_id, param, owner)
        stat = path.stat()
        return {
            "id": file_id,
            "object": "file",
            "bytes": stat.st_size,
            "created_at": int(stat.st_mtime),
            "filename": path.name,
            "purpose": "user_data",
            "status": "processed",
        }

    def path(self, file_id: str, param: str, owner: str) -> Path:
        """The stored file of ``file_id``; an unknown id, or another client's, is a 404."""
        mine = _FILE_ID.match(file_id) and self.ledger.owner(UPLOADS, file_id) == owner
        folder = self.root / file_id if mine else None
        files = sorted(folder.iterdir()) if folder is not None and folder.is_dir() else []
        if not files:
            raise RequestRejected(
                404, f"no uploaded file with id '{file_id}'", param=param, code="file_not_found"
            )
        return files[0]


def produced_file(runs_dir: Path, run_id: str, name: str, ledger: Ledger, owner: str) -> Path:
    """A media file in a run ``owner`` started (``name`` may be ``inputs/x.png``); else a 404."""
    missing = RequestRejected(
        404, f"no file '{name}' in run '{run_id}'", type_="not_found_error", code="file_not_found"
    )
    if not _RUN_ID.match(run_id) or run_id == "uploads" or ledger.owner("runs", run_id) != owner:
        raise missing
    folder = (runs_dir / run_id).resolve()
    path = (folder / name).resolve()
    ext = path.suffix.lstrip(".").lower()
    if not path.is_relative_to(folder) or ext not in MEDIA_TYPES or not path.is_file():
        raise missing
    return path
