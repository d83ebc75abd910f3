"""Execute: run tool calls in warm, long-lived worker processes.

Each tool card gets its own worker process (``python -m orchestrator._worker``), started on the
first call and reused by later calls. A worker is keyed by the card's name and a digest of its
content, so an edited card gets a fresh worker. Calls to one worker are serialized; different
cards run in parallel. Parent and worker speak JSON lines (see :mod:`orchestrator._worker`).

Failures never crash the caller: a tool that raises, a worker that dies, a call that times out,
a model that does not load, and outputs that do not match the card all raise
:class:`~orchestrator.errors.ToolFailed` with a one-line reason and a detail (traceback or the
tail of the worker's stderr log).

Timeouts: a call gets ``ctx.timeout_s`` seconds, or :func:`default_timeout_s` of the card when
unset (30 s plus 20 times the card's expected latency). Starting a worker and loading the model
gets ``start_timeout_s``, or three times the card's declared ``load_s`` when that is longer.
A worker that exceeds either is killed together with its whole process group.

Sandbox: every worker runs under :mod:`orchestrator.sandbox` with its card's policy
(:func:`~orchestrator.sandbox.policy_for_card`). The command run inside is
:meth:`WorkerPoolExecutor.worker_command`; :meth:`WorkerPoolExecutor.worker_launch` wraps it.
A worker sees a private I/O folder: before each call its file inputs are copied into ``in`` and
the call's scratch is ``out``; after the call what the tool wrote to ``out`` is copied into the
caller's ``ctx.scratch`` and output paths are rewritten to the copies. The worker's environment
is the sandbox's allow-list plus what its card asks for plus the executor's explicit ``env``.

Limits: at most ``max_workers`` warm workers and, when ``memory_mb`` is set, at most that many
MB of them (each counted by what its cgroup measured after its last call, else by its card's
declared memory); least recently used idle workers are evicted first. At most
``max_concurrency`` calls (including model loads) run at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.backends import CallContext, Usage
from orchestrator.cards import IOSpec, ToolCard
from orchestrator.errors import ToolFailed
from orchestrator.sandbox import Launch, Sandbox, policy_for_card
from orchestrator.sandbox.bwrap import package_dirs
from orchestrator.sandbox.policy import DEFAULT_ENV, model_read_paths
from orchestrator.sandbox.transfer import clear_io, copy_in, copy_out

__all__ = [
    "CallOutcome",
    "Executor",
    "WorkerPoolExecutor",
    "card_digest",
    "default_timeout_s",
]

MAX_RESULT_BYTES = 64 * 1024 * 1024
STOP_GRACE_S = 2.0
_LOG_TAIL_BYTES = 4000
_REASON_CHARS = 300
_READ_CHUNK = 1 << 20
_FILE_TYPES = ("audio", "image")
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator-spawner")


@dataclass
class CallOutcome:
    """The result of one tool call, with its timing and token usage."""

    outputs: dict[str, Any]
    seconds: float
    load_seconds: float
    usage: Usage = field(default_factory=Usage)


class Executor(Protocol):
    """Runs one tool call for a card; raises :class:`ToolFailed` when the call fails."""

    def call(self, card: ToolCard, inputs: dict[str, Any], ctx: CallContext) -> CallOutcome:
        """Run the tool of ``card`` on ``inputs`` and return its validated outputs."""
        ...

    def is_warm(self, card: ToolCard) -> bool:
        """Whether a call to ``card`` would find its model already loaded."""
        ...

    def close(self) -> None:
        """Release every resource (worker processes) the executor holds."""
        ...


def card_digest(card: ToolCard) -> str:
    """A short digest of the card's whole content: any edit gives a new digest."""
    return hashlib.sha256(card.model_dump_json().encode("utf-8")).hexdigest()[:16]


def default_timeout_s(card: ToolCard) -> float:
    """Seconds a call may take when the context sets no timeout: 30 + 20 x expected latency."""
    return 30.0 + 20.0 * card.cost.latency_s


