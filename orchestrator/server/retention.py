"""Retention of what ``orchestrator serve`` stores: uploads and the folders of its own runs.

The server stores two kinds of things, both under the runs folder: uploads
(``RUNS/uploads/file-ID/``) and the folders of the runs it starts (``RUNS/RUN_ID/``). It records
each one in its :class:`Ledger` (``RUNS/.orchestrator-server/``) with the client that made it,
so a sweep tells its own run folders from those of ``orchestrator run`` in the same runs folder
(which it never touches), knows them again after a restart, and each client sees only its own
files. The record lies outside every run folder: no file a tool returns can forge one (returned
files land inside their run's folder, under plain names). Nothing else is ever deleted: not the
run store, not files in the upload folder that do not look like an upload, not symbolic links.

A sweep deletes every stored item (an upload or a marked run folder) whose newest file is older
than ``[server] keep_files_hours``, then, while the total stored is above ``max_stored_mb``, the
oldest remaining ones. Items a run uses - its own folder, and the uploads and earlier runs'
files it reads, from the moment the request is accepted until the run ends, queued runs too -
are held and skipped. Holding and deleting take the same lock, so a request never picks up an
item a sweep is deleting. The server sweeps when it starts and, at most once per
:data:`SWEEP_INTERVAL_S`, after a run finishes or a file is uploaded; each sweep logs one line.

The ids of the last :data:`REMEMBERED` swept items are kept in memory, so a request for one is
told it expired (and how long files are kept) rather than that it never existed.

With a PostgreSQL run store (``[store] url``) the records live in its table
``orchestrator_server_files`` instead (:class:`PgLedger`), so every server sharing the database
and the runs folder serves every client's files, whichever server took them in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import ServerConfig
from orchestrator.errors import RequestRejected
from orchestrator.pipeline.pg_store import PgStore

__all__ = [
    "LEDGER",
    "REMEMBERED",
    "SWEEP_INTERVAL_S",
    "Claim",
    "Ledger",
    "PgLedger",
    "Retention",
    "Stored",
    "Sweep",
]

log = logging.getLogger("orchestrator.server")

LEDGER = ".orchestrator-server"
"""The server's own records in the runs folder: ``runs/RUN_ID`` and ``uploads/FILE_ID``."""
SWEEP_INTERVAL_S = 60.0
REMEMBERED = 100_000
UPLOADS = "uploads"

