"""The attack suite: each attack is a real program run through the sandbox, and must be stopped.

Programs are in tests/attacks/ (they print ESCAPED or BLOCKED); they run through
``orchestrator.execution.sandbox.run_file.run_source``, the same sandbox a tool's worker gets. The
last attacks go through the worker pool itself (results that are huge, not UTF-8, or symlinks).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.cards import ToolCard
from orchestrator.cards.backend import CallContext
from orchestrator.errors import ToolFailed
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.execution.sandbox import Sandbox
from orchestrator.execution.sandbox.probe import probe_host
from orchestrator.execution.sandbox.run_file import ExecResult, run_source

ATTACKS = Path(__file__).resolve().parents[2] / "attacks"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory):
    """A secret file in the real home, a secret in our environment, a host folder."""
    token = uuid.uuid4().hex
    secret_file = Path.home() / f".orchestrator-attack-secret-{token[:8]}"
    secret_file.write_text(f"secret-{token}")
    env_name = f"ORCH_ATTACK_SECRET_{token[:8].upper()}"
    os.environ[env_name] = f"envsecret-{token}"
    outside = tmp_path_factory.mktemp("outside")
    try:
        yield {
            "SECRET_PATH": str(secret_file),
            "SECRET_ENV": env_name,
            "SECRET_VALUE": f"envsecret-{token}",
            "OUTSIDE_DIR": str(outside),
            "PARENT_PID": str(os.getpid()),
        }
    finally:
        secret_file.unlink(missing_ok=True)
        del os.environ[env_name]


def attack(name: str, values: dict[str, str], **limits: object) -> ExecResult:
    source = (ATTACKS / f"{name}.py").read_text()
    for key, value in values.items():
        source = source.replace(f"@{key}@", value)
    limits.setdefault("timeout_s", 20.0)
    result = run_source(source.encode(), f"{name}.py", capture=True, **limits)  # type: ignore[arg-type]
    return result


def out(result: ExecResult) -> str:
    return result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")


def assert_blocked(result: ExecResult) -> None:
    text = out(result)
    assert "ESCAPED" not in text and "WROTE" not in text, text
    assert "BLOCKED" in text, text


@pytest.mark.parametrize(
    "name",
    [
        "net_internet",
        "read_home_secret",
        "env_secret",
        "proc_environ",
        "remount_ro",
        "ptrace_parent",
        "signal_parent",
        "symlink_out",
        "hardlink_out",
        "new_userns",
        "etc_shadow",
        "kernel_keyring",
        "open_files",
        "shared_library",
    ],
)
def test_attack_is_blocked(name: str, secrets: dict[str, str]) -> None:
    result = attack(name, secrets)
    assert_blocked(result)
    assert result.code == 0, out(result)


def test_connect_to_a_host_server_is_blocked(secrets: dict[str, str]) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = server.getsockname()[1]
        result = attack("net_localhost", {**secrets, "PORT": str(port)})
    finally:
        stop.set()
        thread.join()
        server.close()
    assert_blocked(result)
    assert accepted == []


def test_an_approved_endpoint_on_the_hosts_localhost_is_reached(secrets: dict[str, str]) -> None:
    from orchestrator.execution.sandbox.policy import Policy

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    source = (
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('ok')"
    )
    policy = Policy(network=(f"127.0.0.1:{port}",), label="exec")
    try:
        result = run_source(source.encode(), policy=policy, capture=True, timeout_s=20)
    finally:
        server.close()
    assert b"ok" in result.stdout, out(result)


def test_writing_outside_scratch_is_blocked(secrets: dict[str, str]) -> None:
    result = attack("write_outside", secrets)
    assert_blocked(result)
    assert not (Path(secrets["OUTSIDE_DIR"]) / "pwned").exists()
    assert not Path(sys.prefix, "pwned").exists()


def test_remounting_is_blocked_and_venv_untouched(secrets: dict[str, str]) -> None:
    assert_blocked(attack("remount_ro", secrets))
    assert not Path(sys.prefix, "pwned").exists()


def _marked(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    stat = (entry / "stat").read_text()
                    if stat.rpartition(")")[2].split()[0] != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_setsid_double_fork_does_not_survive_the_timeout(secrets: dict[str, str]) -> None:
    marker = f"escapee-{uuid.uuid4().hex}"
    started = time.monotonic()
    result = attack("setsid_escape", {**secrets, "MARKER": marker}, timeout_s=2.0)
    assert "timed out after 2 s" in result.reason
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 2
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked(marker) == [], "the setsid escapee outlived the sandbox"


def test_fork_bomb_is_contained(secrets: dict[str, str]) -> None:
    started = time.monotonic()
    result = attack("fork_bomb", secrets, timeout_s=20.0)
    text = out(result)
    assert "ESCAPED" not in text, text
    assert "BLOCKED" in text or result.stopped, text
    assert time.monotonic() - started < 25


def test_memory_bomb_is_killed(secrets: dict[str, str]) -> None:
    result = attack("memory_bomb", secrets, memory_mb=512)
    text = out(result)
    assert "ESCAPED" not in text, text
    assert result.code != 0
    assert "memory" in result.reason or "MemoryError" in text, (result.reason, text)


def test_cpu_spin_is_stopped_by_the_timeout(secrets: dict[str, str]) -> None:
    started = time.monotonic()
    result = attack("cpu_spin", secrets, timeout_s=1.5)
    assert "timed out after 1.5 s" in result.reason
    assert time.monotonic() - started < 6


def test_disk_fill_is_capped(secrets: dict[str, str]) -> None:
    result = attack("disk_fill", secrets, timeout_s=60.0)
    text = out(result)
    assert_blocked(result)
    written = int(text.split("after ")[1].split(" MB")[0])
    assert written <= 2 * 512 + 64, text  # two tmpfs of 512 MB at most


def test_loading_a_library_from_scratch_is_blocked(secrets: dict[str, str]) -> None:
    assert_blocked(attack("shared_library", secrets))


# --- attacks through the worker pool (results sent back to the orchestrator) ---


def _card(name: str) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": name,
            "task": "text-generation",
            "description": "A tool that attacks the orchestrator through its results.",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [
                {"name": "reply", "type": "text"},
                {"name": "picture", "type": "image", "optional": True},
            ],
            "backend": {"kind": "python", "entry": "attacks.tool:load"},
            "cost": {"latency_s": 0.01, "load_s": 0.1},
        }
    )


@pytest.fixture(scope="module")
def pool():
    tests_dir = str(Path(__file__).resolve().parents[2])
    with WorkerPoolExecutor(extra_sys_path=[tests_dir], max_result_bytes=8 * 1024 * 1024) as p:
        yield p


def test_huge_result_fails_cleanly(pool: WorkerPoolExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path, timeout_s=60)
    card = _card("huge-result")
    with pytest.raises(ToolFailed, match="larger than"):
        pool.call(card, {"text": "huge"}, ctx)
    assert pool.call(card, {"text": "fine"}, ctx).outputs["reply"] == "fine"


def test_non_utf8_result_fails_cleanly(pool: WorkerPoolExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path, timeout_s=30)
    card = _card("non-utf8-result")
    with pytest.raises(ToolFailed, match="unreadable reply"):
        pool.call(card, {"text": "non-utf8"}, ctx)
    assert pool.call(card, {"text": "fine"}, ctx).outputs["reply"] == "fine"


def test_symlink_output_does_not_leak(pool: WorkerPoolExecutor, tmp_path: Path) -> None:
    ctx = CallContext(scratch=tmp_path / "scratch", timeout_s=30)
    with pytest.raises(ToolFailed, match="'out.png' is a symbolic link"):
        pool.call(_card("symlink-result"), {"text": "symlink-output"}, ctx)
    assert not any(p.is_symlink() for p in (tmp_path / "scratch").rglob("*"))


# --- returned files: bounded, plain names only, never replacing anything (both sandbox modes) ---

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # what attacks/returned_files.py writes


def _files_card() -> ToolCard:
    card = _card("returned-files").model_dump()
    card["backend"]["entry"] = "attacks.returned_files:load"
    return ToolCard.model_validate(card)


@pytest.fixture(scope="module", params=["namespaces", "landlock"])
def files_pool(request: pytest.FixtureRequest):
    """A worker pool under bubblewrap, and one under the Landlock fallback (no namespaces)."""
    probe = probe_host()
    if request.param == "landlock":
        assert probe.landlock_abi, "this host has no Landlock: the fallback cannot be tested"
        probe = dataclasses.replace(probe, bwrap=None, bwrap_reason="test: Landlock mode")
    sandbox = Sandbox(probe=probe)
    assert sandbox.mode == request.param
    tests_dir = str(Path(__file__).resolve().parents[2])
    with WorkerPoolExecutor(extra_sys_path=[tests_dir], sandbox=sandbox) as p:
        yield p


def _refused(pool: WorkerPoolExecutor, command: str, dest: Path, says: str) -> None:
    """The call fails saying ``says``, copies nothing, and its worker stays warm."""
    card = _files_card()
    before = sorted(dest.rglob("*")) if dest.exists() else []
    with pytest.raises(ToolFailed, match=says):
        pool.call(card, {"text": command}, CallContext(scratch=dest, timeout_s=120))
    assert (sorted(dest.rglob("*")) if dest.exists() else []) == before
    assert pool.is_warm(card)


def test_deep_nesting_fails_the_call_and_the_warm_worker_serves_on(
    files_pool: WorkerPoolExecutor, tmp_path: Path
) -> None:
    dest = tmp_path / "run"
    _refused(files_pool, "deep-1500", dest, "is nested deeper than 8 levels")
    # The next call empties the 1500 levels and is served by the same warm worker.
    again = files_pool.call(
        _files_card(), {"text": "nested-ok"}, CallContext(scratch=dest, timeout_s=120)
    )
    assert again.load_seconds == 0
    assert (dest / "frames" / "one" / "f2.png").read_bytes() == PNG
    assert not (dest / "d").exists()


def test_thousands_of_files_fail_the_call(files_pool: WorkerPoolExecutor, tmp_path: Path) -> None:
    _refused(files_pool, "many-1500", tmp_path / "run", "more than 1000 files and folders")


def test_control_names_never_land_in_the_run_folder(
    files_pool: WorkerPoolExecutor, tmp_path: Path
) -> None:
    dest = tmp_path / "project"  # e.g. `orchestrator run --out .` in a git checkout
    (dest / ".git" / "hooks").mkdir(parents=True)
    (dest / ".git" / "hooks" / "README").write_text("mine")
    _refused(files_pool, "control-names", dest, "'.git' starts with a dot")
    assert [p.name for p in (dest / ".git" / "hooks").iterdir()] == ["README"]
    assert not (dest / ".ssh").exists() and not (dest / ".orchestrator-serve").exists()


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("odd-names", "holds a control, format or separator character"),
        ("newline-name", "holds a control, format or separator character"),
        ("fifo", "'pipe.png' is a device, fifo or socket"),
    ],
)
def test_odd_names_and_special_files_fail_the_call(
    files_pool: WorkerPoolExecutor, tmp_path: Path, command: str, says: str
) -> None:
    _refused(files_pool, command, tmp_path / "run", says)


def test_returned_files_never_replace_what_is_there(
    files_pool: WorkerPoolExecutor, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "picture.png").write_bytes(b"mine")
    (dest / "frames").mkdir()
    outcome = files_pool.call(
        _files_card(), {"text": "nested-ok"}, CallContext(scratch=dest, timeout_s=60)
    )
    assert (dest / "picture.png").read_bytes() == b"mine"
    assert outcome.outputs["picture"] == str(dest / "picture-2.png")
    assert (dest / "picture-2.png").read_bytes() == PNG
    assert list((dest / "frames").iterdir()) == []
    assert (dest / "frames-2" / "one" / "f1.png").stat().st_mode & 0o777 == 0o644


def test_run_out_folder_gets_no_control_names_and_loses_nothing(tmp_path: Path) -> None:
    """`orchestrator run --out .` in a git checkout, with a card that returns hostile files."""
    from _cli_tools import cli_env, run_cli
    from attacks.returned_files import install_card

    cards = install_card(tmp_path / "my_cards")
    out = tmp_path / "checkout"
    (out / ".git" / "hooks").mkdir(parents=True)
    (out / ".git" / "hooks" / "README").write_text("mine")
    (out / "picture.png").write_bytes(b"mine")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    env = cli_env(tmp_path)
    args = ["--cards", str(cards), "--out", str(out), "--json"]
    hostile = run_cli("run", 'Summarize "control-names"', *args, env=env)
    assert hostile.returncode == 1, hostile.stdout + hostile.stderr
    result = json.loads(hostile.stdout)
    (attempt,) = result["steps"][0]["attempts"]
    assert result["status"] == "failed" and attempt["card"] == "hostile-files"
    assert "the returned name '.git' starts with a dot" in attempt["error"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    plain = run_cli("run", 'Summarize "nested-ok"', *args, env=env)
    assert json.loads(plain.stdout)["status"] == "ok", plain.stdout + plain.stderr
    assert (out / "picture.png").read_bytes() == b"mine"  # its own picture came as picture-2
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == [
        ".git/hooks/README",
        "frames/one/f1.png",
        "frames/one/f2.png",
        "picture-2.png",
        "picture.png",
    ]


# --- hostile card files: refused when read, in bounded memory ----------------------------------

LAUGHS_TOOL = "def load(options):\n    return lambda inputs, ctx: {'label': 'lol'}\n"
# Zoo loading as run, chat and serve do it, then the card's first use (sent to its worker).
LOAD_AND_USE = """
import json, sys
from pathlib import Path
from orchestrator.cards.zoo import Zoo
zoo = Zoo.load([Path(sys.argv[1])])
print(len(json.dumps(zoo.get("billion-laughs").card.model_dump(mode="json"))))
"""


def _in_memory_mb(args: list[str], memory_mb: int) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with its address space capped: a regression fails, the host stays up."""

    def cap() -> None:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        args, preexec_fn=cap, capture_output=True, text=True, timeout=120, check=False
    )


def test_billion_laughs_and_oversized_cards_are_refused_by_validate_and_zoo(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(ATTACKS / "billion_laughs.yaml", folder / "billion-laughs.yaml")
    (folder / "laughs_tool.py").write_text(LAUGHS_TOOL)
    validate = [sys.executable, "-m", "orchestrator", "cards", "validate", str(folder)]
    done = _in_memory_mb(validate, 768)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "billion-laughs.yaml: <yaml>: refused: the alias '*a' is not allowed" in said, said
    assert "at line 13, column 12" in said and "Traceback" not in said
    loaded = _in_memory_mb([sys.executable, "-c", LOAD_AND_USE, str(folder)], 768)
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr
    assert "CardError" in loaded.stderr and "the alias '*a' is not allowed" in loaded.stderr

    (folder / "billion-laughs.yaml").unlink()
    nested = "name: deep\ntask: text-classification\ndescription: " + "[" * 5000 + "]" * 5000
    (folder / "deep.yaml").write_text(nested + "\n")
    (folder / "huge.yaml").write_text("name: huge\ndescription: " + "lol " * 70_000 + "\n")
    done = _in_memory_mb(validate + ["--no-imports"], 768)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "Traceback" not in said, said
    assert "deep.yaml: <yaml>: refused: values are nested deeper than 32 levels" in said
    assert "huge.yaml: <file>: the file is larger than 256 KB" in said
