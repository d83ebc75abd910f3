"""Moving files across the sandbox wall: inputs copied in, the scratch copied out.

The parent reaches the sandbox's I/O folder through a path (``/proc/<pid>/root/io`` under
namespaces, a host folder under Landlock) whose insides the sandboxed code controls, so every
step below the I/O folder is opened relative to a directory descriptor with ``O_NOFOLLOW``: a
symlink planted by the tool is never followed by the parent.

What a call returns - the tree it left in ``out`` - is checked whole before a byte is copied
(:func:`copy_out`): at most :data:`MAX_ENTRIES` files and folders, :data:`MAX_DEPTH` levels,
``max_bytes`` in all, only regular files and folders, and only plain names
(:func:`name_problem`: no dot files or dot folders, no control characters). A tree that breaks
one of these raises :class:`FilesRefused` naming the breach, and nothing is copied. A copy never
replaces anything: a top-level name already taken at the destination gets a ``-2`` (``-3``...)
suffix and everything below it is new; copies are plain files (0644) and folders (0755).
Nothing here recurses on the tool's tree, so no depth of nesting can exhaust the stack
(:func:`clear_io` and :func:`remove_tree` delete trees of any depth).
"""

from __future__ import annotations

import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import FilesRefused

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_NAME_CHARS",
    "clear_io",
    "copy_in",
    "copy_out",
    "name_problem",
    "remove_tree",
]

