"""Helpers for the tests of ``orchestrator serve``: the real server in a subprocess, inputs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.evals.bench_server import ServerProcess, launch_server

__all__ = [
    "ServerProcess",
    "data_url",
    "hang_up_at_first_step",
    "launch_server",
    "png_bytes",
    "sse_payloads",
]

SENTIMENT = "Is this sentence positive or negative: I love this sunny day"

# The server of a test module: default budget of 10 calls, small upload cap (to test it).
MODULE_CONFIG = """
[budget]
calls = 10

[server]
max_upload_bytes = 200000
"""


def png_bytes(width: int = 96, height: int = 64) -> bytes:
    """A small real PNG (an orange box on white)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle(
        [width // 5, height // 6, width * 3 // 4, height * 5 // 6], fill="orange"
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def sse_payloads(lines: Iterator[str]) -> list[Any]:
    """The JSON payloads of a server-sent event stream (``[DONE]`` as the string)."""
    payloads: list[Any] = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def start_module_server(folder: Path, **kwargs: Any) -> ServerProcess:
    """The server a test module shares (a failed start raises with the server's output)."""
    kwargs.setdefault("config", MODULE_CONFIG)
    return launch_server(folder, **kwargs)


def hang_up_at_first_step(base_url: str, body: dict[str, Any], timeout: float) -> str | None:
    """Stream a chat request and hang up as soon as its first step starts; the run's id."""
    import httpx

    run_id = None
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=timeout) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[5:]).get("orchestrator") or {}
            run_id = event.get("run_id", run_id)
            if event.get("type") == "step_started":
                break
    return run_id
