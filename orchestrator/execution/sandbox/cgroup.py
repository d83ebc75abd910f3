"""A cgroup per sandboxed process: caps its memory and its number of processes (v1 or v2).

Created under this process's own cgroup (read from /proc/self/cgroup). The child joins it
before it executes anything (:meth:`ProcessCgroup.join_in_child`), so every process it spawns is
counted. Removed when the process is gone.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from orchestrator.execution.sandbox.probe import HostProbe

__all__ = ["ProcessCgroup"]


class ProcessCgroup:
    """One cgroup (one folder per v1 controller, one folder in v2)."""

    def __init__(self, probe: HostProbe, label: str, memory_mb: int, max_procs: int) -> None:
        assert probe.cgroup_memory is not None
        name = f"orchestrator-{label[:40]}-{uuid.uuid4().hex[:8]}"
        self.version = probe.cgroup_version
        self.dirs: list[Path] = [probe.cgroup_memory / name]
        if self.version == 1 and probe.cgroup_pids is not None:
            self.dirs.append(probe.cgroup_pids / name)
        for folder in self.dirs:
            folder.mkdir()
        limit = str(memory_mb * 1024 * 1024)
        memory = self.dirs[0]
        if self.version == 1:
            (memory / "memory.limit_in_bytes").write_text(limit)
            _try_write(memory / "memory.memsw.limit_in_bytes", limit)
            if len(self.dirs) > 1:
                (self.dirs[1] / "pids.max").write_text(str(max_procs))
        else:
            (memory / "memory.max").write_text(limit)
            _try_write(memory / "memory.swap.max", "0")
            _try_write(memory / "pids.max", str(max_procs))
        self._procs_files = [str(folder / "cgroup.procs") for folder in self.dirs]

    def join_in_child(self) -> None:
        """Move the calling process in (called between fork and exec: os-level calls only)."""
        for path in self._procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for exceeding the memory cap."""
        memory = self.dirs[0]
        try:
            if self.version == 1:
                control = (memory / "memory.oom_control").read_text()
                if "oom_kill " in control:
                    return int(control.split("oom_kill ")[1].split()[0]) > 0
                return int((memory / "memory.failcnt").read_text()) > 0
            events = (memory / "memory.events").read_text()
            return int(events.split("oom_kill ")[1].split()[0]) > 0
        except (OSError, IndexError, ValueError):
            return False

    def usage_mb(self) -> int | None:
        """Memory the processes use now (None when it cannot be read)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        try:
            return int((self.dirs[0] / name).read_text()) // (1024 * 1024)
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        """Every process in the cgroup now."""
        try:
            return [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup (a child that escaped with setsid too)."""
        for _ in range(100):
            try:
                pids = [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self, wait_s: float = 2.0) -> None:
        """Kill what is left, then delete the folders once empty (best effort)."""
        self.kill_all()
        deadline = time.monotonic() + wait_s
        for folder in self.dirs:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.02)


def _try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass  # optional knob (swap accounting off, or not delegated)