class WorkerPoolExecutor:
    """Runs tools in warm, sandboxed worker processes, one per card.

    Thread-safe. When a new worker would exceed ``max_workers`` (or the ``memory_mb`` cap), the
    least recently used idle workers are stopped (if every worker is busy, the pool exceeds the
    limit until one is idle). ``sandbox`` defaults to the strongest this host permits.
    """

    def __init__(
        self,
        *,
        max_workers: int = 8,
        extra_sys_path: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        start_timeout_s: float = 120.0,
        max_result_bytes: int = MAX_RESULT_BYTES,
        sandbox: Sandbox | None = None,
        memory_mb: int | None = None,
        worker_memory_mb: int | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_workers = max_workers
        self.start_timeout_s = start_timeout_s
        self.max_result_bytes = max_result_bytes
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.memory_mb = memory_mb
        self.worker_memory_mb = worker_memory_mb
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._overrides = dict(env or {})
        self._env = _worker_env(list(extra_sys_path), self._overrides)
        self._code_paths = _code_paths(list(extra_sys_path))
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._closed = False
        # Stops the workers at interpreter exit (atexit), or when the executor is collected.
        self._finalizer = weakref.finalize(self, _stop_all, self._lock, self._workers)
        self._finalizer.atexit = True

    @classmethod
    def from_config(cls, config: Any) -> WorkerPoolExecutor:
        """An executor with the limits and sandbox settings of an orchestrator ``Config``."""
        box = config.sandbox
        return cls(
            max_workers=config.max_workers,
            sandbox=Sandbox(enabled=box.enabled, require_full_isolation=box.require_full_isolation),
            memory_mb=box.memory_mb,
            worker_memory_mb=box.worker_memory_mb,
            max_concurrency=box.max_concurrency,
        )

    def __enter__(self) -> WorkerPoolExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def worker_command(self, card: ToolCard) -> list[str]:
        """The command run inside the sandbox to start a worker for ``card``."""
        return [sys.executable, "-m", "orchestrator._worker"]

    def worker_launch(self, card: ToolCard) -> Launch:
        """The sandboxed start of a worker for ``card``: its policy around the command."""
        policy = policy_for_card(card, memory_mb=self.worker_memory_mb)
        allowed = set(DEFAULT_ENV) | set(policy.env) | set(self._overrides)
        env = {k: v for k, v in self._env.items() if k in allowed}
        if not self.sandbox.enabled:
            env = dict(self._env)
        return self.sandbox.prepare(policy, self.worker_command(card), env, self._code_paths)

    def call(self, card: ToolCard, inputs: dict[str, Any], ctx: CallContext) -> CallOutcome:
        """Run the tool of ``card`` in its warm worker; raise :class:`ToolFailed` on failure."""
        request, file_inputs = _request(card, inputs, ctx)
        worker, evicted = self._checkout(card)
        _stop_in_background(evicted)
        try:
            with worker.lock, self._slots:
                load_seconds = 0.0
                if not worker.running():
                    load_seconds = worker.start(self.worker_launch(card), self._start_timeout(card))
                timeout = ctx.timeout_s if ctx.timeout_s is not None else default_timeout_s(card)
                reply, seconds = worker.request(request, file_inputs, timeout)
        finally:
            self._checkin(worker)
        outputs = _validated_outputs(card, reply.get("outputs"), Path(ctx.scratch))
        usage = _usage(reply.get("usage"))
        return CallOutcome(outputs, seconds, load_seconds, usage)

    def is_warm(self, card: ToolCard) -> bool:
        """Whether a worker for ``card`` (this exact version) is running, model loaded."""
        with self._lock:
            worker = self._workers.get(f"{card.name}@{card_digest(card)}")
        return worker is not None and worker.running()

    def close(self) -> None:
        """Stop every worker (a call in flight fails with ToolFailed). Idempotent."""
        with self._lock:
            self._closed = True
        self._finalizer()

    def _start_timeout(self, card: ToolCard) -> float:
        return max(self.start_timeout_s, 3.0 * card.cost.load_s)

    def _checkout(self, card: ToolCard) -> tuple[_Worker, list[_Worker]]:
        key = f"{card.name}@{card_digest(card)}"
        with self._lock:
            if self._closed:
                raise RuntimeError("this executor is closed")
            worker = self._workers.get(key)
            evicted: list[_Worker] = []
            if worker is None:
                # An edited card makes the idle workers of its older versions useless.
                stale = [
                    w for w in self._workers.values() if w.card.name == card.name and not w.busy
                ]
                evicted.extend(self._remove(stale))
                worker = _Worker(key, card, self.max_result_bytes)
                self._workers[key] = worker
            worker.busy += 1
            worker.last_used = time.monotonic()
            evicted.extend(self._over_limit())
        return worker, evicted

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            worker.busy -= 1
            worker.last_used = time.monotonic()
            closed = self._closed
            evicted = [] if closed else self._over_limit()
        if closed:
            # close() could only kill this worker while it was busy: finish stopping it here.
            evicted = [worker]
        _stop_in_background(evicted)

    def _over_limit(self) -> list[_Worker]:
        """Remove the least recently used idle workers beyond the limits (lock held)."""
        idle = sorted((w for w in self._workers.values() if not w.busy), key=lambda w: w.last_used)
        evicted: list[_Worker] = []
        count = len(self._workers)
        memory = sum(w.memory_mb for w in self._workers.values())
        for worker in idle:
            over_count = count > self.max_workers
            over_memory = self.memory_mb is not None and memory > self.memory_mb
            if not (over_count or over_memory):
                break
            evicted.append(worker)
            count -= 1
            memory -= worker.memory_mb
        return self._remove(evicted)

    def memory_of(self, card: ToolCard) -> int | None:
        """The memory the worker for ``card`` counts for (measured, else declared)."""
        with self._lock:
            worker = self._workers.get(f"{card.name}@{card_digest(card)}")
        return worker.memory_mb if worker is not None else None

    def worker_pid(self, card: ToolCard) -> int | None:
        """The process id (as this process sees it) of the running worker for ``card``."""
        with self._lock:
            worker = self._workers.get(f"{card.name}@{card_digest(card)}")
        proc = worker.proc if worker is not None else None
        return proc.pid if proc is not None and proc.returncode is None else None

    def _remove(self, workers: list[_Worker]) -> list[_Worker]:
        for worker in workers:
            del self._workers[worker.key]
        return workers


class _Worker:
    """One worker process for one card. Its methods are called with ``lock`` held."""

    def __init__(self, key: str, card: ToolCard, max_result_bytes: int) -> None:
        self.key = key
        self.card = card
        self.max_result_bytes = max_result_bytes
        self.lock = threading.Lock()
        self.busy = 0
        self.last_used = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.launch: Launch | None = None
        self.host_io: Path | None = None
        self.memory_mb = card.cost.memory_mb
        self._buffer = bytearray()

    @property
    def name(self) -> str:
        return self.card.name

    def running(self) -> bool:
        if self.proc is None:
            return False
        if _has_exited(self.proc.pid):
            # Died while idle (e.g. killed from outside): clean up and start afresh.
            self.discard()
            return False
        return True

    def start(self, launch: Launch, timeout: float) -> float:
        """Start the sandboxed process and load the model; return the seconds it took."""
        started = time.monotonic()
        fd, log_name = tempfile.mkstemp(prefix=f"orchestrator-worker-{self.name}-", suffix=".log")
        self.log_path = Path(log_name)
        self.launch = launch
        try:
            # Started from one long-lived thread: the sandbox ties a worker's life to the thread
            # that spawned it (--die-with-parent), and the graph's threads come and go.
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                launch.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=fd,
                env=launch.env,
                cwd=launch.cwd,
                preexec_fn=launch.preexec(),
                start_new_session=True,
            ).result()
        except (OSError, subprocess.SubprocessError) as exc:
            self.discard()
            raise ToolFailed(self.name, f"cannot start a worker: {exc}") from exc
        finally:
            os.close(fd)
        self._buffer.clear()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = started + timeout
        reply = self._exchange(self.card.model_dump(mode="json"), deadline, "while loading")
        if reply is None:
            self._fail(f"loading took longer than {timeout:g} s; worker killed")
        if not reply.get("ok"):
            detail = _join(str(reply.get("traceback", "")), self.log_tail())
            self.discard()
            raise ToolFailed(self.name, "failed to load: " + _one_line(reply.get("error")), detail)
        return time.monotonic() - started

    def request(
        self, request: dict[str, Any], file_inputs: list[str], timeout: float
    ) -> tuple[dict[str, Any], float]:
        """Send one call and return the worker's successful reply and the call's wall time."""
        started = time.monotonic()
        scratch = Path(request["scratch"])
        message = self._staged(request, file_inputs)
        reply = self._exchange(message, started + timeout, "during the call")
        seconds = time.monotonic() - started
        if reply is None:
            self._fail(f"timed out after {timeout:g} s; worker killed")
        copied = self._collect(scratch)
        measured = self.launch.memory_mb() if self.launch is not None else None
        if measured:
            self.memory_mb = measured
        if reply.get("ok"):
            reply["outputs"] = self._mapped(reply.get("outputs"), copied)
        if not reply.get("ok"):
            error = _one_line(reply.get("error"))
            reason = error if reply.get("kind") == "bad_output" else f"raised {error}"
            raise ToolFailed(self.name, reason, str(reply.get("traceback", "")))
        return reply, seconds

    def _io(self) -> Path:
        """The worker's private I/O folder as seen from here (found once per process)."""
        assert self.launch is not None and self.proc is not None
        if self.host_io is None:
            try:
                self.host_io = self.launch.host_io(self.proc.pid)
            except OSError as exc:
                self._fail(f"the sandbox did not come up: {exc}")
        assert self.host_io is not None
        return self.host_io

    def _staged(self, request: dict[str, Any], file_inputs: list[str]) -> dict[str, Any]:
        """The call as the worker sees it: inputs copied into its ``in``, scratch its ``out``."""
        assert self.launch is not None
        host_io, inside = self._io(), self.launch.inside_io
        message = dict(request, inputs=dict(request["inputs"]), scratch=f"{inside}/out")
        try:
            clear_io(host_io)
            for index, name in enumerate(file_inputs):
                message["inputs"][name] = copy_in(host_io, inside, index, request["inputs"][name])
        except OSError as exc:
            self._fail(f"cannot pass the input files into the sandbox: {exc}")
        return message

    def _collect(self, scratch: Path) -> dict[str, Path]:
        """Copy what the tool wrote into its ``out`` to the caller's scratch folder."""
        assert self.launch is not None
        try:
            return copy_out(self._io(), scratch, self.launch.policy.scratch_mb * 1024 * 1024)
        except OSError:
            return {}  # the worker died meanwhile: its files are gone with it

    def _mapped(self, outputs: Any, copied: dict[str, Path]) -> Any:
        """Output values that name files in the sandbox's ``out`` become the copies' paths."""
        assert self.launch is not None
        if not isinstance(outputs, dict):
            return outputs
        prefix = f"{self.launch.inside_io}/out/"
        mapped = dict(outputs)
        for name, value in outputs.items():
            if isinstance(value, str) and value.startswith(prefix):
                copy = copied.get(os.path.normpath(value)[len(prefix) :])
                if copy is not None:
                    mapped[name] = str(copy)
        return mapped

    def _exchange(self, message: Any, deadline: float, when: str) -> dict[str, Any] | None:
        """Send one line and read one reply line; None when the deadline passed."""
        assert self.proc is not None and self.proc.stdin is not None
        data = json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n"
        try:
            if not _write_all(self.proc.stdin.fileno(), data, deadline):
                return None
            line = self._read_line(deadline)
        except BrokenPipeError:
            line = b""
        except _TooLarge:
            self._fail(f"result larger than {self.max_result_bytes} bytes; worker killed")
        if line is None:
            return None
        if not line:
            self._fail(self._exit_reason(when))
        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._fail(f"worker sent an unreadable reply ({type(exc).__name__}); worker killed")
        if not isinstance(reply, dict):
            self._fail("worker sent a reply that is not a JSON object; worker killed")
        return reply

    def _read_line(self, deadline: float) -> bytes | None:
        """One line without its newline; b"" at end of file; None when the deadline passed."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            scanned = len(self._buffer)
            if scanned > self.max_result_bytes:
                raise _TooLarge
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not poller.poll(min(left, 1.0) * 1000):
                continue
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return b""
            self._buffer += chunk

    def _exit_reason(self, when: str) -> str:
        """Kill what is left of the worker and say how it ended."""
        assert self.proc is not None
        code = _end_process_group(self.proc, grace_s=1.0)
        memory = self.launch.death_reason() if self.launch is not None else ""
        if self.launch is not None and self.launch.mode == "namespaces" and code > 128:
            code = 128 - code  # bubblewrap exits with 128 + the signal that killed the tool
        if memory:
            return f"worker {memory} and was killed {when}"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "an unknown signal"
            hint = (
                " (out of memory, or the executor was closed?)" if -code == signal.SIGKILL else ""
            )
            return f"worker was killed by signal {name} ({-code}) {when}{hint}"
        if code == 0:
            return f"worker closed its protocol pipe {when}"
        return f"worker exited with code {code} {when}"

    def _fail(self, reason: str) -> Any:
        """Kill the worker, keep its log tail, and raise ToolFailed."""
        if self.proc is not None:
            _end_process_group(self.proc, grace_s=0.0)
        detail = self.log_tail()
        self.discard()
        raise ToolFailed(self.name, reason, detail)

    def log_tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def begin_stop(self) -> None:
        """Ask the worker to exit: it reads end of file and returns."""
        if self.proc is not None and self.proc.stdin is not None:
            _close_quietly(self.proc.stdin)

    def discard(self, grace_s: float = 0.0) -> None:
        """Make sure the process group is gone; release the pipes and the log."""
        if self.proc is not None:
            _end_process_group(self.proc, grace_s)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    _close_quietly(pipe)
            self.proc = None
        if self.launch is not None:
            self.launch.cleanup()
            self.launch = None
        self.host_io = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
        self._buffer.clear()


class _TooLarge(Exception):
    """A reply line exceeded the size cap."""


def _stop_workers(workers: list[_Worker], grace_s: float = STOP_GRACE_S) -> None:
    """Stop idle workers cleanly: all are asked at once, then each is waited for."""
    for worker in workers:
        worker.begin_stop()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.discard(max(0.0, deadline - time.monotonic()))


def _stop_in_background(workers: list[_Worker]) -> None:
    """Ask evicted workers to exit now; reap them on a thread so no caller waits for it."""
    if not workers:
        return
    for worker in workers:
        worker.begin_stop()
    threading.Thread(target=_stop_workers, args=(workers,), name="worker-reaper").start()


def _stop_all(lock: threading.Lock, workers: dict[str, _Worker]) -> None:
    with lock:
        everything = list(workers.values())
        workers.clear()
    idle = []
    for worker in everything:
        if worker.lock.acquire(blocking=False):
            idle.append(worker)
        elif worker.proc is not None:
            # In a call on another thread: kill it; that thread sees the end and cleans up.
            _kill_group(worker.proc.pid)
    try:
        _stop_workers(idle)
    finally:
        for worker in idle:
            worker.lock.release()


def _has_exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _end_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """Wait up to ``grace_s`` for the worker to exit, SIGKILL its process group, reap it.

    The group is killed before the worker is reaped, so its id cannot have been reused.
    """
    if proc.returncode is not None:
        return proc.returncode
    deadline = time.monotonic() + grace_s
    while not _has_exited(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    _kill_group(proc.pid)
    return proc.wait()


def _write_all(fd: int, data: bytes, deadline: float) -> bool:
    """Write all of ``data`` to a non-blocking pipe; False when the deadline passed."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if not poller.poll(min(left, 1.0) * 1000):
            continue
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise BrokenPipeError from exc
            raise
        view = view[written:]
    return True


def _close_quietly(pipe: Any) -> None:
    try:
        pipe.close()
    except OSError:
        pass


def _code_paths(extra_sys_path: list[str]) -> list[str]:
    """What a worker imports from besides Python: the packages of this project, extra paths."""
    root = Path(__file__).resolve().parent.parent
    return package_dirs(root) + [os.path.abspath(p) for p in extra_sys_path]


def _worker_env(extra_sys_path: list[str], overrides: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    # The model caches as this process resolves them (a sandboxed HOME is elsewhere).
    models, hub = model_read_paths()
    env.setdefault("ORCHESTRATOR_CACHE_DIR", str(models.parent))
    env.setdefault("HF_HUB_CACHE", str(hub))
    # Workers run side by side on few cores: one math thread each unless told otherwise
    # (two torch threads per worker made parallel steps several times slower here).
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    # The worker must import this very orchestrator package, wherever it is installed.
    package_root = str(Path(__file__).resolve().parent.parent)
    paths = [os.path.abspath(p) for p in extra_sys_path]
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths.append(package_root)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _request(
    card: ToolCard, inputs: dict[str, Any], ctx: CallContext
) -> tuple[dict[str, Any], list[str]]:
    """The call message (file inputs as absolute paths) and the names of its file inputs.

    Bad inputs raise ToolFailed.
    """
    specs = {io.name: io for io in card.inputs}
    for spec in card.inputs:
        if not spec.optional and inputs.get(spec.name) is None:
            raise ToolFailed(card.name, f"required input '{spec.name}' is missing")
    values: dict[str, Any] = {}
    files: list[str] = []
    for name, value in inputs.items():
        spec = specs.get(name)
        if spec is not None and spec.type in _FILE_TYPES and value is not None:
            if not isinstance(value, str | os.PathLike):
                raise ToolFailed(card.name, f"input '{name}' must be a file path ({spec.type})")
            value = os.path.abspath(os.fspath(value))
            if not os.path.isfile(value):
                raise ToolFailed(card.name, f"input '{name}' file does not exist: {value}")
            files.append(name)
        values[name] = value
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise ToolFailed(card.name, f"inputs are not JSON-serializable: {exc}") from exc
    scratch = os.path.abspath(os.fspath(ctx.scratch))
    os.makedirs(scratch, exist_ok=True)
    message = {
        "inputs": values,
        "scratch": scratch,
        "max_tokens": ctx.max_tokens,
        "timeout_s": ctx.timeout_s,
    }
    return message, files


def _validated_outputs(card: ToolCard, outputs: Any, scratch: Path) -> dict[str, Any]:
    """The outputs named by the card, checked against their types; raise ToolFailed if not."""
    if not isinstance(outputs, dict):
        raise ToolFailed(card.name, "returned outputs that are not a mapping of output names")
    checked: dict[str, Any] = {}
    for spec in card.outputs:
        value = outputs.get(spec.name)
        if value is None:
            if spec.optional:
                continue
            raise ToolFailed(card.name, f"output '{spec.name}' is missing")
        checked[spec.name] = _checked_output(card.name, spec, value, scratch)
    return checked


def _checked_output(card_name: str, spec: IOSpec, value: Any, scratch: Path) -> Any:
    if spec.type == "text":
        if not isinstance(value, str):
            raise ToolFailed(
                card_name, f"output '{spec.name}' must be text (str), got {type(value).__name__}"
            )
        return value
    if spec.type in _FILE_TYPES:
        if not isinstance(value, str):
            raise ToolFailed(
                card_name,
                f"output '{spec.name}' must be a file path ({spec.type}), "
                f"got {type(value).__name__}",
            )
        path = Path(os.path.realpath(value))
        if not path.is_relative_to(os.path.realpath(scratch)):
            raise ToolFailed(
                card_name, f"output '{spec.name}' file is outside the scratch folder: {value}"
            )
        if not path.is_file():
            raise ToolFailed(card_name, f"output '{spec.name}' file does not exist: {value}")
        return str(path)
    return value  # json: it crossed the pipe as JSON, so it is serializable


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(_count(raw.get("input_tokens")), _count(raw.get("output_tokens")))


def _count(value: Any) -> int:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def _one_line(text: Any) -> str:
    line = " ".join(str(text or "unknown error").split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


def _join(*parts: str) -> str:
    return "\n".join(part.rstrip() for part in parts if part.strip())
