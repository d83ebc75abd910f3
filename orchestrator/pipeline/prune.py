"""Pruning the run store: old runs, and the oldest ones while the store is over its size cap.

``orchestrator runs prune --older-than 30d --max-size 500MB`` and the config's
``max_store_mb`` (enforced whenever an orchestrator opens the store) both come here. A pruned
run loses its checkpoints, its pending writes, what a cancel left unrecorded, and its folder
``RUNS/<run id>`` (a folder the user chose with ``--out`` lies elsewhere and is kept). A run
another process holds (running, resuming) is skipped. The database file is compacted after a
prune (WAL checkpoint, then VACUUM); when another process keeps it busy, the space is reused by
later runs instead and the report says so. On PostgreSQL (``[store] url``) the same runs are
deleted from the database's tables; PostgreSQL reuses their space (autovacuum), so the store's
size there, for the report and ``max_store_mb``, is what the stored runs' rows take.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.config import Config
from orchestrator.errors import RunInProgress, UserError
from orchestrator.pipeline.store import PgStore, RunStore, run_lock, stored_run_ids

__all__ = ["PruneReport", "enforce_cap", "parse_age", "parse_size", "prune_runs", "store_bytes"]

_log = logging.getLogger(__name__)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_AGE_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|k|m|g)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``12h``, ``90m``, ``2w`` (a bare number is days)."""
    found = _AGE.match(text)
    if not found:
        raise UserError(f"cannot read the age {text!r}: write it as 30d, 12h, 90m or 2w")
    return float(found[1]) * _AGE_UNIT[(found[2] or "d").lower()]


def parse_size(text: str) -> int:
    """Bytes in a size such as ``500MB``, ``2GB``, ``800k`` (a bare number is megabytes)."""
    found = _SIZE.match(text)
    if not found:
        raise UserError(f"cannot read the size {text!r}: write it as 500MB, 2GB or 800KB")
    return int(float(found[1]) * _SIZE_UNIT[(found[2] or "mb").lower()])


def store_bytes(path: RunStore) -> int:
    """What the run store takes on disk: the database and its WAL and shared-memory files."""
    if isinstance(path, PgStore):
        return path.size()
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return sum(f.stat().st_size for f in files if f.is_file())


@dataclass
class PruneReport:
    """What a prune deleted (or, dry, would delete), kept, and freed."""

    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # run id -> why it was kept
    bytes_before: int = 0
    bytes_after: int = 0
    compacted: bool = True
    dry_run: bool = False

    def line(self) -> str:
        """One line for the terminal."""
        verb = "would delete" if self.dry_run else "deleted"
        text = f"{verb} {len(self.deleted)} run(s)"
        if not self.dry_run:
            text += f"; run store {_mb(self.bytes_before)} -> {_mb(self.bytes_after)}"
        if self.skipped:
            text += f"; kept {len(self.skipped)} in use"
        if not self.compacted:
            text += " (the store is busy: its file shrinks at a later prune; the space is reused)"
        return text


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _run_sizes(conn: sqlite3.Connection) -> dict[str, int]:
    sizes: dict[str, int] = {}
    queries = (
        "SELECT thread_id, SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints "
        "GROUP BY thread_id",
        "SELECT thread_id, SUM(LENGTH(value)) FROM writes GROUP BY thread_id",
    )
    for query in queries:
        with contextlib.suppress(sqlite3.OperationalError):  # a table not made yet
            for run_id, size in conn.execute(query):
                sizes[str(run_id)] = sizes.get(str(run_id), 0) + int(size or 0)
    return sizes


def _age(updated: Any, now: float) -> float:
    if not updated:
        return float("inf")  # never written properly: as old as can be
    try:
        return now - datetime.fromisoformat(str(updated)).timestamp()
    except ValueError:
        return float("inf")


