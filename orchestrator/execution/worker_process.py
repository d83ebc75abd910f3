"""One worker process: start it in its sandbox, exchange JSON lines with it, stop it.

:class:`~orchestrator.execution.pool.WorkerPoolExecutor` keeps one :class:`Worker` per card and
decides when to start, reuse and stop them; this module is the process plumbing.

Between calls every process of a worker is stopped (SIGSTOP; SIGCONT before the next call), so a
thread or a child a call left running cannot go on using the machine outside any timeout. The
worker's standard error is read into memory, keeping its last :data:`LOG_KEEP_BYTES` (no file
grows on the host).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator.cards import ToolCard
from orchestrator.errors import FilesRefused, ToolFailed
from orchestrator.execution.sandbox import Launch
from orchestrator.execution.sandbox.boot import BOOT_FAILED
from orchestrator.execution.sandbox.transfer import clear_io, copy_in, copy_out

MAX_RESULT_BYTES = 64 * 1024 * 1024
STOP_GRACE_S = 2.0
LOG_KEEP_BYTES = 64 * 1024
"""How much of a worker's standard error is kept (its end)."""
_LOG_TAIL_BYTES = 4000
_REASON_CHARS = 300
_READ_CHUNK = 1 << 20
# Workers are started from one long-lived thread: the sandbox ties a worker's life to the
# thread that spawned it (--die-with-parent), and the graph's threads come and go.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator-spawner")


