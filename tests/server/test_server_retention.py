"""Retention of what ``orchestrator serve`` stores: real files, real runs, a real server."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from _server_tools import SENTIMENT, launch_server, png_bytes

from orchestrator.server.guard import ANONYMOUS
from orchestrator.server.retention import Ledger, Retention

MB = 10**6
OLD_UPLOAD = "file-" + "a" * 24
NEW_UPLOAD = "file-" + "b" * 24
OLD_RUN = "0ld0ld0ld0ld"
NEW_RUN = "n3wn3wn3wn3w"


def uuid_hex() -> str:
    return uuid.uuid4().hex[:24]


def _age(path: Path, hours: float) -> None:
    """Make ``path`` and everything in it look last written ``hours`` ago."""
    when = time.time() - hours * 3600
    for item in [*path.rglob("*"), path]:
        os.utime(item, (when, when), follow_symlinks=False)


def _upload(runs: Path, file_id: str, hours: float, size: int = 1000) -> Path:
    """An upload as the server keeps it, made by a client that sent no key (as httpx here)."""
    folder = runs / "uploads" / file_id
    folder.mkdir(parents=True)
    (folder / "photo.png").write_bytes(png_bytes() + b"\0" * size)
    Ledger(runs.resolve()).record("uploads", file_id, ANONYMOUS)
    _age(folder, hours)
    return folder


def _server_run(runs: Path, run_id: str, hours: float, size: int = 1000) -> Path:
    """A run folder the server made (recorded in its ledger) for a client that sent no key."""
    folder = runs / run_id
    (folder / "inputs").mkdir(parents=True)
    Ledger(runs.resolve()).record("runs", run_id, ANONYMOUS)
    (folder / "speech.wav").write_bytes(b"RIFF" + b"\0" * size)
    _age(folder, hours)
    return folder


def _retention(runs: Path, hours: float = 24, max_mb: float = 2000) -> Retention:
    return Retention(runs, keep_hours=hours, max_bytes=int(max_mb * MB))


# --- the sweep, on real files ----------------------------------------------------------------


def test_old_uploads_and_server_runs_go_fresh_ones_and_others_files_stay(tmp_path):
    runs = tmp_path / "runs"
    old_upload, new_upload = _upload(runs, OLD_UPLOAD, 30), _upload(runs, NEW_UPLOAD, 1)
    old_run, new_run = _server_run(runs, OLD_RUN, 30), _server_run(runs, NEW_RUN, 23)
    unmarked = runs / "c11c11c11c11"  # a run folder of `orchestrator run`: no marker
    (unmarked / "out.wav").parent.mkdir()
    (unmarked / "out.wav").write_bytes(b"RIFF")
    store = runs / "checkpoints.sqlite"
    store.write_bytes(b"SQLite format 3\0")
    stray = runs / "uploads" / "notes"  # in the upload root, but not an upload
    stray.mkdir()
    for path in (unmarked, store, stray):
        _age(path, 100)

    with _retention(runs) as retention:
        sweep = retention.sweep()

    assert not old_upload.exists() and not old_run.exists()
    assert new_upload.exists() and new_run.exists()
    assert unmarked.exists() and store.exists() and stray.exists()
    assert sorted(item.name for item in sweep.expired) == sorted([OLD_UPLOAD, OLD_RUN])
    assert sweep.over_cap == [] and len(sweep.kept) == 2
    assert sweep.freed > 2000
    assert retention.swept(OLD_UPLOAD) and retention.swept(OLD_RUN)
    assert not retention.swept(NEW_UPLOAD)
    assert "deleted 1 uploads and 1 run folders (2 expired, 0 over the size cap)" in sweep.line()


def test_the_size_cap_deletes_the_oldest_first(tmp_path):
    runs = tmp_path / "runs"
    made = [
        _upload(runs, "file-" + "1" * 24, 4, size=400_000),
        _server_run(runs, "run000000003", 3, size=400_000),
        _upload(runs, "file-" + "2" * 24, 2, size=400_000),
        _server_run(runs, "run000000001", 1, size=400_000),
    ]
    with _retention(runs, max_mb=1) as retention:
        sweep = retention.sweep()
    assert [item.path for item in sweep.over_cap] == made[:2]  # oldest first, no further
    assert sweep.expired == []
    assert [path.exists() for path in made] == [False, False, True, True]
    assert sum(item.size for item in sweep.kept) <= MB
    assert "0 expired, 2 over the size cap" in sweep.line()


def test_a_held_item_survives_and_goes_once_released(tmp_path):
    runs = tmp_path / "runs"
    upload = _upload(runs, OLD_UPLOAD, 30)
    with _retention(runs) as retention:
        claim = retention.claim(runs / "r1", ANONYMOUS)
        assert claim.add(upload / "photo.png")
        _age(runs / "r1", 30)
        sweep = retention.sweep()
        assert upload.exists() and retention.ledger.owner("runs", "r1") == ANONYMOUS
        assert sweep.deleted == [] and sweep.held == 2
        claim.release()
        claim.release()  # twice is harmless
        assert {item.name for item in retention.sweep().expired} == {OLD_UPLOAD, "r1"}
    assert not upload.exists()


def test_a_refused_request_leaves_no_run_folder(tmp_path):
    runs = tmp_path / "runs"
    with _retention(runs) as retention:
        claim = retention.claim(runs / "r2", ANONYMOUS)
        (runs / "r2" / "inputs").mkdir()
        claim.abandon()
    assert not (runs / "r2").exists()
    assert Ledger(runs.resolve()).names("runs") == []


def test_a_marker_file_inside_a_run_folder_makes_it_nobodys_to_sweep(tmp_path):
    """What the server deletes is in its ledger, which lies outside every run folder."""
    runs = tmp_path / "runs"
    cli_run = runs / "c11c11c11c11"  # `orchestrator run`'s folder, where tools write
    cli_run.mkdir(parents=True)
    for forged in (".orchestrator-serve", ".orchestrator-server", "MARKER"):
        (cli_run / forged).write_text("")
    (cli_run / "speech.wav").write_bytes(b"RIFF" + b"\0" * 1000)
    _age(cli_run, 100)
    with _retention(runs, max_mb=0.000001) as retention:  # old, and over any size cap
        sweep = retention.sweep()
    assert sweep.deleted == [] and (cli_run / "speech.wav").exists()


def test_symbolic_links_are_not_followed(tmp_path):
    runs = tmp_path / "runs"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    run = _server_run(runs, OLD_RUN, 30)
    (run / "link").symlink_to(outside)
    (runs / "linkedrun001").symlink_to(outside)  # looks like a recorded run, is a link
    Ledger(runs.resolve()).record("runs", "linkedrun001", ANONYMOUS)
    _age(outside, 30)
    _age(run, 30)
    with _retention(runs) as retention:
        sweep = retention.sweep()
    assert [item.name for item in sweep.expired] == [OLD_RUN]
    assert (outside / "keep.txt").read_text() == "mine" and (runs / "linkedrun001").is_symlink()


def test_background_sweeps_run_at_most_once_per_interval(tmp_path):
    runs = tmp_path / "runs"
    _upload(runs, OLD_UPLOAD, 30)
    with Retention(runs, keep_hours=24, max_bytes=MB, interval=3600) as retention:
        retention.maybe_sweep()
        deadline = time.monotonic() + 30
        while not retention.swept(OLD_UPLOAD):
            assert time.monotonic() < deadline, "the background sweep did not run"
            time.sleep(0.05)
        again = _upload(runs, NEW_UPLOAD, 30)
        retention.maybe_sweep()  # within the interval: no sweep
    assert again.exists()


# --- runs in flight keep what they use ---------------------------------------------------------


def test_uploads_and_folders_of_running_and_queued_runs_survive_a_sweep(
    orchestrator, builtin_zoo, tmp_path
):
    from orchestrator.budget import Budget
    from orchestrator.config import Config, ServerConfig
    from orchestrator.server.runs import RunJob, RunService

    runs = Path(orchestrator.config.runs_dir).resolve()  # shared with Orchestrator.run
    direct = orchestrator.run(SENTIMENT)  # a run folder the server did not make
    assert direct.status == "ok" and Path(direct.run_dir).parent == runs
    _age(Path(direct.run_dir), 100)
    upload = _upload(runs, "file-" + uuid_hex(), 30)
    server = ServerConfig(max_concurrent_runs=1, keep_files_hours=1)
    config = Config(runs_dir=runs, server=server)
    service = RunService(config, builtin_zoo, orchestrator=orchestrator)
    retention = service.retention

    def job(prompt: str, files: list[Path]) -> RunJob:
        run_id = "held" + uuid_hex()[:8]
        claim = retention.claim(runs / run_id, ANONYMOUS)
        for path in files:
            assert claim.add(path)
        _age(runs / run_id, 30)
        return RunJob(run_id, prompt, files, Budget(calls=5), runs / run_id, claim=claim)

    async def run_two() -> tuple[object, object, list[str]]:
        loop = asyncio.get_running_loop()
        long_words = " ".join(["a slow sentence for the voice to read"] * 4)
        running = service.start(job(f"Read this aloud: '{long_words}'", []), loop)
        queued = service.start(
            job("How many faces are in this photo?", [upload / "photo.png"]), loop
        )
        assert service.active == 2  # one running, one waiting for the only thread
        sweep = await asyncio.to_thread(retention.sweep)
        return await running.result(), await queued.result(), [i.name for i in sweep.deleted]

    try:
        spoken, counted, deleted = asyncio.run(run_two())
    finally:
        service.close()
    assert deleted == []  # everything old was in use (and the direct run is not the server's)
    assert spoken.status == "ok" and counted.status == "ok"
    assert counted.steps[0].card == "haar-faces"  # it read the upload after the sweep
    assert Path(direct.run_dir).exists()
    ended = (runs / spoken.run_id, runs / counted.run_id, upload)
    for path in ended:
        _age(path, 30)  # the runs wrote into their folders: make them old again
    with Retention(runs, keep_hours=1, max_bytes=2000 * MB) as later:  # the runs have ended
        later.sweep()
    for path in ended:
        assert not path.exists(), path
    assert Path(direct.run_dir).exists()


# --- the server: sweeps at start and after runs, 404s that say the file expired ----------------


@pytest.fixture(scope="module")
def swept_server(tmp_path_factory, orchestrator):
    workdir = tmp_path_factory.mktemp("retention")
    runs = workdir / "runs"
    _upload(runs, OLD_UPLOAD, 3)
    _upload(runs, NEW_UPLOAD, 0.5)
    _server_run(runs, OLD_RUN, 3)
    direct = orchestrator.run(SENTIMENT, out_dir=runs / "direct000001")
    assert direct.status == "ok"
    _age(runs / "direct000001", 100)
    config = "[budget]\ncalls = 10\n\n[server]\nkeep_files_hours = 2\nmax_stored_mb = 50\n"
    proc = launch_server(workdir, config=config)
    try:
        yield proc
    finally:
        proc.stop()


def _chat(server, content):
    body = {"model": "orchestrator", "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)


def test_the_server_sweeps_at_start_and_logs_it(swept_server):
    runs = swept_server.workdir / "runs"
    assert not (runs / "uploads" / OLD_UPLOAD).exists() and not (runs / OLD_RUN).exists()
    assert (runs / "uploads" / NEW_UPLOAD).exists()
    assert (runs / "direct000001").exists()  # made by Orchestrator.run, not by the server
    assert "retention sweep: deleted 1 uploads and 1 run folders" in swept_server.log()


def test_a_swept_file_is_a_404_saying_it_expired(swept_server):
    response = httpx.get(f"{swept_server.base_url}/v1/files/{OLD_RUN}/speech.wav", timeout=30)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "file_expired" and error["type"] == "not_found_error"
    assert "has expired" in error["message"] and "for 2 hours" in error["message"]
    attached = _chat(
        swept_server,
        [
            {"type": "text", "text": "How many faces are in this photo?"},
            {"type": "file", "file": {"file_id": OLD_UPLOAD}},
        ],
    )
    assert attached.status_code == 404
    error = attached.json()["error"]
    assert error["code"] == "file_expired" and "2 hours" in error["message"]
    assert error["param"] == "messages.0.content.1.file.file_id"


def test_a_file_that_never_existed_is_told_apart(swept_server):
    never = httpx.get(f"{swept_server.base_url}/v1/files/{NEW_RUN}/speech.wav", timeout=30)
    assert never.status_code == 404 and never.json()["error"]["code"] == "file_not_found"
    unknown = _chat(
        swept_server,
        [
            {"type": "text", "text": "How many faces are in this photo?"},
            {"type": "file", "file": {"file_id": "file-" + "c" * 24}},
        ],
    )
    error = unknown.json()["error"]
    assert unknown.status_code == 404 and error["code"] == "file_not_found"
    assert "no uploaded file" in error["message"] and "2 hours" in error["message"]
    runs = swept_server.workdir / "runs"
    assert Ledger(runs).names("runs") == []  # the refused requests left no run folder
    assert sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name[0] != ".") == [
        "direct000001",
        "uploads",
    ]


def test_a_finished_run_is_marked_and_triggers_a_sweep(swept_server):
    runs = swept_server.workdir / "runs"
    _age(runs / "uploads" / NEW_UPLOAD, 3)  # expired now; the next sweep comes after a run
    response = _chat(swept_server, SENTIMENT)
    assert response.status_code == 200, response.text
    run_id = response.json()["orchestrator"]["run_id"]
    assert Ledger(runs).owner("runs", run_id) == ANONYMOUS
    deadline = time.monotonic() + 30
    while (runs / "uploads" / NEW_UPLOAD).exists():
        assert time.monotonic() < deadline, "no sweep after the run"
        time.sleep(0.1)
    assert (runs / run_id).exists() and (runs / "direct000001").exists()
    # The sweep logs its line after deleting: wait for it too.
    while swept_server.log().count("retention sweep:") < 2:
        assert time.monotonic() < deadline, "the sweep after the run logged nothing"
        time.sleep(0.1)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("keep_files_hours = 0", "server.keep_files_hours"),
        ("keep_files_hours = -3", "server.keep_files_hours"),
        ("max_stored_mb = 0", "server.max_stored_mb"),
    ],
)
def test_bad_retention_settings_are_refused(tmp_path, line, field):
    from orchestrator.config import Config
    from orchestrator.errors import ConfigError

    path = tmp_path / "orchestrator.toml"
    path.write_text(f"[server]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=field):
        Config.load(path)


def test_serve_refuses_a_zero_retention(tmp_path):
    config = "[server]\nkeep_files_hours = 0\n"
    proc = launch_server(tmp_path, config=config, wait=False)
    try:
        assert proc.proc.wait(timeout=60) == 2
    finally:
        proc.stop()
    assert "server.keep_files_hours" in proc.log() and "greater than 0" in proc.log()


def test_the_defaults():
    from orchestrator.config import ServerConfig

    server = ServerConfig()
    assert server.keep_files_hours == 24 and server.max_stored_mb == 2000
