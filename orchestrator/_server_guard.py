"""The guard in front of ``orchestrator serve``: the API key, and a cap on request bodies.

A pure ASGI middleware, so a refused request costs nothing further: a missing or wrong key on
``/v1/`` is a 401 before the body is read; a body over the cap (declared or counted while
reading) is a 413. The body is read up front and replayed to the app.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from orchestrator._server_api import error_body

__all__ = ["Guard"]


class Guard:
    """ASGI middleware: the API key on ``/v1/``, and a cap on request bodies (read up front)."""

    def __init__(self, app: Any, *, key: str | None, max_body: int) -> None:
        self.app = app
        self.key = key
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.key and scope["path"].startswith("/v1/") and not self._authorized(scope):
            await _send_error(send, 401, _unauthorized())
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        assert self.key is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.key.encode()
        )

    async def _read_body(self, scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body:
            await _send_error(send, 413, self._too_large())
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, self._too_large())
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> dict[str, Any]:
        return error_body(
            f"the request body is larger than this server's limit of "
            f"{self.max_body / 1e6:.1f} MB; send smaller files",
            code="request_too_large",
        )


def _unauthorized() -> dict[str, Any]:
    return error_body(
        "missing or wrong API key: send 'Authorization: Bearer KEY' with the key this server "
        "was started with",
        code="invalid_api_key",
    )


async def _send_error(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
