"""The run store on a real PostgreSQL server (Debian's, started by the test: tests/_pg_tools.py).

Runs are made with the built-in sentiment card in-process; the command line reads the same
database through ``$ORCHESTRATOR_STORE_URL``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _cli_tools import cli_env, run_cli
from _pg_tools import PgServer

from orchestrator import Config, Orchestrator
from orchestrator.config import StoreConfig
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.pipeline.pg_store import PgStore
from orchestrator.pipeline.prune import prune_runs, store_bytes
from orchestrator.pipeline.store import (
    checkpoints_path,
    open_checkpointer,
    run_lock,
    stored_run_ids,
    unrecorded_spend,
)


@pytest.fixture(scope="module")
def pg():
    server = PgServer().start()
    yield server
    server.stop()


def _runs(tmp_path: Path, builtin_zoo, url: str, count: int) -> list[str]:
    config = Config(runs_dir=tmp_path / "runs", store=StoreConfig(url=url))
    assert checkpoints_path(config) == PgStore(url)
    with Orchestrator(config, zoo=builtin_zoo, executor=InProcessExecutor()) as orch:
        ids = []
        for i in range(count):
            result = orch.run(f'Is "I love this wonderful day {i}" positive?')
            assert result.ok, result.message
            ids.append(result.run_id)
    return ids


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    return cli_env(tmp_path, ORCHESTRATOR_STORE_URL=url)


def test_runs_are_listed_and_shown_from_postgres_by_another_process(pg, tmp_path, builtin_zoo):
    url = pg.database()
    ids = _runs(tmp_path, builtin_zoo, url, 2)
    assert stored_run_ids(PgStore(url)) == ids  # oldest first
    assert not (tmp_path / "store.sqlite").exists()  # nothing went to SQLite

    listed = run_cli("runs", "list", "--json", env=_env(tmp_path, url), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["run_id"] for r in rows] == ids
    assert all(r["status"] == "ok" and r["spent"]["calls"] == 1 for r in rows)
    shown = run_cli("runs", "show", ids[1], "--json", env=_env(tmp_path, url), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["request"] == 'Is "I love this wonderful day 1" positive?'


def test_a_cancel_s_unrecorded_spend_is_kept_in_postgres(pg, tmp_path, builtin_zoo):
    from orchestrator.pipeline.store import record_unrecorded

    url = pg.database()
    [run_id] = _runs(tmp_path, builtin_zoo, url, 1)
    store = PgStore(url)
    saver = open_checkpointer(store)
    try:
        snapshot_config = {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}}
        assert saver.get_tuple(snapshot_config) is not None

        class Stored:  # a snapshot whose attempts spent nothing: all the ledger spent is extra
            values: dict = {}
            tasks = ()

        ledger = {"usd": "0.25", "seconds": 2.0, "tokens": 7, "calls": 1, "wall_seconds": 3.0}
        record_unrecorded(store, run_id, Stored(), ledger)
        record_unrecorded(store, run_id, Stored(), {**ledger, "usd": "0.5"})  # replaces
    finally:
        saver.conn.close()
    kept = unrecorded_spend(store, run_id)
    assert kept["usd"] == "0.5" and kept["tokens"] == 7 and kept["wall_seconds"] == 3.0
    assert unrecorded_spend(store, "no-such-run") == {}


def test_prune_on_postgres_deletes_old_runs_and_skips_a_run_in_use(pg, tmp_path, builtin_zoo):
    url = pg.database()
    ids = _runs(tmp_path, builtin_zoo, url, 3)
    store, runs = PgStore(url), tmp_path / "runs"
    before = store_bytes(store)
    assert before > 0 and all((runs / i).is_dir() for i in ids)
    saver = open_checkpointer(store)
    try:
        later = time.time() + 3600
        dry = prune_runs(saver, store, runs, older_than_s=1800, dry_run=True, now=later)
        assert sorted(dry.deleted) == sorted(ids) and stored_run_ids(store) == ids
        with run_lock(store, ids[0]):  # another holder: a run being resumed
            report = prune_runs(saver, store, runs, older_than_s=1800, now=later)
    finally:
        saver.conn.close()
    assert "in progress" in report.skipped[ids[0]]
    assert sorted(report.deleted) == sorted(ids[1:])
    assert stored_run_ids(store) == [ids[0]]
    assert (runs / ids[0]).is_dir() and not any((runs / i).exists() for i in ids[1:])
    assert 0 < store_bytes(store) < before

    done = run_cli("runs", "prune", "--older-than", "0s", "--yes", env=_env(tmp_path, url))
    assert done.returncode == 0 and "deleted 1 run(s)" in done.stdout, done.stderr
    assert stored_run_ids(store) == [] and store_bytes(store) == 0


def test_a_run_lock_held_on_postgres_refuses_a_second_holder_until_released(pg):
    from orchestrator.errors import RunInProgress

    store = PgStore(pg.database())
    open_checkpointer(store).conn.close()
    with run_lock(store, "r1"):
        with pytest.raises(RunInProgress, match=r"run r1 is in progress .*orchestrator pid \d+"):
            with run_lock(store, "r1"):
                pass
        with run_lock(store, "r2"):  # another run is free
            pass
    with run_lock(store, "r1"):  # released
        pass