def _chosen(
    rows: list[dict[str, Any]],
    sizes: dict[str, int],
    total: int,
    older_than_s: float | None,
    max_bytes: int | None,
    now: float,
) -> list[str]:
    """The runs to delete: those older than the age, then the oldest while over the cap."""
    by_age = sorted(rows, key=lambda r: -_age(r.get("updated"), now))
    chosen = [
        r["run_id"]
        for r in by_age
        if older_than_s is not None and _age(r.get("updated"), now) > older_than_s
    ]
    if max_bytes is not None:
        left = total - sum(sizes.get(r, 0) for r in chosen)
        for row in by_age:
            if left <= max_bytes:
                break
            if row["run_id"] not in chosen:
                chosen.append(row["run_id"])
                left -= sizes.get(row["run_id"], 0)
    return chosen


def _stored_runs(saver: Any, store: RunStore) -> list[dict[str, Any]]:
    """Each stored run's id and when it was last written (its latest checkpoint's time)."""
    rows = []
    for run_id in stored_run_ids(store):
        try:
            latest = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
            updated = latest.checkpoint.get("ts") if latest else None
        except Exception:  # noqa: BLE001 - an unreadable entry is as old as can be
            updated = None
        rows.append({"run_id": run_id, "updated": updated})
    return rows


def prune_runs(
    saver: Any,
    store: RunStore,
    runs_dir: Path,
    *,
    older_than_s: float | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Delete the stored runs older than ``older_than_s``, then the oldest while over ``max_bytes``.

    ``saver`` is the open checkpointer of ``store``; a run's age is that of its last write.
    """
    if older_than_s is None and max_bytes is None:
        raise UserError("say what to prune: --older-than AGE, --max-size SIZE, or both")
    report = PruneReport(bytes_before=store_bytes(store), dry_run=dry_run)
    if isinstance(store, Path) and not store.is_file():
        return report
    rows = _stored_runs(saver, store)
    if isinstance(store, PgStore):
        sizes = store.run_sizes()
    else:
        with contextlib.closing(sqlite3.connect(str(store), timeout=30)) as conn:
            sizes = _run_sizes(conn)
    total = sum(sizes.values())
    chosen = _chosen(rows, sizes, total, older_than_s, max_bytes, now or time.time())
    for run_id in chosen:
        if dry_run:
            report.deleted.append(run_id)
            continue
        try:
            with run_lock(store, run_id):
                saver.delete_thread(run_id)
                _forget_unrecorded(store, run_id)
                _remove_folder(runs_dir, run_id)
        except RunInProgress as exc:
            report.skipped[run_id] = str(exc)
            continue
        report.deleted.append(run_id)
    if isinstance(store, Path) and not dry_run:
        wal = store.with_name(store.name + "-wal")
        if report.deleted or wal.is_file() and wal.stat().st_size > 0:
            report.compacted = _compact(store)
    report.bytes_after = store_bytes(store)
    return report


def enforce_cap(saver: Any, store: RunStore, config: Config) -> PruneReport | None:
    """Prune the oldest runs while the store is over the config's ``max_store_mb`` (if set)."""
    cap = config.max_store_mb
    if cap is None or store_bytes(store) <= cap * 1e6:
        return None
    report = prune_runs(saver, store, config.runs_dir, max_bytes=int(cap * 1e6))
    if report.deleted:
        _log.info("run store over max_store_mb = %s: %s", cap, report.line())
    return report


def _forget_unrecorded(store: RunStore, run_id: str) -> None:
    if isinstance(store, PgStore):
        store.forget_unrecorded(run_id)
        return
    with contextlib.closing(sqlite3.connect(str(store), timeout=30)) as conn, conn:
        with contextlib.suppress(sqlite3.OperationalError):  # no run was ever cancelled
            conn.execute("DELETE FROM orchestrator_unrecorded WHERE run_id = ?", (run_id,))


def _remove_folder(runs_dir: Path, run_id: str) -> None:
    """The run's own folder ``RUNS/<run id>``; never a link, never a path outside RUNS."""
    folder = runs_dir / run_id
    if folder.is_symlink() or not folder.is_dir():
        return
    if folder.resolve().parent != runs_dir.resolve():
        return
    shutil.rmtree(folder, ignore_errors=True)


def _compact(store: Path) -> bool:
    """Give the freed pages back to the file system; False when another process is busy."""
    try:
        with contextlib.closing(sqlite3.connect(str(store), timeout=5)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:
        return False
    return not busy  # a reader's snapshot keeps the log: it is folded in at a later prune