_UPLOAD_ID = re.compile(r"^file-[0-9a-f]{24}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KINDS = {"runs": _RUN_ID, "uploads": _UPLOAD_ID}


class Ledger:
    """What the server stored and for which client: one small file per item, holding the owner.

    ``RUNS/.orchestrator-server/runs/RUN_ID`` for a run folder it made, ``.../uploads/FILE_ID``
    for an upload. An item without a record is not the server's: never served, never swept.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.root = runs_dir / LEDGER

    def _path(self, kind: str, name: str) -> Path | None:
        return self.root / kind / name if _KINDS[kind].match(name) else None

    def record(self, kind: str, name: str, owner: str) -> None:
        """Note that ``owner`` made the item ``name`` (``kind``: runs or uploads)."""
        path = self._path(kind, name)
        if path is None:
            raise ValueError(f"not a {kind} id: {name!r}")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o600), "w", encoding="ascii") as file:
            file.write(owner)

    def owner(self, kind: str, name: str) -> str | None:
        """Who made the item (None: the server did not make it)."""
        path = self._path(kind, name)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, encoding="ascii", errors="replace") as file:
            return file.read(200).strip() or None

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a deleted item."""
        path = self._path(kind, name)
        if path is not None:
            path.unlink(missing_ok=True)

    def names(self, kind: str) -> list[str]:
        """The ids recorded for ``kind``."""
        try:
            return [e.name for e in os.scandir(self.root / kind) if _KINDS[kind].match(e.name)]
        except FileNotFoundError:
            return []

    def names_of(self, kind: str, owner: str) -> list[str]:
        """The ids recorded for ``kind`` that ``owner`` made."""
        return [name for name in self.names(kind) if self.owner(kind, name) == owner]


class PgLedger:
    """The :class:`Ledger`'s records in the PostgreSQL run store, one row per item."""

    TABLE = (
        "CREATE TABLE IF NOT EXISTS orchestrator_server_files "
        "(kind TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (kind, name))"
    )

    def __init__(self, store: PgStore) -> None:
        self.store = store
        store.ensure([self.TABLE])

    def record(self, kind: str, name: str, owner: str) -> None:
        """Note that ``owner`` made the item ``name`` (``kind``: runs or uploads)."""
        if not _KINDS[kind].match(name):
            raise ValueError(f"not a {kind} id: {name!r}")
        with contextlib.closing(self.store.connect()) as conn:
            conn.execute(
                "INSERT INTO orchestrator_server_files (kind, name, owner) VALUES (%s, %s, %s) "
                "ON CONFLICT (kind, name) DO UPDATE SET owner = EXCLUDED.owner",
                (kind, name, owner),
            )

    def owner(self, kind: str, name: str) -> str | None:
        """Who made the item (None: no server sharing this store made it)."""
        if not _KINDS[kind].match(name):
            return None
        with contextlib.closing(self.store.connect()) as conn:
            row = conn.execute(
                "SELECT owner FROM orchestrator_server_files WHERE kind = %s AND name = %s",
                (kind, name),
            ).fetchone()
        return str(row[0]) if row else None

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a deleted item."""
        with contextlib.closing(self.store.connect()) as conn:
            conn.execute(
                "DELETE FROM orchestrator_server_files WHERE kind = %s AND name = %s", (kind, name)
            )

    def names(self, kind: str) -> list[str]:
        """The ids recorded for ``kind``."""
        with contextlib.closing(self.store.connect()) as conn:
            rows = conn.execute(
                "SELECT name FROM orchestrator_server_files WHERE kind = %s", (kind,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def names_of(self, kind: str, owner: str) -> list[str]:
        """The ids recorded for ``kind`` that ``owner`` made."""
        with contextlib.closing(self.store.connect()) as conn:
            rows = conn.execute(
                "SELECT name FROM orchestrator_server_files WHERE kind = %s AND owner = %s",
                (kind, owner),
            ).fetchall()
        return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class Stored:
    """One stored item: an upload's folder or a run's folder."""

    kind: str  # "upload" or "run"
    name: str  # the file id or the run id
    path: Path
    newest: float  # the newest modification time inside it (seconds since the epoch)
    size: int  # bytes


@dataclass
class Sweep:
    """What one sweep did."""

    expired: list[Stored] = field(default_factory=list)
    over_cap: list[Stored] = field(default_factory=list)
    kept: list[Stored] = field(default_factory=list)
    held: int = 0  # items old enough to go, kept because a run uses them

    @property
    def deleted(self) -> list[Stored]:
        """Every item deleted, expired first."""
        return self.expired + self.over_cap

    @property
    def freed(self) -> int:
        """Bytes deleted."""
        return sum(item.size for item in self.deleted)

    def line(self) -> str:
        """The log line of this sweep."""
        kinds = Counter(item.kind for item in self.deleted)
        kept = sum(item.size for item in self.kept)
        return (
            f"retention sweep: deleted {kinds['upload']} uploads and {kinds['run']} run folders "
            f"({len(self.expired)} expired, {len(self.over_cap)} over the size cap), freed "
            f"{self.freed / 1e6:.1f} MB; kept {len(self.kept)} items ({kept / 1e6:.1f} MB), "
            f"{self.held} of them in use"
        )


class Claim:
    """The stored items one run uses; held from the request until :meth:`release`."""

    def __init__(self, retention: Retention, run_dir: Path, owner: str) -> None:
        self.retention = retention
        self.run_dir = run_dir
        self.owner = owner
        self.items: list[Path] = []
        self._released = False

    def add(self, path: Path) -> bool:
        """Hold the stored item ``path`` lies in; False if ``path`` is gone already."""
        item = self.retention.item_of(path)
        with self.retention.lock:
            if item is not None:
                self.retention.hold(item)
                self.items.append(item)
            return path.exists()

    def release(self) -> None:
        """Let sweeps delete these items again (called once the run ends)."""
        with self.retention.lock:
            if self._released:
                return
            self._released = True
            for item in self.items:
                self.retention.unhold(item)

    def abandon(self) -> None:
        """Release, and delete the run's folder: the request was refused before its run began."""
        self.release()
        item = self.retention.item_of(self.run_dir)
        with self.retention.lock:
            if item is not None and not self.retention.is_held(item):
                shutil.rmtree(item, ignore_errors=True)
                self.retention.ledger.forget("runs", item.name)


class Retention:
    """Deletes what the server stored once it is old, or when too much is stored."""

    def __init__(
        self,
        runs_dir: Path,
        *,
        keep_hours: float,
        max_bytes: int,
        interval: float = SWEEP_INTERVAL_S,
        ledger: Ledger | PgLedger | None = None,
    ) -> None:
        self.runs_dir = runs_dir.resolve()
        self.upload_root = self.runs_dir / UPLOADS
        self.keep_hours = keep_hours
        self.max_bytes = max_bytes
        self.interval = interval
        self.ledger = ledger or Ledger(self.runs_dir)
        self.lock = threading.RLock()
        self._held: Counter[Path] = Counter()
        self._swept: OrderedDict[str, str | None] = OrderedDict()  # id -> its owner
        self._last = float("-inf")
        self._running = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sweep")

    @classmethod
    def from_config(
        cls, runs_dir: Path, server: ServerConfig, store: Path | PgStore | None = None
    ) -> Retention:
        """The retention ``[server]`` asks for (records in ``store`` when it is PostgreSQL)."""
        return cls(
            runs_dir,
            keep_hours=server.keep_files_hours,
            max_bytes=server.max_stored_mb * 10**6,
            ledger=PgLedger(store) if isinstance(store, PgStore) else None,
        )

    # --- holding ------------------------------------------------------------------------------

    def claim(self, run_dir: Path, owner: str) -> Claim:
        """Hold a new run's folder, create it, and record it as ``owner``'s run."""
        claim = Claim(self, run_dir, owner)
        claim.add(run_dir)
        run_dir.mkdir(parents=True, exist_ok=False)
        self.ledger.record("runs", run_dir.name, owner)
        return claim

    def owner_of(self, item: Path) -> str | None:
        """The client that made the stored item (None: not an item the server made)."""
        if item.parent == self.upload_root:
            return self.ledger.owner(UPLOADS, item.name)
        if item.parent == self.runs_dir:
            return self.ledger.owner("runs", item.name)
        return None

    def hold(self, item: Path) -> None:
        """Keep sweeps off ``item`` (counted: each hold needs its own :meth:`unhold`)."""
        with self.lock:
            self._held[item] += 1

    def unhold(self, item: Path) -> None:
        """Undo one :meth:`hold`."""
        with self.lock:
            self._held[item] -= 1
            if self._held[item] <= 0:
                del self._held[item]

    def is_held(self, item: Path) -> bool:
        """Whether a run uses ``item``."""
        with self.lock:
            return self._held[item] > 0

    def item_of(self, path: Path) -> Path | None:
        """The stored item (upload or run folder) ``path`` lies in, if it lies in one."""
        try:
            parts = path.resolve().relative_to(self.runs_dir).parts
        except ValueError:
            return None
        if parts[:1] == (UPLOADS,):
            return self.upload_root / parts[1] if len(parts) > 1 else None
        return self.runs_dir / parts[0] if parts else None

    # --- expired ids --------------------------------------------------------------------------

    def swept(self, name: str, owner: str | None = None) -> bool:
        """Whether a sweep deleted the upload or run of this id (of ``owner``, when given)."""
        with self.lock:
            return name in self._swept and (owner is None or self._swept[name] == owner)

    def policy(self) -> str:
        """How long this server keeps files, in words."""
        hours = f"{self.keep_hours:g} hour" + ("" if self.keep_hours == 1 else "s")
        return (
            f"this server keeps uploads and the files its runs make for {hours} "
            f"(and at most {self.max_bytes / 1e6:g} MB in all)"
        )

    def expired(self, what: str, *, param: str | None = None, type_: str) -> RequestRejected:
        """The 404 for a file a sweep deleted."""
        return RequestRejected(
            404,
            f"{what} has expired and was deleted: {self.policy()}; upload or make it again",
            type_=type_,
            param=param,
            code="file_expired",
        )

    # --- sweeping -----------------------------------------------------------------------------

    def stored(self) -> list[Stored]:
        """Every stored item, oldest first."""
        found: list[Stored] = []
        for kind, folder, pattern in (
            ("upload", self.upload_root, _UPLOAD_ID),
            ("run", self.runs_dir, _RUN_ID),
        ):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not pattern.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                if kind == "run" and self.ledger.owner("runs", entry.name) is None:
                    continue  # not a run this server started
                newest, size = _measure(Path(entry.path))
                found.append(Stored(kind, entry.name, Path(entry.path), newest, size))
        return sorted(found, key=lambda item: item.newest)

    def sweep(self, now: float | None = None) -> Sweep:
        """Delete expired items, then the oldest while over the size cap; log one line."""
        now = time.time() if now is None else now
        cutoff = now - self.keep_hours * 3600
        result = Sweep()
        total = 0
        for item in self.stored():
            total += item.size
            if item.newest < cutoff and self._delete(item):
                result.expired.append(item)
                total -= item.size
            else:
                result.kept.append(item)
        for item in list(result.kept):  # oldest first
            if total <= self.max_bytes:
                break
            if self._delete(item):
                result.over_cap.append(item)
                result.kept.remove(item)
                total -= item.size
        result.held = sum(1 for item in result.kept if self.is_held(item.path))
        self._forget_orphans()
        log.info(result.line())
        return result

    def _forget_orphans(self) -> None:
        """Drop the records of items deleted by other means (not those being made now)."""
        for kind, folder in (("runs", self.runs_dir), (UPLOADS, self.upload_root)):
            for name in self.ledger.names(kind):
                with self.lock:
                    if not self.is_held(folder / name) and not (folder / name).exists():
                        self.ledger.forget(kind, name)

    def maybe_sweep(self) -> None:
        """Sweep in the background, unless a sweep ran within the interval or is running."""
        with self.lock:
            if self._running or time.monotonic() - self._last < self.interval:
                return
            self._running = True
            self._last = time.monotonic()
        try:
            self._thread.submit(self._background)
        except RuntimeError:  # closed: the server is stopping
            with self.lock:
                self._running = False

    def close(self) -> None:
        """Wait for a sweep in progress; sweep no more."""
        self._thread.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Retention:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def sweep_safely(self) -> Sweep | None:
        """:meth:`sweep`, logging (not raising) what went wrong: it must not stop the server."""
        try:
            return self.sweep()
        except Exception:
            log.exception("retention sweep failed")
            return None

    def _background(self) -> None:
        try:
            self.sweep_safely()
        finally:
            with self.lock:
                self._running = False

    def _delete(self, item: Stored) -> bool:
        with self.lock:
            if self.is_held(item.path):
                return False
            owner = self.owner_of(item.path)
            shutil.rmtree(item.path, ignore_errors=True)
            if item.path.exists():
                log.warning("retention sweep could not delete %s", item.path)
                return False
            self.ledger.forget("runs" if item.kind == "run" else UPLOADS, item.name)
            self._swept[item.name] = owner
            while len(self._swept) > REMEMBERED:
                self._swept.popitem(last=False)
            return True


def _measure(folder: Path) -> tuple[float, int]:
    """The newest modification time in ``folder`` (itself included) and its size in bytes."""
    newest, size = folder.lstat().st_mtime, 0
    for root, dirs, files in os.walk(folder):
        for names, is_file in ((dirs, False), (files, True)):
            for name in names:
                try:
                    info = os.lstat(os.path.join(root, name))
                except FileNotFoundError:
                    continue
                newest = max(newest, info.st_mtime)
                size += info.st_size if is_file else 0
    return newest, size
