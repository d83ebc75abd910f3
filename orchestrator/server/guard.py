"""The guard in front of ``orchestrator serve`` and ``serve-llm``: cheap checks before any route.

A pure ASGI middleware. For every HTTP request, in this order, before a route runs:

1. **Host** - the ``Host`` header must name this server: an IP address, ``localhost``, the name
   it was bound to, this machine's name, or one of ``[server] allowed_hosts``. A page on some
   other domain that its owner points at this machine (DNS rebinding) sends its own domain and
   is refused (421).
2. **Key** - with an API key set, every ``/v1/`` request and every request other than GET and
   HEAD needs ``Authorization: Bearer KEY`` (401). The web page and its assets stay open: the page
   asks for the key.
3. **Cross-site** - a request that may change something (not GET, HEAD or OPTIONS) sent by a
   browser from a page of another origin is refused (403): ``Sec-Fetch-Site`` must be
   ``same-origin`` or ``none`` and ``Origin``, when sent, must be this server (or an allowed
   host). The web page's own requests pass; non-browser clients send neither header.
4. **Body** - read whole up front and replayed to the app, within limits: at most ``max_body``
   bytes (declared or counted: 413), arrived within ``body_timeout_s`` of the request (408),
   and at most ``max_bodies`` being received at once, at most half of them from one address;
   a request that finds no free place within :data:`SLOT_WAIT_S` (or half the timeout) gets a
   503 without its body being read. So what unauthenticated clients can hold is bounded too.

The client's identity - a digest of the bearer token it sent (one of the keys on a keyed
server), else ``anonymous`` - goes into the ASGI scope as :data:`CLIENT`, for the routes that
keep each client's files apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from orchestrator.server.wire import error_body

__all__ = ["ANONYMOUS", "CLIENT", "SLOT_WAIT_S", "AllowedHosts", "BodyLimits", "Guard", "client_of"]

CLIENT = "orchestrator.client"
"""The ASGI scope key holding the client's identity."""
ANONYMOUS = "anonymous"
SLOT_WAIT_S = 5.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def client_of(scope: dict[str, Any]) -> str:
    """The identity the guard gave this request's client."""
    return str(scope.get(CLIENT, ANONYMOUS))


def _client_id(token: str) -> str:
    return hashlib.sha256(b"orchestrator-client\0" + token.encode()).hexdigest()[:32]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _hostname(host: str) -> str:
    """The name part of a Host header (no port, no brackets), lower case, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.split(":", 1)[0].rstrip(".")


class AllowedHosts:
    """The names a request's ``Host`` may carry (see the module)."""

    def __init__(self, bind_host: str, extra: Iterable[str] = ()) -> None:
        from orchestrator.server import is_loopback

        self.names = {_hostname(name) for name in extra if name.strip()}
        self.any = "*" in self.names
        bind = bind_host.strip().strip("[]").lower()
        if not _is_ip(bind):
            self.names.add(bind)
        if not is_loopback(bind_host):
            self.names.add(socket.gethostname().lower())

    def allows(self, host: str) -> bool:
        """Whether a request with this Host header is meant for this server."""
        name = _hostname(host)
        if self.any or _is_ip(name) or name == "localhost" or name.endswith(".localhost"):
            return True
        return name in self.names

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Whether a browser's ``Origin`` is this server itself (or a configured name)."""
        if origin == "null":
            return False
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            return False
        same = _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host)
        return same or _hostname(parts.netloc) in self.names


def _netloc(scheme: str, netloc: str) -> str:
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default and netloc.endswith(f":{default}"):
        netloc = netloc[: -len(default) - 1]
    return netloc


@dataclass(frozen=True)
class BodyLimits:
    """How large, how slow and how many request bodies the guard reads."""

    max_body: int
    timeout_s: float = 30.0
    max_bodies: int = 8


