"""A real OpenAI-compatible server (``orchestrator.server.single_model``) in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CARD = "smollm2-135m-chat"
START_TIMEOUT_S = 600  # the very first load dequantizes the GGUF; later loads take seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llm_server(card: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``serve(card)`` in a subprocess; return it and its base URL once it answers."""
    port = free_port()
    code = (
        f"from orchestrator.server.single_model import serve; serve({card!r}, '127.0.0.1', {port})"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # One torch thread: on a busy 2-core machine two threads made a 135M model ~10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"server did not answer within {START_TIMEOUT_S} s")


def stop_llm_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
