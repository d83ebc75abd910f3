"""The in-process layers: seccomp and Landlock, applied by the sandboxed process to itself.

The worker (and ``sandbox exec``'s runner) calls :func:`confine_from_env` first thing, before it
loads any tool code. The parent describes what to apply in ``$ORCHESTRATOR_SANDBOX_CONFINE``
(JSON). Both layers are inherited by every child and cannot be lifted.

seccomp (always, when available): system calls that let code leave or inspect its box fail with
EPERM - ptrace and cross-process memory access, mount and namespace calls, kernel keyrings,
bpf, perf, module loading, reboot, swap; and, without network permission, IPv4/IPv6/packet
sockets. Landlock (when the namespace layer is off): the file system is read-only except the
scratch and the policy's writable paths, unreadable outside the listed paths, and TCP
connections go only to the allowed ports (ABI 4+); signals and abstract sockets stay inside
(ABI 6+). Under namespaces, the process first remounts its writable tmpfs noexec and then drops
the two capabilities bubblewrap left it for that.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import socket
from typing import Any

__all__ = [
    "CONFINE_ENV",
    "apply_landlock",
    "apply_rlimits",
    "apply_seccomp",
    "confine_from_env",
    "drop_capabilities",
    "seal_mounts",
]

CONFINE_ENV = "ORCHESTRATOR_SANDBOX_CONFINE"

_DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fsconfig",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "iopl",
    "ioperm",
)
_NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_PACKET", 17))


def apply_seccomp(network: bool) -> None:
    """Install the filter (default allow; the listed calls fail with EPERM)."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED_SYSCALLS:
        try:
            flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a system call on this architecture
    if not network:
        for family in _NETWORK_FAMILIES:
            flt.add_rule(seccomp.ERRNO(errno.EACCES), "socket", seccomp.Arg(0, seccomp.EQ, family))
    flt.load()


# Landlock (include/uapi/linux/landlock.h)
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_ABI1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2
_PR_SET_NO_NEW_PRIVS = 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _fs_rights(abi: int) -> int:
    rights = _FS_ALL_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def apply_landlock(
    abi: int, read: list[str], write: list[str], any_network: bool, ports: list[int]
) -> None:
    """Restrict this process: read/execute under ``read``, everything under ``write``.

    Unless ``any_network``, TCP connect and bind are denied except connect to ``ports``.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4 and not any_network:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = 24
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        read_rights = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        for paths, rights in ((read, read_rights), (write, handled)):
            for path in paths:
                _add_path(libc, ruleset, path, rights)
        if attr.handled_access_net:
            for port in ports:
                rule = _NetPort(_NET_CONNECT_TCP, port)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(rule), 0):
                    raise OSError(ctypes.get_errno(), f"landlock: cannot allow port {port}")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT, ruleset, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _add_path(libc: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent paths grant nothing
    try:
        if not os.path.isdir(path):
            rights &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
        rule = _PathBeneath(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
            raise OSError(ctypes.get_errno(), f"landlock: cannot add {path}")
    finally:
        os.close(fd)


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 2, 4, 8, 32, 4096
_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def seal_mounts(paths: list[str]) -> None:
    """Remount the writable mounts ``paths`` noexec (no library or program runs from them).

    Needs CAP_SYS_ADMIN, which bubblewrap leaves to the process for this only; the caller then
    drops every capability with :func:`drop_capabilities`.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _MS_REMOUNT | _MS_BIND | _MS_NOEXEC | _MS_NOSUID | _MS_NODEV
    for path in paths:
        if libc.mount(None, path.encode(), None, flags, None) != 0:
            raise OSError(ctypes.get_errno(), f"cannot remount {path} noexec")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Drop every capability (bounding, ambient, effective, permitted) and check none is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    status = open("/proc/self/status").read()
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        value = status.split(field + ":")[1].split()[0]
        if int(value, 16) != 0:
            raise OSError(errno.EPERM, f"capabilities left after dropping: {field} {value}")


def apply_rlimits(limits: dict[str, int]) -> None:
    """Lower the named limits (``RLIMIT_*`` names) to the given soft and hard value."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def confine_from_env() -> dict[str, Any]:
    """Apply what ``$ORCHESTRATOR_SANDBOX_CONFINE`` asks for; return the spec (empty if none)."""
    raw = os.environ.pop(CONFINE_ENV, "")
    if not raw:
        return {}
    spec: dict[str, Any] = json.loads(raw)
    if spec.get("seal"):
        seal_mounts(spec["seal"])
    if spec.get("drop_caps"):
        drop_capabilities()
    apply_rlimits(spec.get("rlimits", {}))
    landlock = spec.get("landlock")
    if landlock:
        apply_landlock(
            int(landlock["abi"]),
            landlock["read"],
            landlock["write"],
            spec.get("network") is True,
            landlock.get("ports", []),
        )
    if spec.get("seccomp"):
        apply_seccomp(bool(spec.get("network")))
    return spec
