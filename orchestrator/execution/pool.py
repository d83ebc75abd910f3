"""Execute: run tool calls in warm, long-lived worker processes.

Each tool card gets its own worker process (:mod:`orchestrator.execution.worker`), started on the
first call and reused by later calls. A worker is keyed by the card's name, a digest of its
content and the folder it came from, so an edited card gets a fresh worker. Calls to one worker
are serialized; different cards run in parallel. Parent and worker speak JSON lines (see
:mod:`orchestrator.execution.worker`). Between calls a worker is frozen (every process of it
stopped), so nothing a call left behind runs on; a worker idle for ``idle_s`` seconds is stopped.

Failures never crash the caller: a tool that raises, a worker that dies, a call that times out,
a model that does not load, and outputs that do not match the card all raise
:class:`~orchestrator.errors.ToolFailed` with a one-line reason and a detail (traceback or the
tail of the worker's stderr log).

Timeouts: a call gets ``ctx.timeout_s`` seconds, or :func:`default_timeout_s` of the card when
unset (30 s plus 20 times the card's expected latency). Starting a worker and loading the model
gets ``start_timeout_s``, or three times the card's declared ``load_s`` when that is longer.
A worker that exceeds either is killed together with its whole process group. A
:class:`CallLimit` (set from a budget) caps the whole call, waiting for the worker, starting it
and loading the model included: every one of those timeouts is cut to what is left of it, less
:data:`KILL_MARGIN_S` for killing and reaping, so the call returns within the limit.

Sandbox: every worker runs under :mod:`orchestrator.execution.sandbox` with its card's policy
(:func:`~orchestrator.execution.sandbox.policy_for_card`), once the user approved what the card asks
for (:class:`~orchestrator.cards.approvals.Approvals`; built-in cards are approved as they
are). The command run inside is :meth:`WorkerPoolExecutor.worker_command`: an isolated interpreter
that is confined before the card's own folder - and only that card's - is appended to its
import path; :meth:`WorkerPoolExecutor.worker_launch` wraps it.
A worker sees a private I/O folder: before each call its file inputs are copied into ``in`` and
the call's scratch is ``out``; after the call what the tool wrote to ``out`` is copied into the
caller's ``ctx.scratch`` and output paths are rewritten to the copies. The worker's environment
is the sandbox's allow-list plus what its card asks for plus the executor's explicit ``env``,
never a variable the approvals withhold (the server's API key).

Limits: at most ``max_workers`` warm workers and, when ``memory_mb`` is set, at most that many
MB of them (each counted by what its cgroup measured after its last call, else by its card's
declared memory); least recently used idle workers are evicted first. At most
``max_concurrency`` calls (including model loads) run at once.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.cards import IOSpec, ToolCard, card_digest
from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext, Usage
from orchestrator.errors import ToolFailed
from orchestrator.execution.sandbox import Launch, Sandbox, policy_for_card
from orchestrator.execution.sandbox.bwrap import package_dirs
from orchestrator.execution.sandbox.launch import PACKAGE_ROOT, python_command
from orchestrator.execution.sandbox.policy import model_read_paths
from orchestrator.execution.worker_process import (
    MAX_RESULT_BYTES,
    Worker,
    kill_busy,
    stop_all,
    stop_in_background,
)
from orchestrator.permissions import DEFAULT_ENV

__all__ = [
    "KILL_MARGIN_S",
    "CallLimit",
    "CallOutcome",
    "Executor",
    "WorkerPoolExecutor",
    "default_timeout_s",
]

_FILE_TYPES = ("audio", "image")

KILL_MARGIN_S = 0.2
"""Seconds of a :class:`CallLimit` kept back for killing and reaping a worker that reaches it
(measured here at about 15 ms idle; the rest is slack for a loaded machine)."""


@dataclass(frozen=True)
class CallLimit:
    """The most wall seconds one whole call may take, set by a budget.

    The whole call: waiting for its worker, starting it and loading the model, and the call
    itself. The executor returns within ``seconds``, killing the worker if it must. ``hint``
    says how to allow more (e.g. ``raise --max-seconds or Budget(seconds=...)``); it ends the
    reason of a call that was stopped at the limit.
    """

    seconds: float
    hint: str = ""

    def reason(self, what: str, seconds: float, *, killed: bool = True) -> str:
        """``what`` (e.g. "loading took longer than") the seconds the budget leaves, and why."""
        text = f"{what} the {seconds:.3g} s the budget leaves" + (
            "; worker killed" if killed else ""
        )
        return f"{text}; {self.hint}" if self.hint else text


@dataclass
class CallOutcome:
    """The result of one tool call, with its timing and token usage."""

    outputs: dict[str, Any]
    seconds: float
    load_seconds: float
    usage: Usage = field(default_factory=Usage)


class Executor(Protocol):
    """Runs one tool call for a card; raises :class:`ToolFailed` when the call fails."""

    def call(
        self,
        card: ToolCard,
        inputs: dict[str, Any],
        ctx: CallContext,
        limit: CallLimit | None = None,
    ) -> CallOutcome:
        """Run the tool of ``card`` on ``inputs`` and return its validated outputs.

        With a ``limit`` the whole call (loading the model included) returns within it.
        """
        ...

    def is_warm(self, card: ToolCard) -> bool:
        """Whether a call to ``card`` would find its model already loaded."""
        ...

    def close(self) -> None:
        """Release every resource (worker processes) the executor holds."""
        ...


def _key(card: ToolCard) -> str:
    """The worker of ``card``: its name, content and code folder (same card, other code)."""
    return f"{card.name}@{card_digest(card)}@{card.code_folder or ''}"


DEFAULT_IDLE_S = 600.0


def default_timeout_s(card: ToolCard) -> float:
    """Seconds a call may take when the context sets no timeout: 30 + 20 x expected latency."""
    return 30.0 + 20.0 * card.cost.latency_s


class WorkerPoolExecutor:
    """Runs tools in warm, sandboxed worker processes, one per card.

    Thread-safe. When a new worker would exceed ``max_workers`` (or the ``memory_mb`` cap), the
    least recently used idle workers are stopped (if every worker is busy, the pool exceeds the
    limit until one is idle); one idle for ``idle_s`` seconds is stopped too. ``sandbox``
    defaults to the strongest this host permits. ``approvals``: what the user approved of the
    cards' requests (default: nothing, so only built-in cards and cards asking for nothing run).
    ``extra_sys_path``: folders every worker imports from last (after the interpreter's and the
    project's modules, before the card's own folder).
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
        approvals: Approvals | None = None,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not idle_s > 0:
            raise ValueError("idle_s must be positive")
        self.max_workers = max_workers
        self.start_timeout_s = start_timeout_s
        self.max_result_bytes = max_result_bytes
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.memory_mb = memory_mb
        self.worker_memory_mb = worker_memory_mb
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.approvals = approvals or Approvals()
        self.idle_s = idle_s
        self._overrides = dict(env or {})
        self._env = _worker_env(self._overrides)
        self._extra_sys_path = [os.path.abspath(p) for p in extra_sys_path]
        self._lock = threading.Lock()
        self._workers: dict[str, Worker] = {}
        self._closed = False
        # Stops the workers at interpreter exit (atexit), or when the executor is collected.
        self._finalizer = weakref.finalize(self, stop_all, self._lock, self._workers)
        self._finalizer.atexit = True
        self._closing = threading.Event()
        _start_reaper(self, self._closing)

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
            approvals=Approvals.from_config(config),
            idle_s=box.worker_idle_s,
        )

    def __enter__(self) -> WorkerPoolExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def worker_command(self, card: ToolCard) -> list[str]:
        """The command run inside the sandbox to start a worker for ``card``."""
        return python_command("orchestrator.execution.worker", code=self._code_folders(card))

    def _code_folders(self, card: ToolCard) -> list[str]:
        own = [str(card.code_folder)] if card.code_folder is not None else []
        return [*self._extra_sys_path, *own]

    def worker_launch(self, card: ToolCard) -> Launch:
        """The sandboxed start of a worker for ``card``: its policy around the command.

        A card asking for what is not approved raises ToolFailed (nothing is started).
        """
        problem = self.approvals.problem(card)
        if problem is not None:
            raise ToolFailed(card.name, f"not started: the card {problem}")
        policy = policy_for_card(card, memory_mb=self.worker_memory_mb)
        allowed = set(DEFAULT_ENV) | set(policy.env) | set(self._overrides)
        env = {k: v for k, v in self._env.items() if k in allowed}
        if not self.sandbox.enabled:
            env = dict(self._env)
        env = {k: v for k, v in env.items() if self.approvals.env_allowed(k, v)}
        code_paths = package_dirs(Path(PACKAGE_ROOT)) + self._code_folders(card)
        return self.sandbox.prepare(policy, self.worker_command(card), env, code_paths)

    def call(
        self,
        card: ToolCard,
        inputs: dict[str, Any],
        ctx: CallContext,
        limit: CallLimit | None = None,
    ) -> CallOutcome:
        """Run the tool of ``card`` in its warm worker; raise :class:`ToolFailed` on failure.

        With a ``limit`` the whole call returns within ``limit.seconds`` (see the module).
        """
        deadline = None
        if limit is not None:
            deadline = time.monotonic() + limit.seconds - KILL_MARGIN_S
        request, file_inputs = _request(card, inputs, ctx)
        worker, evicted = self._checkout(card)
        stop_in_background(evicted)
        try:
            with (
                _waited(worker.lock, card, deadline, limit),
                _waited(self._slots, card, deadline, limit),
            ):
                load_seconds = 0.0
                if not worker.running():
                    load_seconds = self._start(worker, card, deadline, limit)
                timeout = ctx.timeout_s if ctx.timeout_s is not None else default_timeout_s(card)
                timeout, overrun = _within(card, timeout, deadline, limit, "the call")
                request["timeout_s"] = timeout
                reply, seconds = worker.request(
                    request, file_inputs, timeout, overrun, on_text=ctx.on_text
                )
        finally:
            self._checkin(worker)
        outputs = _validated_outputs(card, reply.get("outputs"), Path(ctx.scratch))
        usage = _usage(reply.get("usage"))
        return CallOutcome(outputs, seconds, load_seconds, usage)

    def _start(
        self, worker: Worker, card: ToolCard, deadline: float | None, limit: CallLimit | None
    ) -> float:
        """Start the worker and load its model, within the start timeout and the limit."""
        timeout, overrun = _within(card, self._start_timeout(card), deadline, limit, "loading")
        return worker.start(self.worker_launch(card), timeout, overrun)

    def is_warm(self, card: ToolCard) -> bool:
        """Whether a worker for ``card`` (this exact version) is running, model loaded."""
        with self._lock:
            worker = self._workers.get(_key(card))
        return worker is not None and worker.running()

    def close(self) -> None:
        """Stop every worker (a call in flight fails with ToolFailed). Idempotent."""
        with self._lock:
            self._closed = True
        self._closing.set()
        self._finalizer()

    def reap_idle(self) -> int:
        """Stop the workers idle for ``idle_s`` seconds or more; how many there were."""
        now = time.monotonic()
        with self._lock:
            idle = [
                w for w in self._workers.values() if not w.busy and now - w.last_used >= self.idle_s
            ]
            self._remove(idle)
        stop_in_background(idle)
        return len(idle)

    def stop_running(self) -> int:
        """Stop the calls in flight now (their steps fail); the pool stays open for more.

        What a second Ctrl-C in the chat does; returns how many workers were stopped.
        """
        return kill_busy(self._lock, self._workers)

    def _start_timeout(self, card: ToolCard) -> float:
        return max(self.start_timeout_s, 3.0 * card.cost.load_s)

    def _checkout(self, card: ToolCard) -> tuple[Worker, list[Worker]]:
        key = _key(card)
        with self._lock:
            if self._closed:
                raise RuntimeError("this executor is closed")
            worker = self._workers.get(key)
            evicted: list[Worker] = []
            if worker is None:
                # An edited card makes the idle workers of its older versions useless.
                stale = [
                    w for w in self._workers.values() if w.card.name == card.name and not w.busy
                ]
                evicted.extend(self._remove(stale))
                worker = Worker(key, card, self.max_result_bytes)
                self._workers[key] = worker
            worker.busy += 1
            worker.last_used = time.monotonic()
            evicted.extend(self._over_limit())
        return worker, evicted

    def _checkin(self, worker: Worker) -> None:
        with self._lock:
            worker.busy -= 1
            worker.last_used = time.monotonic()
            closed = self._closed
            evicted = [] if closed else self._over_limit()
        if closed:
            # close() could only kill this worker while it was busy: finish stopping it here.
            evicted = [worker]
        stop_in_background(evicted)

    def _over_limit(self) -> list[Worker]:
        """Remove the least recently used idle workers beyond the limits (lock held)."""
        idle = sorted((w for w in self._workers.values() if not w.busy), key=lambda w: w.last_used)
        evicted: list[Worker] = []
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
            worker = self._workers.get(_key(card))
        return worker.memory_mb if worker is not None else None

    def worker_pid(self, card: ToolCard) -> int | None:
        """The process id (as this process sees it) of the running worker for ``card``."""
        with self._lock:
            worker = self._workers.get(_key(card))
        proc = worker.proc if worker is not None else None
        return proc.pid if proc is not None and proc.returncode is None else None

    def _remove(self, workers: list[Worker]) -> list[Worker]:
        for worker in workers:
            del self._workers[worker.key]
        return workers


