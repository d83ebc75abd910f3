"""Moving files across the sandbox wall: inputs copied in, the scratch copied out.

The parent reaches the sandbox's I/O folder through a path (``/proc/<pid>/root/io`` under
namespaces) whose insides the sandboxed code controls, so every step below the I/O folder is
opened relative to a directory descriptor with ``O_NOFOLLOW``: a symlink planted by the tool is
never followed by the parent, and only regular files and folders come out.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

__all__ = ["clear_io", "copy_in", "copy_out"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def _open_sub(host_io: Path, name: str) -> int:
    io_fd = os.open(host_io, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=io_fd)
    finally:
        os.close(io_fd)


def clear_io(host_io: Path) -> None:
    """Empty ``in`` and ``out`` (what the last call left)."""
    for name in ("in", "out"):
        fd = _open_sub(host_io, name)
        try:
            for entry in os.listdir(fd):
                _remove(fd, entry)
        finally:
            os.close(fd)


def _remove(dir_fd: int, name: str) -> None:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            for entry in os.listdir(sub):
                _remove(sub, entry)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def copy_in(host_io: Path, inside_io: str, index: int, source: str) -> str:
    """Copy the host file ``source`` into ``in``; return its path inside the sandbox."""
    name = f"{index}-{os.path.basename(source)}"
    in_fd = _open_sub(host_io, "in")
    try:
        out = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=in_fd
        )
        with open(source, "rb") as src, os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    finally:
        os.close(in_fd)
    return f"{inside_io}/in/{name}"


def copy_out(host_io: Path, dest: Path, max_bytes: int) -> dict[str, Path]:
    """Copy the regular files of ``out`` into ``dest``; return relative name -> copied path.

    Symlinks, devices, fifos and sockets are skipped; copying stops at ``max_bytes`` in all.
    """
    copied: dict[str, Path] = {}
    out_fd = _open_sub(host_io, "out")
    try:
        _copy_tree(out_fd, "", dest, copied, [max_bytes])
    finally:
        os.close(out_fd)
    return copied


def _copy_tree(
    dir_fd: int, prefix: str, dest: Path, copied: dict[str, Path], budget: list[int]
) -> None:
    for name in sorted(os.listdir(dir_fd)):
        relative = f"{prefix}{name}"
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                (dest / relative).mkdir(parents=True, exist_ok=True)
                _copy_tree(sub, relative + "/", dest, copied, budget)
            finally:
                os.close(sub)
        elif stat.S_ISREG(info.st_mode) and info.st_size <= budget[0]:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            with os.fdopen(fd, "rb") as src, open(target, "wb") as dst:
                budget[0] -= _copy_capped(src, dst, budget[0])
            copied[relative] = target


def _copy_capped(src: object, dst: object, limit: int) -> int:
    done = 0
    while done < limit:
        chunk = src.read(min(_CHUNK, limit - done))  # type: ignore[attr-defined]
        if not chunk:
            break
        dst.write(chunk)  # type: ignore[attr-defined]
        done += len(chunk)
    return done
