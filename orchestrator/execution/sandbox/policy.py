"""What one sandboxed process may do: a :class:`Policy`, from what a card asks and is approved.

By default a tool has no network, writes only its own scratch folder, reads its model files, the
Python it runs on and its own card folder, and sees none of the parent's environment variables
beyond a short allow-list (:data:`orchestrator.permissions.DEFAULT_ENV`). A card's worker gets
the defaults plus what the card asks for (:func:`orchestrator.cards.approvals.card_requests`),
which the user must have approved before it runs (:mod:`orchestrator.cards.approvals`). No tool
is ever given an ``ORCHESTRATOR_*`` variable beyond the allow-list (the server's API key among
them), approved or not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cards.approvals import card_requests
from orchestrator.config import cache_dir
from orchestrator.execution.sandbox.relay import Endpoint, parse_endpoint
from orchestrator.permissions import withheld_env

if TYPE_CHECKING:
    from orchestrator.cards import ToolCard

__all__ = ["Policy", "model_read_paths", "policy_for_card"]


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


def policy_for_card(card: ToolCard, *, memory_mb: int | None = None) -> Policy:
    """The policy a card's worker runs under: the defaults plus everything it asks for.

    Whether those requests are approved is checked before
    (:func:`orchestrator.cards.approvals.unapproved`). Memory:
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
    paths = [cache_dir() / "models"]
    hf_home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    paths.append(Path(os.environ.get("HF_HUB_CACHE") or Path(hf_home) / "hub").expanduser())
    return paths
