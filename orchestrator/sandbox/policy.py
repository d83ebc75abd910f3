"""What one sandboxed process may do: a :class:`Policy`, built from a card's permissions.

By default a tool has no network, writes only its own scratch folder, reads its model files, the
Python it runs on and nothing else, and sees none of the parent's environment variables beyond a
short allow-list. A card asks for more in its ``permissions`` section; an OpenAI-compatible card is
given network and its API-key variable without asking (it cannot work without them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from orchestrator.cards import ToolCard

__all__ = ["DEFAULT_ENV", "Policy", "policy_for_card"]

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
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
)


@dataclass(frozen=True)
class Policy:
    """Limits and permissions of one sandboxed process (a worker, or ``sandbox exec``).

    ``network``: False (none), True (any), or ``host:port`` endpoints (the namespace layer can
    only share the whole network; the Landlock layer restricts TCP to those ports).
    ``read`` / ``write``: extra host paths visible read-only / read-write.
    ``env``: names of extra environment variables passed through.
    ``memory_mb``: the memory cap (cgroup, or RLIMIT_AS without one); ``max_procs``: processes and
    threads (pids cgroup; RLIMIT_NPROC where not root); ``scratch_mb``: size of the private
    scratch and /tmp; ``file_mb``: the largest file it may write anywhere (RLIMIT_FSIZE; None:
    ``scratch_mb``), raised for a card whose ``requires.disk_mb`` says it writes more (a model
    cache made on first use); ``open_files``: RLIMIT_NOFILE; ``gpu``: the GPU devices are visible.
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


def policy_for_card(card: ToolCard, *, memory_mb: int | None = None) -> Policy:
    """The policy a card's worker runs under: defaults plus what the card asks for.

    Memory: ``memory_mb`` when given, else twice the card's declared ``cost.memory_mb`` plus
    1 GiB (declared figures are estimates; the cap is there to stop runaways, not to squeeze).
    """
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
    write = list(perms.write)
    if getattr(backend, "gguf_file", None):
        # The dequantized copy is written once, here. The folder must exist on the host to be
        # bound into the sandbox (else the writes would land in its small private tmpfs).
        cache = model_read_paths()[0]
        cache.mkdir(parents=True, exist_ok=True)
        write.append(str(cache))
    cap = memory_mb if memory_mb is not None else 2 * card.cost.memory_mb + 1024
    disk = card.requires.disk_mb
    return Policy(
        file_mb=disk if write and disk > Policy.scratch_mb else None,
        network=network,
        read=_expand(read),
        write=_expand(write),
        env=tuple(dict.fromkeys(env)),
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
