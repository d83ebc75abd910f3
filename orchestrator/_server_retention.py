"""Retention of what ``orchestrator serve`` stores: uploads and the folders of its own runs.

The server stores two kinds of things, both under the runs folder: uploads
(``RUNS/uploads/file-ID/``) and the folders of the runs it starts (``RUNS/RUN_ID/``). It marks
each run folder it creates with an empty file :data:`MARKER`, so a sweep tells its own run
folders from those of ``orchestrator run`` in the same runs folder (which it never touches), and
knows them again after a restart. Nothing else is ever deleted: not the run store, not files in
the upload folder that do not look like an upload, not symbolic links.

A sweep deletes every stored item (an upload or a marked run folder) whose newest file is older
than ``[server] keep_files_hours``, then, while the total stored is above ``max_stored_mb``, the
oldest remaining ones. Items a run uses - its own folder, and the uploads and earlier runs'
files it reads, from the moment the request is accepted until the run ends, queued runs too -
are held and skipped. Holding and deleting take the same lock, so a request never picks up an
item a sweep is deleting. The server sweeps when it starts and, at most once per
:data:`SWEEP_INTERVAL_S`, after a run finishes or a file is uploaded; each sweep logs one line.

The ids of the last :data:`REMEMBERED` swept items are kept in memory, so a request for one is
told it expired (and how long files are kept) rather than that it never existed.
"""

from __future__ import annotations

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

from orchestrator._server_api import RequestRejected
from orchestrator.config import ServerConfig

__all__ = ["MARKER", "REMEMBERED", "SWEEP_INTERVAL_S", "Claim", "Retention", "Stored", "Sweep"]

log = logging.getLogger("orchestrator.server")

MARKER = ".orchestrator-serve"
"""The empty file that marks a run folder as made by the server (and so the server's to delete)."""
SWEEP_INTERVAL_S = 60.0
REMEMBERED = 100_000
UPLOADS = "uploads"

_UPLOAD_ID = re.compile(r"^file-[0-9a-f]{24}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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

    def __init__(self, retention: Retention, run_dir: Path) -> None:
        self.retention = retention
        self.run_dir = run_dir
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


class Retention:
    """Deletes what the server stored once it is old, or when too much is stored."""

    def __init__(
        self,
        runs_dir: Path,
        *,
        keep_hours: float,
        max_bytes: int,
        interval: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.runs_dir = runs_dir.resolve()
        self.upload_root = self.runs_dir / UPLOADS
        self.keep_hours = keep_hours
        self.max_bytes = max_bytes
        self.interval = interval
        self.lock = threading.RLock()
        self._held: Counter[Path] = Counter()
        self._swept: OrderedDict[str, None] = OrderedDict()
        self._last = float("-inf")
        self._running = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sweep")

    @classmethod
    def from_config(cls, runs_dir: Path, server: ServerConfig) -> Retention:
        """The retention ``[server]`` asks for."""
        return cls(
            runs_dir, keep_hours=server.keep_files_hours, max_bytes=server.max_stored_mb * 10**6
        )

    # --- holding ------------------------------------------------------------------------------

    def claim(self, run_dir: Path) -> Claim:
        """Hold a run's folder, then create it (marked as the server's)."""
        claim = Claim(self, run_dir)
        claim.add(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MARKER).touch()
        return claim

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

    def swept(self, name: str) -> bool:
        """Whether a sweep deleted the upload or run of this id (of the last REMEMBERED)."""
        with self.lock:
            return name in self._swept

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
                if kind == "run" and not os.path.isfile(os.path.join(entry.path, MARKER)):
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
        log.info(result.line())
        return result

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
            shutil.rmtree(item.path, ignore_errors=True)
            if item.path.exists():
                log.warning("retention sweep could not delete %s", item.path)
                return False
            self._swept[item.name] = None
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
