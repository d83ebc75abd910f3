"""The in-process layers, applied by the sandboxed process to itself before any tool code exists.

:mod:`orchestrator.execution.sandbox.boot` calls :func:`confine_from_env` first thing, before a
card's folder is importable. The parent describes what to apply in ``$ORCHESTRATOR_SANDBOX_CONFINE``
(JSON). Every layer is inherited by every child and cannot be lifted. This module imports only
the standard library and pyseccomp: the bootstrap loads it by its path, before anything else.

In order:

1. mounts (namespaces): the writable tmpfs (/io, /tmp, /dev/shm) are remounted noexec; binds of
   host folders a tool may use (its card's folder, approved paths, model caches) are re-mounted
   id-mapped, so that the unprivileged uid sees root's files there as its own (no host
   permission is changed; files it writes are root's on the host); loopback aliases are added
   for approved IPv4 endpoints;
2. privileges: the bounding set and every capability are dropped; a process started as the host's
   root becomes ``user.uid`` (unprivileged; with ``fs_root`` only its file-system uid stays 0, for
   the Landlock layer: see docs/DECISIONS.md), with no supplementary groups and no_new_privs;
3. Landlock (when namespaces are off): the file system is read-only except the scratch and the
   approved writable paths, unreadable outside the listed paths, TCP goes only to the allowed
   ports (ABI 4+); signals and abstract sockets stay inside (ABI 6+);
4. seccomp: system calls that leave or inspect the box fail - ptrace and cross-process memory,
   mount and namespace calls (``clone`` with namespace flags too; ``clone3``, whose flags the
   filter cannot read, answers ENOSYS so the C library falls back to ``clone``), the new mount
   API and io_uring (ENOSYS), kernel keyrings, bpf, perf, modules, reboot, swap; set-user-id and
   set-group-id file modes; sockets of the network families without network permission, and
   unix sockets where host sockets are reachable by path (Landlock mode).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import socket
import struct
from typing import Any

__all__ = [
    "CONFINE_ENV",
    "add_loopback_addresses",
    "apply_landlock",
    "apply_rlimits",
    "apply_seccomp",
    "confine_from_env",
    "drop_privileges",
    "idmap_binds",
    "open_listeners",
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
    "name_to_handle_at",
    "open_by_handle_at",
)
# Answered "not implemented": callers fall back (glibc from clone3 to clone, io_uring users to
# epoll), and the arguments of these calls (structs) cannot be inspected by the filter.
_UNSUPPORTED_SYSCALLS = (
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "openat2",
)
_CLONE_NAMESPACES = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_SET_ID_BITS = (0o4000, 0o2000)  # S_ISUID, S_ISGID
# The argument holding the file mode, per call that sets one.
_MODE_ARGUMENT = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "mkdir": 1,
    "mkdirat": 2,
    "open": 2,
    "openat": 3,
    "creat": 1,
    "mknod": 1,
    "mknodat": 2,
}
_NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_AF_PACKET = getattr(socket, "AF_PACKET", 17)


def _rule(flt: Any, action: int, name: str, *args: Any) -> None:
    try:
        flt.add_rule(action, name, *args)
    except (RuntimeError, ValueError, OSError):
        pass  # not a system call on this architecture


def apply_seccomp(network: bool, unix_sockets: bool = True) -> None:
    """Install the filter (default allow; the listed calls fail)."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED_SYSCALLS:
        _rule(flt, seccomp.ERRNO(errno.EPERM), name)
    for name in _UNSUPPORTED_SYSCALLS:
        _rule(flt, seccomp.ERRNO(errno.ENOSYS), name)
    for flag in _CLONE_NAMESPACES:
        has_flag = seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag)
        _rule(flt, seccomp.ERRNO(errno.EPERM), "clone", has_flag)
    for name, index in _MODE_ARGUMENT.items():
        for bit in _SET_ID_BITS:
            has_bit = seccomp.Arg(index, seccomp.MASKED_EQ, bit, bit)
            _rule(flt, seccomp.ERRNO(errno.EPERM), name, has_bit)
    denied = [_AF_PACKET] + ([] if network else list(_NETWORK_FAMILIES))
    if not unix_sockets:
        denied.append(socket.AF_UNIX)  # socketpair() still works: it is another call
    for family in denied:
        _rule(flt, seccomp.ERRNO(errno.EACCES), "socket", seccomp.Arg(0, seccomp.EQ, family))
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