MAX_ENTRIES = 1000
"""Files and folders one call may return."""
MAX_DEPTH = 8
"""Levels of a returned path (``a/b/c.png`` has 3)."""
MAX_NAME_CHARS = 120
"""Characters of one returned name (and at most twice as many bytes in UTF-8)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_MAX_OPEN = 32  # folder descriptors held at once while deleting a tree
_MAX_SUFFIX = 1000


@dataclass(frozen=True)
class _Entry:
    """One returned file or folder, as scanned."""

    parts: tuple[str, ...]
    is_dir: bool
    size: int

    @property
    def relative(self) -> str:
        return "/".join(self.parts)


def name_problem(name: str) -> str | None:
    r"""Why ``name`` may not leave the sandbox (None when it is a plain name).

    Refused: hidden names (``.git``, ``.ssh``, ``.bashrc``, ``.orchestrator-...``: control files
    of tools and of this program), names starting with ``-``, ``~`` or a space or ending with a
    space or a dot, control, format and separator characters (newlines, bidi overrides), ``\``,
    and names longer than :data:`MAX_NAME_CHARS`.
    """
    if name.startswith("."):
        return "starts with a dot (hidden names are refused: they can be control files)"
    if name.startswith(("-", "~", " ")) or name.endswith((" ", ".")):
        return "starts with '-', '~' or a space, or ends with a space or a dot"
    if any(not ch.isprintable() or ch == "\\" for ch in name):
        return "holds a control, format or separator character"
    if len(name) > MAX_NAME_CHARS or len(os.fsencode(name)) > 2 * MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    return None


def _shown(parts: tuple[str, ...]) -> str:
    text = repr("/".join(parts))
    return text if len(text) <= 90 else text[:87] + "..."


def _open_sub(host_io: Path, name: str) -> int:
    io_fd = os.open(host_io, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=io_fd)
    finally:
        os.close(io_fd)


# --- deleting, at any depth ---------------------------------------------------------------------


def clear_io(host_io: Path) -> None:
    """Empty ``in`` and ``out`` (what the last call left), however deep it is nested."""
    for name in ("in", "out"):
        fd = _open_sub(host_io, name)
        try:
            _remove_dir_contents(fd)
        finally:
            os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a folder with all in it, or a file) at any depth, following no link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if stat.S_ISDIR(info.st_mode):
            _remove_dir(parent, path.name)
        else:
            os.unlink(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def _remove_dir_contents(fd: int) -> None:
    for entry in _listing(fd):
        if entry.is_dir(follow_symlinks=False):
            _remove_dir(fd, entry.name)
        else:
            _unlink(fd, entry.name)


def _listing(fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as entries:
        return list(entries)


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _subfolders_after_unlinking_files(fd: int) -> list[str]:
    """Delete the files in folder ``fd``; return the names of its subfolders."""
    folders = []
    for entry in _listing(fd):
        if entry.is_dir(follow_symlinks=False):
            folders.append(entry.name)
        else:
            _unlink(fd, entry.name)
    return folders


def _remove_dir(parent_fd: int, name: str) -> None:
    """Delete folder ``name`` of ``parent_fd`` with everything in it, without recursion.

    At most :data:`_MAX_OPEN` folders are open at once: a subfolder deeper than that is moved
    up into the folder being deleted and taken apart from there, so any depth ends.
    """
    root = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    # Each frame: the folder's parent descriptor, its name, its descriptor, subfolders left.
    stack: list[tuple[int, str, int, list[str]]] = [
        (parent_fd, name, root, _subfolders_after_unlinking_files(root))
    ]
    try:
        while stack:
            parent, own, fd, pending = stack[-1]
            if not pending:
                pending.extend(_subfolders_after_unlinking_files(fd))
                if not pending:  # empty now: delete it and go back up
                    stack.pop()
                    os.close(fd)
                    os.rmdir(own, dir_fd=parent)
                    continue
            sub = pending.pop()
            if len(stack) >= _MAX_OPEN:
                os.rename(sub, f".deep-{uuid.uuid4().hex}", src_dir_fd=fd, dst_dir_fd=root)
                continue
            try:
                child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            stack.append((fd, sub, child, _subfolders_after_unlinking_files(child)))
    finally:
        for _parent, _own, fd, _pending in stack:
            os.close(fd)


# --- in ---------------------------------------------------------------------------------------


def copy_in(host_io: Path, inside_io: str, index: int, source: str) -> str:
    """Copy the host file ``source`` into ``in``; return its path inside the sandbox."""
    name = f"{index}-{os.path.basename(source)}"
    in_fd = _open_sub(host_io, "in")
    try:
        out = os.open(name, _NEW_FILE, 0o644, dir_fd=in_fd)
        with open(source, "rb") as src, os.fdopen(out, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
    finally:
        os.close(in_fd)
    return f"{inside_io}/in/{name}"


# --- out --------------------------------------------------------------------------------------


def copy_out(host_io: Path, dest: Path, max_bytes: int) -> dict[str, Path]:
    """Copy the tree in ``out`` into ``dest``; return each file's relative name -> its copy.

    The whole tree is checked first; one breach raises :class:`FilesRefused` and copies
    nothing (see the module). Names taken in ``dest`` are never replaced.
    """
    out_fd = _open_sub(host_io, "out")
    try:
        entries = _scan(out_fd, max_bytes)
        if not entries:
            return {}
        return _copy(out_fd, entries, dest)
    finally:
        os.close(out_fd)


def _scan(out_fd: int, max_bytes: int) -> list[_Entry]:
    """Every file and folder in ``out``, parents before children; FilesRefused on a breach."""
    found: list[_Entry] = []
    total = 0
    # Folders still to list, each with its open descriptor; at most MAX_DEPTH deep, so few.
    todo: list[tuple[int, tuple[str, ...]]] = [(os.dup(out_fd), ())]
    try:
        while todo:
            fd, parts = todo.pop()
            try:
                children = _checked_children(fd, parts, len(found))
                for entry in children:
                    found.append(entry)
                    total += entry.size
                    if total > max_bytes:
                        raise FilesRefused(
                            f"the files it returned hold more than {max_bytes / 2**20:g} MB"
                        )
                    if entry.is_dir:
                        sub = os.open(entry.parts[-1], _DIR_FLAGS, dir_fd=fd)
                        todo.append((sub, entry.parts))
            finally:
                os.close(fd)
    finally:
        for fd, _parts in todo:
            os.close(fd)
    return found


def _checked_children(fd: int, parts: tuple[str, ...], counted: int) -> list[_Entry]:
    """The entries of one returned folder in name order, each checked (count, name, kind, depth)."""
    listed: list[tuple[str, os.stat_result]] = []
    with os.scandir(fd) as listing:
        for item in listing:
            if counted + len(listed) >= MAX_ENTRIES:
                raise FilesRefused(f"it returned more than {MAX_ENTRIES} files and folders")
            listed.append((item.name, item.stat(follow_symlinks=False)))
    children = []
    for name, info in sorted(listed, key=lambda pair: pair[0]):
        path = (*parts, name)
        problem = name_problem(name)
        if problem:
            raise FilesRefused(f"the returned name {_shown(path)} {problem}")
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise FilesRefused(f"the returned {_shown(path)} is {_kind(info)}, not a plain file")
        if len(path) > MAX_DEPTH:
            raise FilesRefused(
                f"the returned {_shown(path)} is nested deeper than {MAX_DEPTH} levels"
            )
        is_dir = stat.S_ISDIR(info.st_mode)
        children.append(_Entry(path, is_dir, 0 if is_dir else info.st_size))
    return children


def _kind(info: os.stat_result) -> str:
    return "a symbolic link" if stat.S_ISLNK(info.st_mode) else "a device, fifo or socket"


def _copy(out_fd: int, entries: list[_Entry], dest: Path) -> dict[str, Path]:
    """Copy scanned entries under fresh names in ``dest``; on any error remove what was made."""
    dest.mkdir(parents=True, exist_ok=True)
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tops: dict[str, str] = {}  # top-level name returned -> the name it got in dest
    copied: dict[str, Path] = {}
    try:
        for entry in entries:
            if len(entry.parts) == 1:
                tops[entry.parts[0]] = _create_top(out_fd, dest_fd, entry)
            else:
                _create_below(out_fd, dest_fd, entry, tops[entry.parts[0]])
            if not entry.is_dir:
                copied[entry.relative] = dest.joinpath(tops[entry.parts[0]], *entry.parts[1:])
    except BaseException:
        for made in tops.values():
            try:
                remove_tree(dest / made)
            except OSError:
                pass
        raise
    finally:
        os.close(dest_fd)
    return copied


def _create_top(out_fd: int, dest_fd: int, entry: _Entry) -> str:
    """Create a top-level entry in ``dest`` under its name, or the first free ``-N`` variant."""
    name = entry.parts[0]
    stem, dot, ext = name.rpartition(".") if not entry.is_dir and "." in name else (name, "", "")
    for number in range(1, _MAX_SUFFIX + 1):
        candidate = name if number == 1 else f"{stem}-{number}{dot}{ext}"
        try:
            _create(out_fd, dest_fd, entry, candidate)
        except FileExistsError:
            continue
        return candidate
    raise FilesRefused(f"{_MAX_SUFFIX} files named like {_shown(entry.parts)} are there already")


def _create_below(out_fd: int, dest_fd: int, entry: _Entry, top: str) -> None:
    """Create a nested entry inside the top-level folder this copy made."""
    parent = _walk(dest_fd, (top, *entry.parts[1:-1]))
    try:
        _create(out_fd, parent, entry, entry.parts[-1])
    finally:
        os.close(parent)


def _create(out_fd: int, dest_dir: int, entry: _Entry, name: str) -> None:
    """Make ``name`` in ``dest_dir``: a new folder, or a new file with the entry's bytes."""
    if entry.is_dir:
        os.mkdir(name, 0o755, dir_fd=dest_dir)
        return
    source = _open_source(out_fd, entry)
    try:
        target = os.open(name, _NEW_FILE, 0o644, dir_fd=dest_dir)
        try:
            _copy_bytes(source, target, entry.size)  # as scanned: a file grown since is cut
        except BaseException:
            _unlink(dest_dir, name)
            raise
    finally:
        os.close(source)


def _copy_bytes(source: int, target: int, size: int) -> None:
    """Copy at most ``size`` bytes from ``source``; closes ``target``."""
    with os.fdopen(target, "wb") as dst:
        left = size
        while left > 0:
            chunk = os.read(source, min(_CHUNK, left))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)


def _open_source(out_fd: int, entry: _Entry) -> int:
    """Open a scanned file again, never through a link; it must still be a regular file."""
    folder = _walk(out_fd, entry.parts[:-1])
    try:
        fd = os.open(entry.parts[-1], _FILE_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FilesRefused(f"the returned {_shown(entry.parts)} changed into a special file")
    return fd


def _walk(top: int, parts: tuple[str, ...]) -> int:
    """A new descriptor of folder ``parts`` below ``top``, opened step by step without links."""
    fd = os.dup(top)
    for part in parts:
        try:
            sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd
