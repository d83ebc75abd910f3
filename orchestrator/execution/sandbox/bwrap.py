"""The namespace layer: the bubblewrap command line for one sandboxed process.

Everything is unshared, the network always (a tool given endpoints reaches them through the
relay, :mod:`orchestrator.execution.sandbox.relay`); every capability is dropped but the few the
process uses for its own set-up and then drops for good
(:mod:`orchestrator.execution.sandbox.confine` checks none is left); and only what the process needs
is bound: the system's /usr and a few /etc files, the Python it runs on, the orchestrator's
packages, the card's own folder, the model caches (all read-only), the policy's approved paths,
/proc of its own pid namespace with /proc/sys read-only, a minimal read-only /dev with a capped
/dev/shm, and two private size-capped tmpfs: /tmp and /io (``/io/in`` for input copies, ``/io/out``
the scratch).
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from orchestrator.execution.sandbox.policy import Policy, model_read_paths

__all__ = [
    "INSIDE_IO",
    "bound_paths",
    "bwrap_command",
    "python_paths",
    "setup_capabilities",
    "site_dirs",
    "system_binds",
]

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
    """The interpreter's installation, the venv and the site-packages in use, deduplicated."""
    paths = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return _outermost(paths + site_dirs())


def site_dirs() -> list[str]:
    """The site-packages folders this interpreter imports installed packages from."""
    return [
        p
        for p in dict.fromkeys(sys.path)
        if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)
    ]


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths inside another path of the list (one bind covers them)."""
    real = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    kept: list[str] = []
    for path in real:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def bwrap_command(
    bwrap: str,
    policy: Policy,
    inner: list[str],
    code_paths: list[str],
    *,
    privileged: bool = False,
    extra_binds: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> list[str]:
    """The full command: bubblewrap, its binds, then ``inner`` (run with /io/out as cwd).

    ``privileged`` (started by root): no user namespace, so that the process can become an
    unprivileged uid of the host itself (a user namespace would map it to host root). The
    network namespace is always the sandbox's own: approved endpoints are reached through the
    relay, whose socket and hosts file come in ``extra_binds`` (host path, path inside).
    """
    if privileged:
        namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        args = [bwrap, *namespaces, "--unshare-cgroup-try"]
    else:
        args = [bwrap, "--unshare-all"]
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    # Kept only for the process's own set-up (sealing its tmpfs noexec, id-mapped binds,
    # loopback addresses, becoming an unprivileged uid); confine.drop_privileges then drops
    # them all before any tool code exists.
    for cap in setup_capabilities(privileged, policy):
        args += ["--cap-add", cap]
    args += ["--hostname", "sandbox", *system_binds()]
    if policy.wants_network:  # certificates; names come from the relay's hosts file
        for path in _NETWORK_ETC:
            if path not in ("/etc/hosts", "/etc/resolv.conf"):
                args += ["--ro-bind-try", path, path]
    size = str(policy.scratch_mb * 1024 * 1024)
    # A fresh /proc of the sandbox's pid namespace; its host-global settings are read-only.
    args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
    args += ["--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
    # A minimal /dev (null, zero, full, random, urandom, tty, pts), read-only but for a capped
    # /dev/shm (sealed noexec by the process).
    args += ["--dev", "/dev", "--perms", "01777", "--size", str(policy.shm_mb * 1024 * 1024)]
    args += ["--tmpfs", "/dev/shm"]
    if policy.gpu:
        for device in sorted(glob.glob("/dev/nvidia*")) + ["/dev/dri", "/dev/kfd"]:
            args += ["--dev-bind-try", device, device]
    args += ["--remount-ro", "/dev"]
    # The private tmpfs first: a bound path under /tmp (a test's folder) goes on top of it.
    args += ["--perms", "01777", "--size", size, "--tmpfs", "/tmp"]
    args += ["--perms", "0755", "--size", size, "--tmpfs", INSIDE_IO]
    binds = _policy_binds(policy, code_paths)
    for kind, path in binds:
        args += [kind, path, path]
    for source, target in extra_binds:
        args += ["--ro-bind", source, target]
    # bubblewrap makes the folders above a bind root-only: the unprivileged uid must pass.
    targets = [path for _, path in binds] + [t for _, t in extra_binds] + _targets(args)
    for folder in _parents(targets):
        args += ["--chmod", "0755", folder]
    args += ["--perms", "0755", "--dir", f"{INSIDE_IO}/in"]
    args += ["--perms", "01777", "--dir", f"{INSIDE_IO}/out", "--chdir", f"{INSIDE_IO}/out"]
    args += ["--remount-ro", "/"]  # the sandbox's own root: only /tmp, /io, /dev/shm stay writable
    return [*args, "--", *inner]


def setup_capabilities(privileged: bool, policy: Policy) -> list[str]:
    """The capabilities the process keeps for its own set-up (see :func:`bwrap_command`)."""
    caps = ["CAP_SYS_ADMIN", "CAP_SETPCAP"]
    if privileged:
        caps += ["CAP_SETUID", "CAP_SETGID"]
    if policy.loopback_addresses():
        caps.append("CAP_NET_ADMIN")
    if any(e.port < 1024 for e in policy.endpoints()):
        caps.append("CAP_NET_BIND_SERVICE")
    return caps


def bound_paths(policy: Policy, code_paths: list[str]) -> list[tuple[str, bool]]:
    """The host folders bound besides the system's, each with whether it is read-only."""
    return [(path, kind == "--ro-bind") for kind, path in _policy_binds(policy, code_paths)]


def _policy_binds(policy: Policy, code_paths: list[str]) -> list[tuple[str, str]]:
    read = python_paths() + code_paths + [str(p) for p in model_read_paths()] + list(policy.read)
    writable = set(_outermost([p for p in policy.write if os.path.exists(p)]))
    binds = []
    for path in _outermost([p for p in read if os.path.exists(p)]):
        if not any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable):
            binds.append(("--ro-bind", path))
    binds += [("--bind", path) for path in sorted(writable)]
    return binds


_MOUNTED = ("/", "/tmp", INSIDE_IO, "/dev", "/proc")
_BIND_FLAGS = ("--ro-bind", "--ro-bind-try", "--bind", "--bind-try", "--dev-bind-try")


def _targets(args: list[str]) -> list[str]:
    """Where the binds of a bubblewrap command line go (the word after their source)."""
    return [args[i + 2] for i, word in enumerate(args[:-2]) if word in _BIND_FLAGS]


def _parents(paths: list[str]) -> list[str]:
    """Folders above ``paths`` that bubblewrap creates (not a mount, not inside a bind)."""
    found: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path.rstrip("/"))
        while parent not in _MOUNTED and parent not in found:
            found.add(parent)
            parent = os.path.dirname(parent)
    inside = [p for p in found if any(p == b or p.startswith(b.rstrip("/") + "/") for b in paths)]
    return sorted(found - set(inside))


def package_dirs(root: Path) -> list[str]:
    """The importable packages directly under ``root`` (bound instead of the whole folder)."""
    try:
        return sorted(
            str(p) for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
        )
    except OSError:
        return []
