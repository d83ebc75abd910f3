"""The run store: where runs are checkpointed, what a stored run spent, and the per-run lock.

Every run is stored by a LangGraph SQLite checkpointer under its run id. A stored snapshot is
"live": its values already include the writes of the tasks that finished in a round a cancel or
a crash cut short, and its ``next`` lists only the tasks still to run, so an empty ``next`` does
not mean the run ended (the answer node, which always writes ``answer``, does).

A call stopped in flight (the second Ctrl-C stops the workers) writes no attempt, yet it was
made and paid for. When a run is cancelled, what its ledger spent beyond its stored attempts is
kept in a table of the same database (``orchestrator_unrecorded``), and :func:`carried_spend`
adds it, so a resumed run, ``runs list`` and ``runs show`` count it like the printed cost did.

The store can instead be a PostgreSQL database (``[store] url``): every function here takes
either the SQLite file's path or a :class:`~orchestrator.pipeline.pg_store.PgStore`, and does the
same on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.budget import Cost
from orchestrator.config import Config, env_checkpoints, env_store_url
from orchestrator.errors import RunInProgress, UserError
from orchestrator.pipeline.pg_store import PgStore, is_pg_url

__all__ = [
    "PgStore",
    "RunStore",
    "as_store",
    "cards_named",
    "carried_spend",
    "checkpoints_path",
    "finished",
    "open_checkpointer",
    "record_unrecorded",
    "run_lock",
    "settled_attempts",
    "store_exists",
    "stored_run_ids",
    "unrecorded_spend",
    "with_pending",
]


BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's write to the run store

RunStore = Path | PgStore
"""Where runs are stored: the SQLite file, or a PostgreSQL database."""


def checkpoints_path(config: Config) -> RunStore:
    """Where runs are stored.

    A PostgreSQL database when ``$ORCHESTRATOR_STORE_URL`` or the config's ``[store] url`` names
    one; else the SQLite file ``$ORCHESTRATOR_CHECKPOINTS``, the config's ``checkpoints``, else
    ``checkpoints.sqlite`` in the runs folder.
    """
    url = env_store_url() or config.store.url
    if url:
        return as_store(url)
    named = env_checkpoints() or config.checkpoints
    return Path(named) if named else config.runs_dir / "checkpoints.sqlite"


def as_store(where: str | Path | PgStore) -> RunStore:
    """A run store named by a SQLite path or a ``postgresql://`` URL."""
    if isinstance(where, PgStore):
        return where
    if isinstance(where, str) and "://" in where:
        if not is_pg_url(where):
            raise UserError(
                f"the run store {where.split('://')[0]}:// is not supported: name a SQLite file "
                "or a postgresql://USER@HOST:PORT/DATABASE URL"
            )
        return PgStore(where)
    return Path(where)


def store_exists(store: RunStore) -> bool:
    """Whether runs may be stored there already (a database always may)."""
    return isinstance(store, PgStore) or store.is_file()


def open_checkpointer(path: RunStore) -> Any:
    """A LangGraph checkpointer on the store (its file or tables created if missing)."""
    if isinstance(path, PgStore):
        return path.open_checkpointer()
    from langgraph.checkpoint.sqlite import SqliteSaver

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL: readers (``runs list``, a second server) never block the run writing; the busy
        # timeout makes writers from several processes wait for each other instead of failing.
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA journal_mode=WAL")
        saver = SqliteSaver(conn)
        saver.setup()
    except (OSError, sqlite3.Error) as exc:
        raise UserError(
            f"cannot open the run store {path}: {_reason(exc)}; set runs_dir (or "
            "$ORCHESTRATOR_RUNS_DIR, or checkpoints / $ORCHESTRATOR_CHECKPOINTS) to a folder "
            "you can write to"
        ) from exc
    return saver


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a part of that path is a file, not a folder"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def stored_run_ids(path: RunStore) -> list[str]:
    """The ids of the runs stored in a checkpoint database, oldest first (none: no file yet)."""
    if isinstance(path, PgStore):
        return path.run_ids()
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)) as conn:
        rows = conn.execute(
            "SELECT thread_id, MIN(rowid) FROM checkpoints GROUP BY thread_id ORDER BY 2"
        ).fetchall()
    return [str(r[0]) for r in rows]


def finished(values: dict[str, Any]) -> bool:
    """Whether a stored run reached its answer (the answer node always writes ``answer``)."""
    return values.get("answer") is not None


def with_pending(snapshot: Any) -> dict[str, Any]:
    """A stored run's values with the writes of its interrupted round merged in (once).

    Steps that finished in the round a cancel or a crash cut short are kept by the
    checkpointer as pending writes; this shows them as the resumed run will. A write the
    snapshot's values already hold is not added again.
    """
    values = dict(snapshot.values or {})
    for task in getattr(snapshot, "tasks", ()) or ():
        result = getattr(task, "result", None)
        if not isinstance(result, dict):
            continue
        for key, value in result.items():
            if isinstance(value, list):
                have = list(values.get(key) or [])
                values[key] = have + [item for item in value if item not in have]
            elif isinstance(value, dict):
                values[key] = {**(values.get(key) or {}), **value}
    return values


def settled_attempts(snapshot: Any) -> list[dict[str, Any]]:
    """Every attempt a stored run made, each once (pending writes included)."""
    attempts = with_pending(snapshot).get("attempts") or []
    return [a for a in attempts if isinstance(a, dict)]


def _attempts_cost(snapshot: Any) -> Cost:
    total = Cost()
    for a in settled_attempts(snapshot):
        total = total + Cost(
            Decimal(str(a.get("usd", "0"))),
            float(a.get("seconds", 0.0)) + float(a.get("load_seconds", 0.0)),
            int(a.get("tokens", 0)),
            int(a.get("calls", 0)),
        )
    return total


def _stored_cost(snapshot: Any) -> Cost:
    """What the stored state shows: its attempts and the run's own LLM calls (``overhead``)."""
    total = _attempts_cost(snapshot)
    for paid in (snapshot.values or {}).get("overhead") or []:
        total = total + Cost.from_dict(paid)
    return total


def carried_spend(snapshot: Any, unrecorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a stored run spent.

    Every settled attempt counts once (including those of a round that was interrupted, which
    the checkpointer keeps as pending writes), and the run's own LLM calls (``overhead``), plus
    ``unrecorded`` (what a cancel stopped in
    flight: :func:`unrecorded_spend`), and the last wall-clock reading.
    """
    extra = unrecorded or {}
    values = snapshot.values or {}
    total = _stored_cost(snapshot) + Cost.from_dict(extra)
    spent = values.get("spent") if isinstance(values.get("spent"), dict) else {}
    wall = max(float(spent.get("wall_seconds", 0.0)), float(extra.get("wall_seconds", 0.0)))
    return {**total.as_dict(), "wall_seconds": max(wall, total.seconds)}


_UNRECORDED_TABLE = (
    "CREATE TABLE IF NOT EXISTS orchestrator_unrecorded (run_id TEXT PRIMARY KEY, spent TEXT)"
)


def unrecorded_spend(store: RunStore | None, run_id: str) -> dict[str, Any]:
    """What a run spent that its stored attempts do not show, as of its last cancel ({}: none)."""
    if isinstance(store, PgStore):
        found = store.unrecorded(run_id)
        return json.loads(found) if found else {}
    if store is None or not store.exists():
        return {}
    with contextlib.closing(sqlite3.connect(str(store), timeout=BUSY_TIMEOUT_S)) as conn:
        conn.execute(_UNRECORDED_TABLE)
        row = conn.execute(
            "SELECT spent FROM orchestrator_unrecorded WHERE run_id = ?", (run_id,)
        ).fetchone()
    return json.loads(row[0]) if row else {}


def record_unrecorded(store: RunStore, run_id: str, snapshot: Any, ledger: dict[str, Any]) -> None:
    """Keep what the run's ledger spent beyond the attempts stored in ``snapshot``.

    ``ledger`` is the ledger's snapshot at the cancel; it already carries what earlier stops
    left unrecorded, so the stored amount replaces the earlier one.
    """
    spent, stored = Cost.from_dict(ledger), _stored_cost(snapshot)
    extra = Cost(
        max(spent.usd - stored.usd, Decimal(0)),
        max(spent.seconds - stored.seconds, 0.0),
        max(spent.tokens - stored.tokens, 0),
        max(spent.calls - stored.calls, 0),
    )
    row = json.dumps({**extra.as_dict(), "wall_seconds": float(ledger.get("wall_seconds", 0.0))})
    if isinstance(store, PgStore):
        store.record_unrecorded(run_id, row)
        return
    with contextlib.closing(sqlite3.connect(str(store), timeout=BUSY_TIMEOUT_S)) as conn, conn:
        conn.execute(_UNRECORDED_TABLE)
        conn.execute("INSERT OR REPLACE INTO orchestrator_unrecorded VALUES (?, ?)", (run_id, row))


def _lock_file(store: Path, run_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:80]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return store.parent / f".{store.name}.locks" / f"{safe}-{digest}.lock"


@contextlib.contextmanager
def run_lock(store: RunStore, run_id: str) -> Iterator[None]:
    """Hold the exclusive lock of one run (an ``flock`` on a file next to the run store).

    A second holder, in this process or another, gets :class:`RunInProgress` naming the pid
    of the first. The lock is released when the block ends or the process dies. On PostgreSQL
    it is an advisory lock of the database (:meth:`PgStore.lock`).
    """
    if isinstance(store, PgStore):
        with store.lock(run_id):
            yield
        return
    path = _lock_file(store, run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot create the lock file {path}: {_reason(exc)}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunInProgress(
                f"run {run_id} is in progress in another process (pid {holder}); wait for it "
                f"to end, then see it with: orchestrator runs show {run_id}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def cards_named(values: dict[str, Any]) -> set[str]:
    """Every card a stored run's routing may look up: candidates, attempts, results."""
    names: set[str] = set()
    for selection in (values.get("selections") or {}).values():
        names.update(c["card"] for c in selection.get("candidates", []) if c.get("card"))
    names.update(a["card"] for a in values.get("attempts") or [] if a.get("card"))
    names.update(r["card"] for r in (values.get("results") or {}).values() if r.get("card"))
    return names
