"""What one sandboxed process may do: a :class:`Policy`, from what a card asks and is approved.

By default a tool has no network, writes only its own scratch folder, reads its model files, the
Python it runs on and its own card folder, and sees none of the parent's environment variables
beyond a short allow-list. A card asks for more (:func:`card_requests`: its ``permissions``
section, and what its backend needs - an OpenAI-compatible card's endpoint and API-key variable, a
local model folder); each request must be approved by the user (``[approve.NAME]`` in the
configuration, or ``--approve NAME``) or the card does not run (:func:`unapproved`). The cards
that ship with the project are approved as they are. No tool is ever given an
``ORCHESTRATOR_*`` variable beyond the allow-list (the server's API key among them), approved or
not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.execution.sandbox.relay import Endpoint, parse_endpoint

if TYPE_CHECKING:
    from orchestrator.cards import ToolCard
    from orchestrator.permissions import Permissions

__all__ = [
    "DEFAULT_ENV",
    "Approvals",
    "Policy",
    "Requests",
    "card_requests",
    "policy_for_card",
    "unapproved",
    "withheld_env",
]

_OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

# Environment variables a sandboxed process inherits from its parent (values are not secrets).
DEFAULT_ENV: tuple[str, ...] = (
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "ORCHESTRATOR_CACHE_DIR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "CUDA_VISIBLE_DEVICES",
)


@dataclass(frozen=True)
class Policy:
    """Limits and permissions of one sandboxed process (a worker, or ``sandbox exec``).

    ``network``: False (none), True (any public address, through an HTTPS proxy), or
    ``host:port`` endpoints (under namespaces the tool reaches exactly those, see
    :mod:`orchestrator.execution.sandbox.relay`; the Landlock layer can only restrict TCP to their
    ports). ``read`` / ``write``: extra host paths visible read-only / read-write.
    ``env``: names of extra environment variables passed through.
    ``memory_mb``: the memory cap (cgroup, or RLIMIT_AS without one); ``max_procs``: processes and
    threads (pids cgroup; RLIMIT_NPROC where not root); ``scratch_mb``: size of the private
    scratch and /tmp; ``file_mb``: the largest file it may write anywhere (RLIMIT_FSIZE; None:
    ``scratch_mb``), raised for a card whose ``requires.disk_mb`` says it writes more (a model
    cache made on first use); ``open_files``: RLIMIT_NOFILE; ``gpu``: the GPU devices are visible;
    ``shm_mb``: size of the private /dev/shm.
    """

    network: bool | tuple[str, ...] = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    memory_mb: int = 2048
    max_procs: int = 256
    scratch_mb: int = 512
    file_mb: int | None = None
    open_files: int = 1024
    gpu: bool = False
    shm_mb: int = 64
    label: str = "sandbox"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def wants_network(self) -> bool:
        return bool(self.network)

    def network_ports(self) -> tuple[int, ...]:
        """TCP ports of the allowed endpoints (empty when the network is all or nothing)."""
        if isinstance(self.network, bool):
            return ()
        ports = []
        for endpoint in self.network:
            _, _, port = endpoint.rpartition(":")
            if port.isdigit():
                ports.append(int(port))
        return tuple(sorted(set(ports)))

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The approved endpoints, parsed (empty when the network is all or nothing)."""
        if isinstance(self.network, bool):
            return ()
        return tuple(parse_endpoint(text) for text in self.network)

    def loopback_addresses(self) -> list[str]:
        """IPv4 endpoints outside 127/8: the sandbox's own loopback device carries them."""
        return sorted(
            {
                str(e.literal)
                for e in self.endpoints()
                if e.literal is not None and e.literal.version == 4 and not e.literal.is_loopback
            }
        )

    def with_limits(self, **changes: object) -> Policy:
        """A copy with some fields changed (e.g. ``memory_mb``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _endpoint(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _expand(paths: list[str]) -> tuple[str, ...]:
    return tuple(os.path.abspath(os.path.expanduser(p)) for p in paths)


@dataclass(frozen=True)
class Requests:
    """What a card asks for beyond the defaults: its ``permissions`` and what its backend needs."""

    network: bool | tuple[str, ...] = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """One phrase per request, e.g. ``network api.openai.com:443``."""
        parts = []
        if self.network is True:
            parts.append("network (any public address)")
        elif self.network:
            parts.append("network " + ", ".join(self.network))
        for word, values in (("read", self.read), ("write", self.write), ("env", self.env)):
            if values:
                parts.append(f"{word} {', '.join(values)}")
        return parts


def card_requests(card: ToolCard) -> Requests:
    """What ``card`` asks for; paths inside its own folder are its own (no request)."""
    perms = card.permissions
    network: bool | tuple[str, ...] = (
        perms.network if isinstance(perms.network, bool) else tuple(perms.network)
    )
    env = list(perms.env)
    backend = card.backend
    if backend.kind == "openai":
        env += [backend.api_key_env, "OPENAI_BASE_URL"]
        if not network:
            url = backend.base_url or os.environ.get("OPENAI_BASE_URL") or _OPENAI_DEFAULT_URL
            endpoint = _endpoint(url)
            network = (endpoint,) if endpoint else True
    if card.requires.network and not network:
        network = True
    read = list(perms.read)
    model = getattr(backend, "model", None)
    if isinstance(model, str) and model.startswith(("/", "~", ".")):
        read.append(model)  # a local model folder or file
    own = card.folder
    return Requests(
        network=network,
        read=tuple(p for p in _expand(read) if not _inside(p, own)),
        write=_expand(list(perms.write)),
        env=tuple(dict.fromkeys(env)),
    )


def _inside(path: str, folder: Path | None) -> bool:
    return folder is not None and Path(path).is_relative_to(folder)


def withheld_env(name: str) -> bool:
    """Whether no tool may get this variable, approved or not.

    The orchestrator's own variables (its server key among them), beyond the non-secret ones
    of the allow-list.
    """
    return name.startswith("ORCHESTRATOR_") and name not in DEFAULT_ENV


def unapproved(
    requests: Requests,
    approval: Permissions | bool | None,
    *,
    withheld: frozenset[str] = frozenset(),
) -> list[str]:
    """The requests ``approval`` does not cover (``True`` covers all), one phrase each.

    Variables a tool never gets (:func:`withheld_env`, or named in ``withheld``) come first.
    """
    refused = [
        f"env {name} (never given to a tool)"
        for name in requests.env
        if withheld_env(name) or name in withheld
    ]
    if approval is True:
        return refused
    network, read, write, env = _granted(approval)
    missing = []
    if requests.network is True and network is not True:
        missing.append("network (any public address)")
    elif isinstance(requests.network, tuple) and network is not True:
        missing += [f"network {e}" for e in requests.network if e not in network]
    missing += [f"read {p}" for p in requests.read if not _covered(p, read + write)]
    missing += [f"write {p}" for p in requests.write if not _covered(p, write)]
    missing += [f"env {n}" for n in requests.env if n not in env and not withheld_env(n)]
    return refused + [m for m in missing if m not in refused]


def _granted(
    approval: Permissions | bool | None,
) -> tuple[bool | tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    if approval is None or approval is False:
        return (), (), (), ()
    network = approval.network if isinstance(approval.network, bool) else tuple(approval.network)
    return (
        network if network is True else tuple(network or ()),
        _expand(list(approval.read)),
        _expand(list(approval.write)),
        tuple(approval.env),
    )


def _covered(path: str, folders: tuple[str, ...]) -> bool:
    return any(Path(path).is_relative_to(folder) for folder in folders)


@dataclass(frozen=True)
class Approvals:
    """What the user approved per card (``[approve.NAME]`` in the configuration, ``--approve``).

    ``cards``: card name -> the permissions approved (``True``: everything it asks for).
    ``withheld``: variable names never given to a tool (the server's API-key variable);
    ``withheld_values``: values never given under any name (the server's key itself).
    """

    cards: Mapping[str, Permissions | bool] = field(default_factory=dict)
    withheld: frozenset[str] = frozenset()
    withheld_values: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Any) -> Approvals:
        """The approvals of an orchestrator ``Config`` (and its server key, withheld)."""
        key = config.server.key()
        return cls(
            dict(config.approve),
            frozenset({config.server.api_key_env}),
            frozenset({key} if key else ()),
        )

    def for_card(self, card: ToolCard) -> Permissions | bool | None:
        """What is approved for ``card``: everything for a built-in card."""
        return True if card.builtin else self.cards.get(card.name)

    def problem(self, card: ToolCard) -> str | None:
        """Why ``card`` may not run as it asks (one sentence), or None."""
        missing = unapproved(card_requests(card), self.for_card(card), withheld=self.withheld)
        if not missing:
            return None
        never = [m for m in missing if m.endswith("(never given to a tool)")]
        if never:
            return f"asks for what no tool is given: {', '.join(never)}"
        return (
            f"asks for what the user has not approved: {', '.join(missing)}; approve it under "
            f"[approve.{card.name}] in orchestrator.toml, or with --approve {card.name}"
        )

    def env_allowed(self, name: str, value: str) -> bool:
        """Whether a variable may reach a tool at all (its name and value are not withheld)."""
        return not (withheld_env(name) or name in self.withheld or value in self.withheld_values)


def policy_for_card(card: ToolCard, *, memory_mb: int | None = None) -> Policy:
    """The policy a card's worker runs under: the defaults plus everything it asks for.

    Whether those requests are approved is checked before (:func:`unapproved`). Memory:
    ``memory_mb`` when given, else twice the card's declared ``cost.memory_mb`` plus 1 GiB
    (declared figures are estimates; the cap is there to stop runaways, not to squeeze).
    """
    requests = card_requests(card)
    write = list(requests.write)
    if getattr(card.backend, "gguf_file", None):
        # The dequantized copy is written once, here. The folder must exist on the host to be
        # bound into the sandbox (else the writes would land in its small private tmpfs).
        cache = model_read_paths()[0]
        cache.mkdir(parents=True, exist_ok=True)
        write.append(str(cache))
    cap = memory_mb if memory_mb is not None else 2 * card.cost.memory_mb + 1024
    disk = card.requires.disk_mb
    return Policy(
        file_mb=disk if write and disk > Policy.scratch_mb else None,
        network=requests.network,
        read=requests.read,
        write=tuple(write),
        env=tuple(n for n in requests.env if not withheld_env(n)),
        memory_mb=cap,
        gpu=card.requires.gpu,
        label=card.name,
    )


def model_read_paths() -> list[Path]:
    """Model caches a worker reads: the orchestrator's model cache and the Hugging Face hub."""
    root = os.environ.get("ORCHESTRATOR_CACHE_DIR") or "~/.cache/orchestrator"
    paths = [Path(root).expanduser() / "models"]
    hf_home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    paths.append(Path(os.environ.get("HF_HUB_CACHE") or Path(hf_home) / "hub").expanduser())
    return paths
