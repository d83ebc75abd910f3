"""What a tool may do beyond the sandbox's defaults: asked for by its card, granted by the user.

A card's ``permissions`` are requests; the configuration's ``[approve.NAME]`` holds the same
fields as what the user allows (:mod:`orchestrator.config`); the sandbox's policy grants what
is both asked for and approved (:mod:`orchestrator.execution.sandbox.policy`).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_ENV", "Permissions", "split_endpoint", "withheld_env"]

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


def withheld_env(name: str) -> bool:
    """Whether no tool may get this variable, approved or not.

    The orchestrator's own variables (its server key among them), beyond the non-secret ones
    of the allow-list.
    """
    return name.startswith("ORCHESTRATOR_") and name not in DEFAULT_ENV


def split_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8000`` for IPv6) as (host in lower case, port); ValueError if bad."""
    host, _, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"network endpoints are host:port, got {text!r}")
    literal = None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    if literal is not None and literal.version == 6 and not literal.is_loopback:
        raise ValueError(f"IPv6 endpoints other than [::1] are not supported, got {text!r}")
    return host.lower(), int(port)


class Permissions(BaseModel):
    """What a tool asks to do beyond the sandbox's defaults (no network, scratch read-write only).

    In a card these are requests: each must be approved by the user (the same fields under
    ``[approve.NAME]`` in the configuration) before the card runs. ``network``: ``true`` for any
    public address, or a list of ``host:port`` endpoints (``requires.network: true`` counts as
    ``true``; an openai card asks for its endpoint). ``read`` / ``write``: extra host paths the
    tool sees read-only / read-write (its own card folder is always readable). ``env``: names of
    environment variables passed to the tool (none of the parent's are, by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: bool | list[str] = False
    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)

    @field_validator("network")
    @classmethod
    def _endpoints(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            for endpoint in value:
                split_endpoint(endpoint)
        return value
