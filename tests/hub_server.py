"""A local Hugging Face Hub for tests: serves real model folders as the Hub's file API does.

Point ``HF_ENDPOINT`` at :attr:`LocalHub.url` and ``huggingface_hub`` (``model_info``,
``list_repo_tree``, ``hf_hub_download``, ``snapshot_download``) talks to it as to huggingface.co.
The wire format follows huggingface_hub's own client code (hf_api.py, file_download.py):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: ``{"id", "sha",
  "siblings": [{"rfilename"}]}``; with ``?blobs=true`` (``files_metadata=True``) each sibling
  also has ``size``, ``blobId`` and, for weight files, ``lfs`` ``{"size", "sha256",
  "pointerSize"}``.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true``: a JSON list of ``{"type":
  "file", "path", "size", "oid", "lfs"?}`` (LFS here as ``{"size", "oid", "pointerSize"}``).
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``ETag`` (the sha256 of the content; weight
  files also send ``X-Linked-Etag`` and ``X-Linked-Size`` as LFS files do), ``X-Repo-Commit``,
  ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=N-`` answers 206 with ``Content-Range``.

Every request is logged (:attr:`LocalHub.log`), so a test can assert which files were fetched.
``drop_once`` makes the first GET of a file stop half way and close the connection;
``stall`` makes GETs of a file stop half way and hang until :meth:`LocalHub.release` (to
interrupt a client mid-file).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LocalHub", "Request"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".gguf", ".pt", ".ot")


@dataclass(frozen=True)
class Request:
    """One request the hub answered: method, repo file (or API path), Range header, status."""

    method: str
    path: str
    range: str | None
    status: int


@dataclass
class _Repo:
    folder: Path
    sha: str
    files: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


class LocalHub:
    """A threaded HTTP server on 127.0.0.1 serving model repos from local folders."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.log: list[Request] = []
        self.drop_once: set[str] = set()
        self.stall: set[str] = set()
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), type("Handler", (_Handler,), {"hub": self})
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The endpoint to put in ``HF_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, folder: Path) -> None:
        """Serve every file under ``folder`` as the repo ``repo_id`` at one commit."""
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))}
        files = {name: path for name, path in files.items() if path.is_file()}
        digests = {
            name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()
        }
        sha = hashlib.sha1(json.dumps(digests, sort_keys=True).encode()).hexdigest()
        self.repos[repo_id] = _Repo(folder, sha, files, digests)

    def fetched(self, repo_id: str) -> list[str]:
        """Files of ``repo_id`` whose content was sent (GET answered 200 or 206), in order."""
        prefix = f"/{repo_id}/resolve/"
        names = []
        for request in self.log:
            if request.method == "GET" and request.path.startswith(prefix) and request.status < 300:
                names.append(request.path[len(prefix) :].split("/", 1)[1])
        return names

    def release(self) -> None:
        """Let stalled downloads go on (they then fail: the client is gone or times out)."""
        self._release.set()

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


def _lfs(name: str) -> bool:
    return name.endswith(_LFS_SUFFIXES)


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the hub keeps its own log."""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path.startswith("/api/models/"):
            status = self._api(path[len("/api/models/") :], query)
        elif "/resolve/" in path:
            status = self._file(path, body)
        else:
            status = self._json(404, {"error": "not found"})
        self.hub._record(Request(self.command, path, self.headers.get("Range"), status))

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> int:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
        return status

    def _repo(self, rest: str) -> tuple[str, _Repo, str] | None:
        """Split ``owner/name/<tail>`` on a known repo id."""
        for repo_id, repo in self.hub.repos.items():
            if rest == repo_id or rest.startswith(repo_id + "/"):
                return repo_id, repo, rest[len(repo_id) :].lstrip("/")
        return None

    def _api(self, rest: str, query: dict[str, list[str]]) -> int:
        found = self._repo(rest)
        if found is None:
            return self._json(
                404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            )
        repo_id, repo, tail = found
        if tail.startswith("tree/"):
            return self._tree(repo, tail[len("tree/") :])
        if tail and not tail.startswith("revision/"):
            return self._json(404, {"error": "not found"})
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, file in repo.files.items():
            sibling: dict[str, object] = {"rfilename": name}
            if blobs:
                size = file.stat().st_size
                sibling |= {"size": size, "blobId": repo.digests[name][:40]}
                if _lfs(name):
                    sibling["lfs"] = {
                        "size": size,
                        "sha256": repo.digests[name],
                        "pointerSize": 134,
                    }
            siblings.append(sibling)
        return self._json(
            200,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.sha,
                "private": False,
                "siblings": siblings,
            },
        )

    def _tree(self, repo: _Repo, tail: str) -> int:
        _revision, _, folder = tail.partition("/")
        entries = []
        for name, file in repo.files.items():
            if folder and not name.startswith(folder.rstrip("/") + "/"):
                continue
            size = file.stat().st_size
            entry: dict[str, object] = {
                "type": "file",
                "path": name,
                "size": size,
                "oid": repo.digests[name][:40],
            }
            if _lfs(name):
                entry["lfs"] = {"size": size, "oid": repo.digests[name], "pointerSize": 134}
            entries.append(entry)
        return self._json(200, entries)

    def _file(self, path: str, body: bool) -> int:
        found = self._repo(path.lstrip("/"))
        if found is None:
            return self._json(
                404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            )
        repo_id, repo, tail = found
        name = tail[len("resolve/") :].split("/", 1)[1] if "/" in tail[len("resolve/") :] else ""
        file = repo.files.get(name)
        if file is None:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        data = file.read_bytes()
        start = 0
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            start = int(ranged[len("bytes=") :].split("-", 1)[0] or 0)
        status = 206 if start else 200
        self.send_response(status)
        etag = f'"{repo.digests[name]}"'
        self.send_header("ETag", etag)
        if _lfs(name):
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return status
        payload = data[start:]
        if name in self.hub.drop_once and not start:
            self.hub.drop_once.discard(name)
            return self._cut(payload, status, hang=False)
        if name in self.hub.stall:
            return self._cut(payload, status, hang=True)
        self.wfile.write(payload)
        return status

    def _cut(self, payload: bytes, status: int, hang: bool) -> int:
        """Send half of ``payload``, then close the connection (after hanging, if asked)."""
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        if hang:
            self.hub.stalled.set()
            self.hub._release.wait(timeout=120)
        self.close_connection = True
        self.connection.close()
        return status
