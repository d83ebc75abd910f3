"""The run store on PostgreSQL, which several processes on several machines share.

``[store] url = "postgresql://..."`` (or ``$ORCHESTRATOR_STORE_URL``) puts runs in a PostgreSQL
database through LangGraph's Postgres checkpointer instead of the SQLite file. Everything the
SQLite store keeps has its place here: the checkpoints and pending writes (the checkpointer's
tables), what a cancel left unrecorded (``orchestrator_unrecorded``), and the per-run lock, a
session advisory lock that the database drops by itself when the process holding it dies (a
server killed mid-run frees its runs for another server to resume). Only file contents stay on
disk, in ``runs_dir``, which replicas must share (see README, "Scaling out").

Each call opens its own short connection, so nothing here is shared between threads; the
checkpointer keeps one connection, which it serializes with its own lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrator.errors import RunInProgress, UserError

__all__ = ["SCHEMES", "PgStore", "is_pg_url"]

SCHEMES = ("postgresql://", "postgres://")
_NAMESPACE = 0x4F52  # the first key of every advisory lock this store takes
_SETUP_KEY = 0  # the second key while tables are made (two servers starting at once)
_UNRECORDED = (
    "CREATE TABLE IF NOT EXISTS orchestrator_unrecorded (run_id TEXT PRIMARY KEY, spent TEXT)"
)


def is_pg_url(text: str | None) -> bool:
    """Whether ``text`` names a PostgreSQL database."""
    return bool(text) and str(text).startswith(SCHEMES)


def _run_key(run_id: str) -> int:
    """The second advisory-lock key of a run (31 bits of its hash)."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class PgStore:
    """A PostgreSQL run store, named by its connection URL."""

    url: str

    def __str__(self) -> str:
        """The URL without its password (it appears in messages)."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def connect(self, **options: Any) -> Any:
        """A new autocommit connection (a UserError says what to fix when there is none)."""
        try:
            import psycopg
        except ImportError as exc:
            raise UserError(
                "a PostgreSQL run store needs psycopg and langgraph-checkpoint-postgres: "
                "pip install 'orchestrator[postgres]'"
            ) from exc
        try:
            return psycopg.connect(self.url, autocommit=True, **options)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"cannot open the run store {self}: {reason}; start the PostgreSQL server or fix "
                "[store] url (or $ORCHESTRATOR_STORE_URL)"
            ) from exc

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def ensure(self, ddl: Sequence[str]) -> None:
        """Run ``ddl`` (``CREATE ... IF NOT EXISTS``) one process at a time."""
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (_NAMESPACE, _SETUP_KEY))
            try:
                for statement in ddl:
                    conn.execute(statement)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_NAMESPACE, _SETUP_KEY))

    def open_checkpointer(self) -> Any:
        """LangGraph's Postgres checkpointer on this database, its tables made if missing."""
        self.connect().close()  # a clear error first, and the package check
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        conn = self.connect(prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn)
        try:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (_NAMESPACE, _SETUP_KEY))
            try:
                saver.setup()
                conn.execute(_UNRECORDED)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_NAMESPACE, _SETUP_KEY))
        except Exception:
            conn.close()
            raise
        return saver

    def run_ids(self) -> list[str]:
        """The ids of the stored runs, oldest first (checkpoint ids grow with time)."""
        with self._conn() as conn:
            if not self._has("checkpoints", conn):
                return []
            rows = conn.execute(
                "SELECT thread_id FROM checkpoints GROUP BY thread_id ORDER BY MIN(checkpoint_id)"
            ).fetchall()
        return [str(r[0]) for r in rows]

    @staticmethod
    def _has(table: str, conn: Any) -> bool:
        return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

    def unrecorded(self, run_id: str) -> str | None:
        """The stored JSON of what a cancel left unrecorded of a run (None: nothing)."""
        with self._conn() as conn:
            if not self._has("orchestrator_unrecorded", conn):
                return None
            row = conn.execute(
                "SELECT spent FROM orchestrator_unrecorded WHERE run_id = %s", (run_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def record_unrecorded(self, run_id: str, spent: str) -> None:
        """Keep (replace) the JSON of what a cancel left unrecorded of a run."""
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO orchestrator_unrecorded (run_id, spent) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET spent = EXCLUDED.spent",
                (run_id, spent),
            )

    def forget_unrecorded(self, run_id: str) -> None:
        """Drop a pruned run's unrecorded spend."""
        with self._conn() as conn:
            conn.execute("DELETE FROM orchestrator_unrecorded WHERE run_id = %s", (run_id,))

    def size(self) -> int:
        """Bytes the stored runs' rows take (PostgreSQL reuses the space of deleted rows)."""
        return sum(self.run_sizes().values())

    def run_sizes(self) -> dict[str, int]:
        """Bytes each run's rows take (checkpoints, channel values, pending writes)."""
        queries = (
            "SELECT thread_id, SUM(pg_column_size(checkpoint) + pg_column_size(metadata)) "
            "FROM checkpoints GROUP BY thread_id",
            "SELECT thread_id, SUM(COALESCE(pg_column_size(blob), 0)) FROM checkpoint_blobs "
            "GROUP BY thread_id",
            "SELECT thread_id, SUM(pg_column_size(blob)) FROM checkpoint_writes GROUP BY thread_id",
        )
        sizes: dict[str, int] = {}
        with self._conn() as conn:
            if not self._has("checkpoints", conn):
                return sizes
            for query in queries:
                for run_id, size in conn.execute(query).fetchall():
                    sizes[str(run_id)] = sizes.get(str(run_id), 0) + int(size or 0)
        return sizes

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold one run's lock: a session advisory lock on a connection kept for the block.

        A second holder, in this process or any other sharing the database, gets
        :class:`RunInProgress`. The database releases the lock when the block ends, or when the
        holding process dies and its connection drops.
        """
        conn = self.connect(application_name=f"orchestrator pid {os.getpid()}")
        try:
            key = _run_key(run_id)
            taken = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (_NAMESPACE, key)
            ).fetchone()[0]
            if not taken:
                raise RunInProgress(
                    f"run {run_id} is in progress in another process ({self._holder(conn, key)}); "
                    f"wait for it to end, then see it with: orchestrator runs show {run_id}"
                )
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a dropped connection has freed it already
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_NAMESPACE, key))
        finally:
            conn.close()

    @staticmethod
    def _holder(conn: Any, key: int) -> str:
        row = conn.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
            (_NAMESPACE, key),
        ).fetchone()
        if row is None:
            return "it has just ended"
        name, address = row
        return f"{name or 'unknown'}" + (f" on {address}" if address else "")