def seal_mounts(paths: list[str]) -> None:
    """Remount the writable mounts ``paths`` noexec (no library or program runs from them).

    Needs CAP_SYS_ADMIN, which bubblewrap leaves to the process for its set-up only.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _MS_REMOUNT | _MS_BIND | _MS_NOEXEC | _MS_NOSUID | _MS_NODEV
    for path in paths:
        if libc.mount(None, path.encode(), None, flags, None) != 0:
            raise OSError(ctypes.get_errno(), f"cannot remount {path} noexec")


# The mount API (include/uapi/linux/mount.h); these numbers are the same on every architecture.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _AT_EMPTY_PATH, _MOVE_MOUNT_F_EMPTY_PATH = 1, 0x1000, 0x4
_ATTR_RDONLY, _ATTR_NOSUID, _ATTR_NODEV, _ATTR_IDMAP = 0x1, 0x2, 0x4, 0x100000
_CLONE_NEWUSER = 0x10000000
_AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _mapping_namespace(libc: Any, uid: int, gid: int) -> int:
    """A user namespace whose root is ``uid``/``gid`` outside (an fd; its process is gone)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only holds the namespace open
        code = 0 if libc.unshare(_CLONE_NEWUSER) == 0 else 1
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        os._exit(code)
    try:
        os.read(ready_r, 1)
        for name, outside in (("uid_map", uid), ("gid_map", gid)):
            with open(f"/proc/{pid}/{name}", "w") as handle:
                handle.write(f"0 {outside} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


def idmap_binds(binds: list[tuple[str, bool]], uid: int, gid: int) -> list[str]:
    """Mount each bound folder again, id-mapped: root's files there are ``uid``'s inside.

    ``binds``: (path, read-only). Needs CAP_SYS_ADMIN and CAP_SETUID/CAP_SETGID in the initial
    user namespace. A folder whose file system cannot be id-mapped keeps its plain bind (host
    permissions apply); its path is returned.
    """
    if not binds:
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    userns = _mapping_namespace(libc, uid, gid)
    kept = []
    try:
        for path, readonly in binds:
            if not _idmap_one(libc, path, readonly, userns):
                kept.append(path)
    finally:
        os.close(userns)
    return kept


def _idmap_one(libc: Any, path: str, readonly: bool, userns: int) -> bool:
    tree = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(), _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        return False
    try:
        flags = _ATTR_IDMAP | _ATTR_NOSUID | _ATTR_NODEV | (_ATTR_RDONLY if readonly else 0)
        attr = _MountAttr(flags, 0, 0, userns)
        size = ctypes.sizeof(attr)
        if libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, ctypes.byref(attr), size):
            return False
        moved = libc.syscall(
            _SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, path.encode(), _MOVE_MOUNT_F_EMPTY_PATH
        )
        if moved != 0:
            raise OSError(ctypes.get_errno(), f"cannot mount {path} id-mapped")
        return True
    finally:
        os.close(tree)


_SIOCSIFADDR, _SIOCSIFNETMASK = 0x8916, 0x891C


def add_loopback_addresses(addresses: list[str]) -> None:
    """Give the (private) loopback device these IPv4 addresses, so tools can reach them there.

    Needs CAP_NET_ADMIN in the sandbox's own network namespace.
    """
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, address in enumerate(addresses):
            name = f"lo:{index + 1}".encode()
            for request, value in ((_SIOCSIFADDR, address), (_SIOCSIFNETMASK, "255.255.255.255")):
                packed = socket.inet_aton(value)
                ifreq = struct.pack("16sH2s4s8x", name, socket.AF_INET, b"\0\0", packed)
                fcntl.ioctl(sock.fileno(), request, ifreq)


