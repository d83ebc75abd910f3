"""The namespace layer: the bubblewrap command line for one sandboxed process.

Everything is unshared (network too unless the policy allows it), every capability is dropped
(as root, bubblewrap otherwise leaves them and a read-only bind can be remounted writable) but
CAP_SYS_ADMIN and CAP_SETPCAP, which the process uses first thing to remount its writable tmpfs
noexec and then drops for good (:mod:`orchestrator.sandbox.confine` checks none is left), and
only what the process needs is bound: the system's /usr and a few /etc files, the Python it runs
on, the orchestrator's packages, the model caches (all read-only), the policy's extra paths, and
two private size-capped tmpfs: /tmp and /io (``/io/in`` for input copies, ``/io/out`` the scratch).
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from orchestrator.sandbox.policy import Policy, model_read_paths

__all__ = ["INSIDE_IO", "bwrap_command", "system_binds"]

INSIDE_IO = "/io"
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
)
_NETWORK_ETC = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/gai.conf",
)


def system_binds() -> list[str]:
    """Read-only /usr, the merged-/usr links (or binds), and the /etc files programs need."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def python_paths() -> list[str]:
    """The interpreter's installation and the active environment (venv), deduplicated."""
    paths = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return _outermost(paths)


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths inside another path of the list (one bind covers them)."""
    real = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    kept: list[str] = []
    for path in real:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def bwrap_command(bwrap: str, policy: Policy, inner: list[str], code_paths: list[str]) -> list[str]:
    """The full command: bubblewrap, its binds, then ``inner`` (run with /io/out as cwd)."""
    args = [bwrap, "--unshare-all"]
    if policy.wants_network:
        args.append("--share-net")
    args += [
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        # Kept (with CAP_SETPCAP, to drop the bounding set) only until the process has
        # remounted /io and /tmp noexec; it then drops it
        # (confine.drop_capabilities) before any tool code runs.
        "--cap-add",
        "CAP_SYS_ADMIN",
        "--cap-add",
        "CAP_SETPCAP",
        "--hostname",
        "sandbox",
        *system_binds(),
    ]
    if policy.wants_network:
        for path in _NETWORK_ETC:
            args += ["--ro-bind-try", path, path]
    size = str(policy.scratch_mb * 1024 * 1024)
    args += ["--proc", "/proc", "--dev", "/dev"]
    if policy.gpu:
        for device in sorted(glob.glob("/dev/nvidia*")) + ["/dev/dri", "/dev/kfd"]:
            args += ["--dev-bind-try", device, device]
    # The private tmpfs first: a bound path under /tmp (a test's folder) goes on top of it.
    args += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", INSIDE_IO]
    read = python_paths() + code_paths + [str(p) for p in model_read_paths()] + list(policy.read)
    writable = set(_outermost([p for p in policy.write if os.path.exists(p)]))
    for path in _outermost([p for p in read if os.path.exists(p)]):
        if not any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable):
            args += ["--ro-bind", path, path]
    for path in sorted(writable):
        args += ["--bind", path, path]
    args += ["--dir", f"{INSIDE_IO}/in", "--dir", f"{INSIDE_IO}/out", "--chdir", f"{INSIDE_IO}/out"]
    args += ["--remount-ro", "/"]  # the sandbox's own root: only /tmp and /io stay writable
    return [*args, "--", *inner]


def package_dirs(root: Path) -> list[str]:
    """The importable packages directly under ``root`` (bound instead of the whole folder)."""
    try:
        return sorted(
            str(p) for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
        )
    except OSError:
        return []
