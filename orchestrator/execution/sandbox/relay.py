"""Network for a sandboxed tool: the endpoints its card names and the user approved, nothing else.

Under namespaces a tool never shares the host's network: it gets a network namespace of its own
with only a loopback device, so the host's localhost services, its other interfaces and its
abstract unix sockets are out of reach. What it may reach comes through a relay in two halves:

* the host half, :class:`Relay` (one per sandboxed process), listens on a unix socket that is
  bound into the sandbox (:data:`INSIDE_SOCKET`). Each connection starts with one line naming
  what it is for: ``E <n>`` (the n-th approved endpoint) or ``P`` (an HTTP CONNECT request
  follows). It connects to that endpoint and nothing else, then copies bytes both ways;
* the sandbox half, :func:`start_forwarders` (started by :mod:`~.boot` after confinement),
  listens inside on each endpoint's own address and port - ``127.0.0.1:8001`` for a local LLM
  server, a loopback address the sandbox's ``/etc/hosts`` gives a host name, an IPv4 address
  added to the private loopback device - and forwards what it accepts through the socket. So
  ``http://127.0.0.1:8001/v1`` and ``https://api.openai.com`` work unchanged inside.

``network: true`` (any endpoint) is a CONNECT proxy at ``127.0.0.1:3128`` inside, named by
``$HTTPS_PROXY``; the host half then connects to public addresses only (never loopback,
private, link-local, multicast or reserved ones). A host name among the approved endpoints must
resolve to public addresses too: a loopback or private address is reached only when the user
wrote it as such (``127.0.0.1:8001``, ``localhost:8001``, ``10.0.0.5:8000``).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.permissions import split_endpoint

__all__ = [
    "INSIDE_SOCKET",
    "PROXY_PORT",
    "Endpoint",
    "Relay",
    "parse_endpoint",
    "start_forwarders",
]

INSIDE_SOCKET = "/run/orchestrator-relay.sock"
PROXY_PORT = 3128
_NAME_BASE = ipaddress.IPv4Address("127.77.0.1")
_MAX_CONNECTIONS = 64
_CONNECT_TIMEOUT_S = 15.0
_HEADER_LIMIT = 8192
_CHUNK = 65536


@dataclass(frozen=True)
class Endpoint:
    """One approved ``host:port``."""

    host: str
    port: int

    @property
    def literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, when it is written as one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def local_name(self) -> bool:
        return self.host == "localhost"

    def inside_address(self, index: int) -> str:
        """Where the tool finds this endpoint inside the sandbox."""
        if self.local_name:
            return "127.0.0.1"
        if self.literal is not None:
            return str(self.literal)
        return str(_NAME_BASE + index)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``host:port`` (``[::1]:8000`` for IPv6) as an :class:`Endpoint`; ValueError if malformed."""
    return Endpoint(*split_endpoint(text))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int, *, public_only: bool) -> list[tuple[Any, ...]]:
    """Addresses to try for ``host:port``; with ``public_only`` any non-public one refuses."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if public_only and not all(_public(info[4][0]) for info in infos):
        raise PermissionError(f"{host} resolves to an address that is not public")
    return infos


def _connect(endpoint: Endpoint, *, named: bool) -> socket.socket:
    """A connection to ``endpoint``: as written when ``named`` (approved), else public only."""
    if named and endpoint.local_name:
        return socket.create_connection(("127.0.0.1", endpoint.port), _CONNECT_TIMEOUT_S)
    public_only = not (named and endpoint.literal is not None)
    last: OSError = OSError(f"cannot resolve {endpoint.host}")
    for family, kind, proto, _, address in _resolve(
        endpoint.host, endpoint.port, public_only=public_only
    ):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(_CONNECT_TIMEOUT_S)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.settimeout(None)
        return sock
    raise last


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until end of file, then end ``target``'s writing side."""
    try:
        while chunk := source.recv(_CHUNK):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _splice(one: socket.socket, other: socket.socket) -> None:
    """Copy both ways until both sides end; close both."""
    back = threading.Thread(target=_pipe, args=(other, one), daemon=True)
    back.start()
    _pipe(one, other)
    back.join()
    one.close()
    other.close()


def _read_until(conn: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = conn.recv(1)
        if not chunk or len(data) > _HEADER_LIMIT:
            raise ConnectionError("no complete header")
        data += chunk
    return data


class Relay:
    """The host half of a sandbox's network; close it with :meth:`close`.

    It connects only to ``endpoints`` (or, with ``any_public``, to the public addresses a
    CONNECT request names).
    """

    def __init__(self, endpoints: tuple[Endpoint, ...], any_public: bool = False) -> None:
        self.endpoints = endpoints
        self.any_public = any_public
        self.folder = Path(tempfile.mkdtemp(prefix="orchestrator-relay-"))
        self.socket_path = self.folder / "relay.sock"
        self.hosts_path = self.folder / "hosts"
        lines = ["127.0.0.1\tlocalhost"]
        for index, endpoint in enumerate(endpoints):
            if endpoint.literal is None and not endpoint.local_name:
                lines.append(f"{endpoint.inside_address(index)}\t{endpoint.host}")
        self.hosts_path.write_text("\n".join(lines) + "\n")
        self.hosts_path.chmod(0o644)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self.socket_path.chmod(0o666)  # the sandbox's uid connects; only the bind reaches it
        self._server.listen(16)
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._closed = False
        threading.Thread(target=self._serve, name="sandbox-relay", daemon=True).start()

    def binds(self) -> list[tuple[str, str]]:
        """(host path, path inside the sandbox) to bind read-only."""
        return [(str(self.socket_path), INSIDE_SOCKET), (str(self.hosts_path), "/etc/hosts")]

    def forward_spec(self) -> dict[str, Any]:
        """What the sandbox half listens on (see :func:`start_forwarders`)."""
        listen = [
            [endpoint.inside_address(index), endpoint.port, index]
            for index, endpoint in enumerate(self.endpoints)
        ]
        return {
            "socket": INSIDE_SOCKET,
            "listen": listen,
            "proxy": PROXY_PORT if self.any_public else None,
        }

    def loopback_addresses(self) -> list[str]:
        """IPv4 endpoint addresses the sandbox's loopback device must carry."""
        return sorted(
            {
                str(e.literal)
                for e in self.endpoints
                if e.literal is not None and e.literal.version == 4 and not e.literal.is_loopback
            }
        )

    def env(self) -> dict[str, str]:
        """Environment variables that point HTTPS clients at the proxy (``network: true``)."""
        if not self.any_public:
            return {}
        url = f"http://127.0.0.1:{PROXY_PORT}"
        return {"HTTPS_PROXY": url, "https_proxy": url}

    def close(self) -> None:
        self._closed = True
        try:
            self._server.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_CONNECT_TIMEOUT_S)
            line = _read_until(conn, b"\n").decode("ascii", "replace").split()
            if line[:1] == ["E"] and len(line) == 2 and line[1].isdigit():
                target = self._endpoint(int(line[1]))
            elif line == ["P"] and self.any_public:
                target = self._proxy_target(conn)
            else:
                raise PermissionError("not an approved endpoint")
            conn.settimeout(None)
            _splice(conn, target)
        except (OSError, ValueError, UnicodeError):
            conn.close()
        finally:
            self._slots.release()

    def _endpoint(self, index: int) -> socket.socket:
        if index >= len(self.endpoints):
            raise PermissionError("no such endpoint")
        return _connect(self.endpoints[index], named=True)

    def _proxy_target(self, conn: socket.socket) -> socket.socket:
        """Read one CONNECT request; connect to its public host; answer the client."""
        request = _read_until(conn, b"\r\n\r\n").decode("latin-1")
        parts = request.split("\r\n", 1)[0].split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            raise PermissionError("only CONNECT is relayed")
        try:
            endpoint = parse_endpoint(parts[1])
            target = _connect(endpoint, named=False)
        except (OSError, ValueError) as exc:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            raise PermissionError(str(exc)) from exc
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return target


# --- the sandbox half (runs inside, after confinement) ---


def start_forwarders(spec: dict[str, Any]) -> None:
    """Accept on each listening socket and forward every connection through the relay socket.

    The sockets were opened by :func:`~orchestrator.execution.sandbox.confine.open_listeners` while
    the process could still bind ports below 1024 (``spec["fds"]``: the endpoints, then the proxy).
    """
    fds = spec["fds"]
    headers = [f"E {index}\n".encode() for _, _, index in spec["listen"]]
    if spec.get("proxy"):
        headers.append(b"P\n")
    for fd, header in zip(fds, headers, strict=True):
        listener = socket.socket(fileno=fd)
        threading.Thread(
            target=_forward, args=(listener, spec["socket"], header), daemon=True
        ).start()


def _forward(listener: socket.socket, relay: str, header: bytes) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_forward_one, args=(conn, relay, header), daemon=True).start()


def _forward_one(conn: socket.socket, relay: str, header: bytes) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(relay)
        upstream.sendall(header)
    except OSError:
        upstream.close()
        conn.close()
        return
    _splice(conn, upstream)
