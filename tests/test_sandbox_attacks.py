"""The attack suite: each attack is a real program run through the sandbox, and must be stopped.

Programs are in tests/attacks/ (they print ESCAPED or BLOCKED); they run through
``orchestrator.sandbox.run_file.run_source``, the same sandbox a tool's worker gets. The last
attacks go through the worker pool itself (results that are huge, not UTF-8, or symlinks).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.backends import CallContext
from orchestrator.cards import ToolCard
from orchestrator.errors import ToolFailed
from orchestrator.execute import WorkerPoolExecutor
from orchestrator.sandbox.run_file import ExecResult, run_source

ATTACKS = Path(__file__).resolve().parent / "attacks"


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
    from orchestrator.sandbox.policy import Policy

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
    tests_dir = str(Path(__file__).resolve().parent)
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
    with pytest.raises(ToolFailed, match="output 'picture'"):
        pool.call(_card("symlink-result"), {"text": "symlink-output"}, ctx)
    assert not any(p.is_symlink() for p in (tmp_path / "scratch").rglob("*"))
