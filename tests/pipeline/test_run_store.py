"""The run store: WAL and a busy timeout so processes share it, and pruning by age and size."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _cli_tools import cli_env, run_cli

from orchestrator import Config, Orchestrator
from orchestrator.errors import UserError
from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.pipeline.prune import parse_age, parse_size, prune_runs, store_bytes
from orchestrator.pipeline.store import open_checkpointer, run_lock, stored_run_ids

LONG = "I really love this wonderful day " * 200  # runs big enough for the size cap to bite


def _orchestrator(tmp_path: Path, builtin_zoo, **config) -> Orchestrator:
    return Orchestrator(
        Config(runs_dir=tmp_path / "runs", **config),
        zoo=builtin_zoo,
        executor=InProcessExecutor(),
        checkpoint_path=tmp_path / "store.sqlite",
    )


def _runs(tmp_path: Path, builtin_zoo, count: int) -> list[str]:
    with _orchestrator(tmp_path, builtin_zoo) as orch:
        ids = []
        for i in range(count):
            result = orch.run(f'Is "{LONG} {i}" positive?')
            assert result.ok, result.message
            ids.append(result.run_id)
    return ids


def test_the_store_is_in_wal_mode_with_a_busy_timeout(tmp_path):
    saver = open_checkpointer(tmp_path / "store.sqlite")
    try:
        assert saver.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert saver.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    finally:
        saver.conn.close()


def test_two_processes_write_runs_to_one_store_at_once(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from orchestrator import Config, Orchestrator
        from orchestrator.execution.inprocess import InProcessExecutor
        config = Config(runs_dir={str(tmp_path / "runs")!r})
        with Orchestrator(config, executor=InProcessExecutor(),
                          checkpoint_path={str(tmp_path / "store.sqlite")!r}) as orch:
            for i in range(6):
                result = orch.run(f'Is "I love it, {{sys.argv[1]}} {{i}}" positive?')
                assert result.ok, result.message
                orch.runs()  # a reader too, while the other process writes
        """
    )
    env = cli_env()
    writers = [
        subprocess.Popen([sys.executable, "-c", script, name], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    errors = [w.communicate(timeout=600)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert len(stored_run_ids(tmp_path / "store.sqlite")) == 12


def test_prune_by_age_deletes_old_runs_their_folders_and_shrinks_the_store(tmp_path, builtin_zoo):
    ids = _runs(tmp_path, builtin_zoo, 4)
    store, runs = tmp_path / "store.sqlite", tmp_path / "runs"
    assert all((runs / i).is_dir() for i in ids)
    before = store_bytes(store)
    saver = open_checkpointer(store)
    try:
        # Nothing is a day old yet.
        kept = prune_runs(saver, store, runs, older_than_s=parse_age("1d"))
        assert kept.deleted == [] and stored_run_ids(store) == ids
        # An hour from now, every run is older than 30 minutes.
        later = time.time() + 3600
        dry = prune_runs(saver, store, runs, older_than_s=1800, dry_run=True, now=later)
        assert sorted(dry.deleted) == sorted(ids) and stored_run_ids(store) == ids
        report = prune_runs(saver, store, runs, older_than_s=1800, now=later)
    finally:
        saver.conn.close()
    assert sorted(report.deleted) == sorted(ids) and report.compacted
    assert stored_run_ids(store) == []
    assert not any((runs / i).exists() for i in ids)
    assert store_bytes(store) < before / 2, (before, store_bytes(store))


def test_a_size_cap_deletes_the_oldest_runs_first_and_skips_runs_in_use(tmp_path, builtin_zoo):
    ids = _runs(tmp_path, builtin_zoo, 5)
    store, runs = tmp_path / "store.sqlite", tmp_path / "runs"
    saver = open_checkpointer(store)
    try:
        total = prune_runs(saver, store, runs, max_bytes=10**12, dry_run=True)
        assert total.deleted == []
        with run_lock(store, ids[0]):  # another holder: a run being resumed
            report = prune_runs(saver, store, runs, max_bytes=store_bytes(store) // 3)
    finally:
        saver.conn.close()
    assert ids[0] in report.skipped and "in progress" in report.skipped[ids[0]]
    assert report.deleted == ids[1 : 1 + len(report.deleted)] and report.deleted
    assert ids[-1] in stored_run_ids(store) and ids[0] in stored_run_ids(store)


def test_the_configured_size_cap_is_kept_when_an_orchestrator_opens_the_store(
    tmp_path, builtin_zoo
):
    ids = _runs(tmp_path, builtin_zoo, 4)
    cap_mb = store_bytes(tmp_path / "store.sqlite") / 3 / 1e6
    with _orchestrator(tmp_path, builtin_zoo, max_store_mb=cap_mb):
        left = stored_run_ids(tmp_path / "store.sqlite")
    assert left and ids[-1] in left and ids[0] not in left


def test_prune_on_the_command_line_asks_before_deleting(tmp_path, builtin_zoo):
    ids = _runs(tmp_path, builtin_zoo, 2)
    env = cli_env(tmp_path)
    dry = run_cli("runs", "prune", "--older-than", "0s", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0 and all(i in dry.stdout for i in ids), dry.stderr
    asked = subprocess.run(  # no terminal to ask on: refused, nothing deleted
        [sys.executable, "-m", "orchestrator", "runs", "prune", "--older-than", "0s"],
        capture_output=True, text=True, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert asked.returncode == 2 and "--yes" in asked.stderr
    assert stored_run_ids(tmp_path / "store.sqlite") == ids
    bad = run_cli("runs", "prune", "--older-than", "soon", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "30d" in bad.stderr and "Traceback" not in bad.stderr
    done = run_cli("runs", "prune", "--older-than", "0s", "--yes", cwd=tmp_path, env=env)
    assert done.returncode == 0 and "deleted 2 run(s)" in done.stdout, done.stderr
    assert stored_run_ids(tmp_path / "store.sqlite") == []


@pytest.mark.parametrize(
    "text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2", 172800)]
)
def test_ages_read_as_people_write_them(text, seconds):
    assert parse_age(text) == seconds


def test_sizes_read_as_people_write_them_and_nonsense_is_refused():
    assert parse_size("500MB") == 500_000_000 and parse_size("2 gb") == 2_000_000_000
    assert parse_size("800k") == 800_000 and parse_size("3") == 3_000_000
    with pytest.raises(UserError, match="500MB"):
        parse_size("lots")


def test_a_store_another_process_keeps_busy_is_pruned_and_compacted_later(tmp_path, builtin_zoo):
    ids = _runs(tmp_path, builtin_zoo, 2)
    store = tmp_path / "store.sqlite"
    reader = sqlite3.connect(str(store))
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM checkpoints").fetchone()  # holds a read snapshot
    saver = open_checkpointer(store)
    try:
        report = prune_runs(saver, store, tmp_path / "runs", older_than_s=0, now=time.time() + 60)
    finally:
        saver.conn.close()
        reader.close()
    assert sorted(report.deleted) == sorted(ids) and stored_run_ids(store) == []
    assert not report.compacted and "busy" in report.line()
    # Once the reader is gone, the next prune folds the log in and the file shrinks.
    saver = open_checkpointer(store)
    try:
        later = prune_runs(saver, store, tmp_path / "runs", older_than_s=0)
    finally:
        saver.conn.close()
    assert later.deleted == [] and later.compacted
    assert store_bytes(store) < report.bytes_before / 2, (report.bytes_before, store_bytes(store))


def test_a_postgresql_url_in_the_config_or_the_environment_picks_the_postgres_store(
    tmp_path, monkeypatch
):
    from orchestrator.config import StoreConfig
    from orchestrator.pipeline.store import PgStore, checkpoints_path

    monkeypatch.delenv("ORCHESTRATOR_STORE_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CHECKPOINTS", raising=False)
    plain = Config(runs_dir=tmp_path / "runs")
    assert checkpoints_path(plain) == tmp_path / "runs" / "checkpoints.sqlite"  # the default
    url = "postgresql://orch:secret@db.example:5432/runs"
    assert checkpoints_path(Config(store=StoreConfig(url=url))) == PgStore(url)
    monkeypatch.setenv("ORCHESTRATOR_STORE_URL", "postgres://other@db/runs")
    assert checkpoints_path(plain) == PgStore("postgres://other@db/runs")  # over the config
    assert "secret" not in str(PgStore(url)) and "orch:***@db.example:5432" in str(PgStore(url))


def test_a_store_url_that_is_not_postgresql_or_a_database_that_is_down_says_what_to_fix(
    tmp_path,
):
    from orchestrator.evals.bench_server import free_port
    from orchestrator.pipeline.store import as_store

    with pytest.raises(UserError, match="mysql:// is not supported.*postgresql://"):
        as_store("mysql://me@db/runs")
    down = as_store(f"postgresql://orch@127.0.0.1:{free_port()}/runs")  # nothing listens there
    with pytest.raises(UserError, match=r"cannot open the run store .*\[store\] url"):
        open_checkpointer(down)
    with pytest.raises(UserError, match="cannot open the run store"):
        Orchestrator(Config(runs_dir=tmp_path), executor=InProcessExecutor(), checkpoint_path=down)