class _BodySlots:
    """Places for bodies being received: ``total`` at once, half of them per address."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_peer = max(1, total // 2)
        self.busy = 0
        self.by_peer: Counter[str] = Counter()
        self.changed = asyncio.Condition()

    def _free(self, peer: str) -> bool:
        return self.busy < self.total and self.by_peer[peer] < self.per_peer

    async def take(self, peer: str, wait_s: float) -> bool:
        """Take a place, waiting up to ``wait_s``; False when none came free."""
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: self._free(peer)), wait_s)
            except TimeoutError:
                return False
            self.busy += 1
            self.by_peer[peer] += 1
            return True

    async def give(self, peer: str) -> None:
        """Give a place back."""
        async with self.changed:
            self.busy -= 1
            self.by_peer[peer] -= 1
            if self.by_peer[peer] <= 0:
                del self.by_peer[peer]
            self.changed.notify_all()


class Guard:
    """ASGI middleware: Host, key, cross-site and body checks before any route (see the module)."""

    def __init__(
        self,
        app: Any,
        *,
        keys: Iterable[str] = (),
        limits: BodyLimits,
        hosts: AllowedHosts,
    ) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.limits = limits
        self.hosts = hosts
        self._slots = _BodySlots(limits.max_bodies)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _send_error(send, *refusal)
            return
        scope[CLIENT] = self._client(headers)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, headers, receive, send)
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

    def _refusal(
        self, scope: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]] | None:
        """The status and error of a request refused on its headers alone (None: go on)."""
        host = headers.get("host")
        if host is not None and not self.hosts.allows(host):
            return 421, _error(
                f"this server does not answer to the host name '{_hostname(host)[:100]}' "
                "(a page on another domain cannot use it); add the name to [server] "
                "allowed_hosts if clients really reach this server by it",
                "host_not_allowed",
            )
        method = scope["method"]
        needs_key = scope["path"].startswith("/v1/") or method not in ("GET", "HEAD")
        if self.keys and needs_key and not self._authorized(headers):
            return 401, _error(
                "missing or wrong API key: send 'Authorization: Bearer KEY' with the key this "
                "server was started with",
                "invalid_api_key",
            )
        if method not in _SAFE_METHODS and self._cross_site(headers, host or ""):
            return 403, _error(
                "refused: this request comes from a web page of another site; use this "
                "server's own page or a client that is not a browser",
                "cross_site_request",
            )
        return None

    def _token(self, headers: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _authorized(self, headers: dict[str, str]) -> bool:
        token = (self._token(headers) or "").encode("latin-1", "replace")
        matches = [hmac.compare_digest(token, key) for key in self.keys]  # all, in constant time
        return any(matches)

    def _client(self, headers: dict[str, str]) -> str:
        token = self._token(headers)
        return _client_id(token) if token else ANONYMOUS

    def _cross_site(self, headers: dict[str, str], host: str) -> bool:
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in _SAME_SITE:
            return True
        origin = headers.get("origin")
        return origin is not None and not self.hosts.origin_allowed(origin.strip(), host)

    async def _read_body(
        self, scope: dict[str, Any], headers: dict[str, str], receive: Any, send: Any
    ) -> bytes | None:
        """The whole body within the limits; None when refused (the answer is sent)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_body:
            await _send_error(send, 413, self._too_large())
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s
        peer = str((scope.get("client") or ("",))[0])
        wait = min(SLOT_WAIT_S, self.limits.timeout_s / 2)
        if not await self._slots.take(peer, wait):
            await _send_error(send, 503, _busy(), [(b"retry-after", b"2")])
            return None
        try:
            async with asyncio.timeout_at(deadline):
                return await self._receive_all(receive, send)
        except TimeoutError:
            message = (
                f"the request body did not arrive within {self.limits.timeout_s:g} s; "
                "send it at once"
            )
            await _send_error(send, 408, _error(message, "request_timeout"))
            return None
        finally:
            await self._slots.give(peer)

    async def _receive_all(self, receive: Any, send: Any) -> bytes | None:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body:
                await _send_error(send, 413, self._too_large())
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> dict[str, Any]:
        return _error(
            f"the request body is larger than this server's limit of "
            f"{self.limits.max_body / 1e6:.1f} MB; send smaller files",
            "request_too_large",
        )


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name (the first of a repeated one)."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length not in ("", "0"))


def _error(message: str, code: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    """An error in OpenAI's shape."""
    return error_body(message, type_, code=code)


def _busy() -> dict[str, Any]:
    message = "too many request bodies are arriving at once; try again in a moment"
    return _error(message, "server_busy", "server_error")


async def _send_error(
    send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(extra or []),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