def _start_reaper(pool: WorkerPoolExecutor, closing: threading.Event) -> None:
    """A thread that stops ``pool``'s idle workers; it ends with the pool (holds no reference)."""
    ref = weakref.ref(pool)
    period = max(0.05, min(pool.idle_s / 4, 30.0))

    def reap() -> None:
        while not closing.wait(period):
            alive = ref()
            if alive is None:
                return
            alive.reap_idle()
            del alive

    threading.Thread(target=reap, name="worker-idle-reaper", daemon=True).start()


def _within(
    card: ToolCard, timeout: float, deadline: float | None, limit: CallLimit | None, what: str
) -> tuple[float, str | None]:
    """``timeout`` cut to the ``deadline`` of a limit, with the reason to give if it is reached.

    Raises ToolFailed when the deadline has already passed (nothing is started then).
    """
    if deadline is None or limit is None:
        return timeout, None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ToolFailed(card.name, limit.reason(f"no time for {what} in", 0.0, killed=False))
    if left >= timeout:
        return timeout, None
    return left, limit.reason(f"{what} took longer than", left)


@contextmanager
def _waited(
    lock: Any, card: ToolCard, deadline: float | None, limit: CallLimit | None
) -> Iterator[None]:
    """Hold ``lock`` (a worker's lock or a call slot), waiting no later than ``deadline``."""
    if deadline is None or limit is None:
        acquired = lock.acquire()
    else:
        acquired = lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
    if not acquired:
        assert limit is not None
        waited = limit.seconds - KILL_MARGIN_S
        raise ToolFailed(
            card.name, limit.reason("waiting for a free worker took", waited, killed=False)
        )
    try:
        yield
    finally:
        lock.release()


def _worker_env(overrides: dict[str, str]) -> dict[str, str]:
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
        "stream": ctx.on_text is not None,
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