def open_listeners(forward: dict[str, Any]) -> list[int]:
    """Listening sockets for the relay's sandbox half; their file descriptors.

    One at each endpoint's address and port, then the proxy's (see
    :mod:`orchestrator.execution.sandbox.relay`).
    """
    addresses = [(str(host), int(port)) for host, port, _ in forward["listen"]]
    if forward.get("proxy"):
        addresses.append(("127.0.0.1", int(forward["proxy"])))
    fds = []
    for host, port in addresses:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        fds.append(sock.detach())
    return fds


_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_PR_SET_SECUREBITS, _SECBIT_KEEP_CAPS = 28, 1 << 4
_CAP_SETGID, _CAP_SETUID, _CAP_SETPCAP = 6, 7, 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset(libc: Any, caps: int) -> None:
    """Set the effective and permitted sets to ``caps`` (a bit mask), inheritable to none."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in (0, 1):
        bits = (caps >> (32 * word)) & 0xFFFFFFFF
        data[word].effective = data[word].permitted = bits
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _prctl(libc: Any, *args: int) -> None:
    if libc.prctl(*args, *([0] * (5 - len(args)))) != 0:
        raise OSError(ctypes.get_errno(), f"prctl{args} failed")


def drop_privileges(uid: int | None = None, gid: int | None = None, fs_root: bool = False) -> None:
    """Drop every capability (bounding, ambient, effective, permitted) and check none is left.

    With ``uid``/``gid`` (a process started as root): become that user, with no supplementary
    groups. ``fs_root`` keeps file-system uid 0 only (Landlock decides which files it reaches).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    # Without CAP_SETPCAP (an unprivileged start) the bounding set stays; no_new_privs then
    # keeps any program from gaining a capability it lists.
    bounding = _has_capability(_CAP_SETPCAP)
    keep = uid is not None and fs_root
    if keep:
        _prctl(libc, _PR_SET_SECUREBITS, _SECBIT_KEEP_CAPS)
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if uid is not None:
        group = uid if gid is None else gid
        os.setgroups([])
        os.setresgid(group, group, group)
        os.setresuid(uid, uid, uid)
        if keep:
            _capset(libc, (1 << _CAP_SETUID) | (1 << _CAP_SETPCAP))
            libc.setfsuid(0)
            _prctl(libc, _PR_SET_SECUREBITS, 0)
    _capset(libc, 0)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    _check_dropped(uid, fs_root, bounding)


def _status_field(name: str) -> list[str]:
    with open("/proc/self/status") as handle:
        status = handle.read()
    return status.split(name + ":")[1].split("\n")[0].split()


def _has_capability(cap: int) -> bool:
    return bool(int(_status_field("CapEff")[0], 16) & (1 << cap))


def _check_dropped(uid: int | None, fs_root: bool, bounding: bool) -> None:
    field = _status_field
    names = ["CapInh", "CapPrm", "CapEff", "CapAmb"] + (["CapBnd"] if bounding else [])
    for name in names:
        if int(field(name)[0], 16) != 0:
            raise OSError(errno.EPERM, f"capabilities left after dropping: {name} {field(name)}")
    if uid is None:
        return
    expected = [str(uid)] * 3 + ["0" if fs_root else str(uid)]
    if field("Uid") != expected:
        raise OSError(errno.EPERM, f"uids are {field('Uid')} after dropping, not {expected}")


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
    user = spec.get("user") or {}
    if spec.get("idmap") and user:
        binds = [(str(p), bool(ro)) for p, ro in spec["idmap"]]
        spec["not_idmapped"] = idmap_binds(binds, int(user["uid"]), int(user["gid"]))
    if spec.get("loopback"):
        add_loopback_addresses(spec["loopback"])
    if spec.get("forward"):
        spec["forward"]["fds"] = open_listeners(spec["forward"])
    if spec.get("drop_caps"):
        drop_privileges(user.get("uid"), user.get("gid"), bool(user.get("fs_root")))
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
        apply_seccomp(bool(spec.get("network")), bool(spec.get("unix_sockets", True)))
    return spec