class Worker:
    """One worker process for one card. Its methods are called with ``lock`` held."""

    def __init__(self, key: str, card: ToolCard, max_result_bytes: int) -> None:
        self.key = key
        self.card = card
        self.max_result_bytes = max_result_bytes
        self.lock = threading.Lock()
        self.busy = 0
        self.last_used = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = _LogTail(LOG_KEEP_BYTES)
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

    def start(self, launch: Launch, timeout: float, overrun: str | None = None) -> float:
        """Start the sandboxed process and load the model; return the seconds it took.

        ``overrun`` is the reason given when loading takes longer than ``timeout``.
        """
        started = time.monotonic()
        self.launch = launch
        self.log = _LogTail(LOG_KEEP_BYTES)
        try:
            # Started from one long-lived thread: the sandbox ties a worker's life to the thread
            # that spawned it (--die-with-parent), and the graph's threads come and go.
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                launch.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=launch.env,
                cwd=launch.cwd,
                preexec_fn=launch.preexec(),
                start_new_session=True,
            ).result()
        except (OSError, subprocess.SubprocessError) as exc:
            self.discard()
            raise ToolFailed(self.name, f"cannot start a worker: {exc}") from exc
        assert self.proc.stderr is not None
        self.log.follow(self.proc.stderr)
        self._buffer.clear()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = started + timeout
        reply = self._exchange(self.card.model_dump(mode="json"), deadline, "while loading")
        if reply is None:
            self._fail(overrun or f"loading took longer than {timeout:g} s; worker killed")
        if not reply.get("ok"):
            self.discard(grace_s=1.0)
            detail = _join(str(reply.get("traceback", "")), self.log_tail())
            raise ToolFailed(self.name, "failed to load: " + _one_line(reply.get("error")), detail)
        self._freeze()
        return time.monotonic() - started

    def request(
        self,
        request: dict[str, Any],
        file_inputs: list[str],
        timeout: float,
        overrun: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[dict[str, Any], float]:
        """Send one call and return the worker's successful reply and the call's wall time.

        ``overrun`` is the reason given when the call takes longer than ``timeout``;
        ``on_text`` receives the text pieces a streaming tool sends before its reply.
        """
        started = time.monotonic()
        scratch = Path(request["scratch"])
        message = self._staged(request, file_inputs)
        self._thaw()
        reply = self._exchange(message, started + timeout, "during the call", on_text)
        seconds = time.monotonic() - started
        if reply is None:
            self._fail(overrun or f"timed out after {timeout:g} s; worker killed")
        self._freeze()
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
        except FilesRefused as exc:  # the call fails; the worker is fine (``out`` is emptied)
            raise ToolFailed(self.name, f"{exc}; none of its files were kept") from None
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

    def _exchange(
        self,
        message: Any,
        deadline: float,
        when: str,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any] | None:
        """Send one line and read its reply line; None when the deadline passed.

        Text pieces streamed before the reply go to ``on_text``; if it raises, the reply is
        still read (the worker stays in step) and then its error is raised.
        """
        assert self.proc is not None and self.proc.stdin is not None
        data = json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n"
        try:
            if not _write_all(self.proc.stdin.fileno(), data, deadline):
                return None
        except BrokenPipeError:
            self._fail(self._exit_reason(when))
        refused: Exception | None = None
        while True:
            reply = self._next_reply(deadline, when)
            if reply is None or "text" not in reply or "ok" in reply:
                break
            if on_text is not None and refused is None:
                try:
                    on_text(str(reply["text"]))
                except Exception as exc:  # noqa: BLE001 - raised once the reply is read
                    refused = exc
        if refused is not None:
            raise refused
        return reply

    def _next_reply(self, deadline: float, when: str) -> dict[str, Any] | None:
        """The worker's next line as a JSON object; None when the deadline passed."""
        try:
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

    def _freeze(self) -> None:
        """Stop every process of the worker until the next call (see the module)."""
        if self.launch is not None and self.proc is not None:
            self.launch.freeze(self.proc.pid)

    def _thaw(self) -> None:
        if self.launch is not None and self.proc is not None:
            self.launch.thaw(self.proc.pid)

    def _exit_reason(self, when: str) -> str:
        """Kill what is left of the worker and say how it ended."""
        assert self.proc is not None
        code = _end_process_group(self.proc, grace_s=1.0)
        self.log.settle(1.0)
        memory = self.launch.death_reason() if self.launch is not None else ""
        if self.launch is not None and self.launch.mode == "namespaces" and code > 128:
            code = 128 - code  # bubblewrap exits with 128 + the signal that killed the tool
        if code == BOOT_FAILED:
            lines = self.log.text().strip().splitlines()
            return f"the sandbox could not be applied {when}: " + (lines[-1] if lines else "?")
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
        """The end of the worker's standard error (for failure details).

        Once the worker has ended, what it wrote last is waited for briefly.
        """
        if self.proc is None or _has_exited(self.proc.pid):
            self.log.settle(1.0)
        return self.log.text()[-_LOG_TAIL_BYTES:]

    def begin_stop(self) -> None:
        """Ask the worker to exit: it reads end of file and returns."""
        if self.proc is not None and self.proc.stdin is not None:
            self._thaw()
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
        self._buffer.clear()


class _TooLarge(Exception):
    """A reply line exceeded the size cap."""


class _LogTail:
    """The last ``keep`` bytes of a pipe, read by a thread until the pipe ends."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._data = bytearray()
        self._lock = threading.Lock()
        self.total = 0

    def follow(self, pipe: Any) -> None:
        self._reader = threading.Thread(
            target=self._read, args=(pipe,), name="worker-log", daemon=True
        )
        self._reader.start()

    def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the rest of a pipe whose writer has ended."""
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout)

    def _read(self, pipe: Any) -> None:
        fd = pipe.fileno()
        try:
            while chunk := os.read(fd, _READ_CHUNK):
                with self._lock:
                    self.total += len(chunk)
                    self._data += chunk
                    if len(self._data) > self.keep:
                        del self._data[: len(self._data) - self.keep]
        except OSError:
            pass
        finally:
            _close_quietly(pipe)

    def kept(self) -> int:
        """How many bytes are held now (at most ``keep``)."""
        with self._lock:
            return len(self._data)

    def text(self) -> str:
        with self._lock:
            return bytes(self._data).decode("utf-8", errors="replace")


def stop_workers(workers: list[Worker], grace_s: float = STOP_GRACE_S) -> None:
    """Stop idle workers cleanly: all are asked at once, then each is waited for."""
    for worker in workers:
        worker.begin_stop()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.discard(max(0.0, deadline - time.monotonic()))


def stop_in_background(workers: list[Worker]) -> None:
    """Ask evicted workers to exit now; reap them on a thread so no caller waits for it."""
    if not workers:
        return
    for worker in workers:
        worker.begin_stop()
    threading.Thread(target=stop_workers, args=(workers,), name="worker-reaper").start()


def kill_busy(lock: threading.Lock, workers: dict[str, Worker]) -> int:
    """Kill the workers in a call now and drop them from ``workers``; how many there were.

    Each call fails (its thread sees the end and cleans up); later calls start new workers.
    """
    with lock:
        busy = [w for w in workers.values() if w.busy]
        for worker in busy:
            del workers[worker.key]
    for worker in busy:
        if worker.proc is not None:
            _kill_group(worker.proc.pid)
    return len(busy)


def stop_all(lock: threading.Lock, workers: dict[str, Worker]) -> None:
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
        stop_workers(idle)
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


def _one_line(text: Any) -> str:
    line = " ".join(str(text or "unknown error").split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


def _join(*parts: str) -> str:
    return "\n".join(part.rstrip() for part in parts if part.strip())
