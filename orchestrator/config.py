"""Configuration: a TOML file and environment variables, validated with pydantic.

Where it comes from, later winning:
1. defaults;
2. the TOML file named by ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.toml`` if present;
3. ``$ORCHESTRATOR_CARDS`` (folders of extra tool cards, separated by ``os.pathsep``),
   ``$ORCHESTRATOR_PLANNER``, ``$ORCHESTRATOR_RUNS_DIR``, ``$ORCHESTRATOR_LLM_BASE_URL``,
   ``$ORCHESTRATOR_LLM_MODEL``.

Read where they are used, each through its function here: ``$ORCHESTRATOR_CACHE_DIR``
(:func:`cache_dir`), ``$ORCHESTRATOR_CHECKPOINTS`` (:func:`env_checkpoints`),
``$ORCHESTRATOR_STORE_URL`` (:func:`env_store_url`),
``$ORCHESTRATOR_ROUTER`` (:func:`env_router`), and the planner's and LLM endpoint's variables
again (:func:`env_planner`, :func:`env_llm_base_url`) where a caller is given no config.
Every ``ORCHESTRATOR_*`` variable the orchestrator reads as configuration is read in this module.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.budget import Budget
from orchestrator.errors import ConfigError
from orchestrator.permissions import Permissions

__all__ = [
    "BudgetConfig",
    "Config",
    "LlmConfig",
    "SandboxConfig",
    "ServerConfig",
    "StoreConfig",
    "TracingConfig",
    "cache_dir",
    "env_checkpoints",
    "env_llm_base_url",
    "env_planner",
    "env_otlp_endpoint",
    "env_router",
    "env_store_url",
    "openai_base_url",
    "otel_disabled",
]

# A card's permissions are requests; ``[approve.NAME]`` is what the user allows it, e.g.
#   [approve.my-card]
#   network = ["127.0.0.1:8001"]
#   env = ["MY_TOKEN"]
# or ``my-card = true`` under ``[approve]`` for everything it asks for.


class BudgetConfig(BaseModel):
    """Default budget limits of a run (each optional)."""

    model_config = ConfigDict(extra="forbid")

    usd: Decimal | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    calls: int | None = Field(default=None, ge=0)

    def to_budget(self) -> Budget:
        return Budget(usd=self.usd, seconds=self.seconds, tokens=self.tokens, calls=self.calls)


class SandboxConfig(BaseModel):
    """How tools are isolated (see ``orchestrator sandbox info``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    require_full_isolation: bool = Field(
        default=False, description="refuse to run tools without namespaces, seccomp and a cgroup"
    )
    memory_mb: int | None = Field(
        default=None, ge=256, description="memory cap of all warm workers together (LRU eviction)"
    )
    worker_memory_mb: int | None = Field(
        default=None, ge=256, description="memory cap of each worker (default: from its card)"
    )
    max_concurrency: int = Field(default=4, ge=1, description="tool calls running at once")
    worker_idle_s: float = Field(
        default=600.0, gt=0, allow_inf_nan=False, description="a warm worker idle this long stops"
    )


class LlmConfig(BaseModel):
    """The OpenAI-compatible endpoint the LLM planner calls (unset base_url: no LLM planner)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8000/v1")
    model: str = Field(default="smollm2-135m-chat", min_length=1)
    api_key_env: str = Field(default="OPENAI_API_KEY", description="variable holding the key")
    timeout_s: float = Field(default=120.0, gt=0)
    max_tokens: int = Field(default=400, ge=16)
    examples: int = Field(default=3, ge=0, description="worked examples shown per request")
    usd_per_call: Decimal = Field(default=Decimal(0), ge=0, description="price of one call")
    usd_per_1k_tokens: Decimal = Field(
        default=Decimal(0), ge=0, description="price per 1,000 tokens (prompt and answer)"
    )

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def api_key(self) -> str | None:
        """The endpoint's key: the variable ``api_key_env``, or None when it is not set."""
        return os.environ.get(self.api_key_env) or None


class ServerConfig(BaseModel):
    """The HTTP server of ``orchestrator serve`` (OpenAI-compatible API and web chat page)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    api_key: str | None = Field(
        default=None, description="required key; prefer api_key_env (keeps it out of the file)"
    )
    api_key_env: str = Field(default="ORCHESTRATOR_API_KEY", description="variable holding the key")
    max_upload_bytes: int = Field(default=20_000_000, ge=1_000, description="per attached file")
    max_concurrent_runs: int = Field(default=4, ge=1, description="runs executing at once")
    max_queued_runs: int = Field(default=256, ge=0, description="runs waiting; more get a 429")
    keep_files_hours: float = Field(
        default=24.0,
        gt=0,
        allow_inf_nan=False,
        description="uploads and the server's run folders are deleted this long after last written",
    )
    max_stored_mb: int = Field(
        default=2000, ge=1, description="above this total, the oldest stored files go first"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names clients reach this server by (beyond its address, localhost "
        "and this machine's name); other Host headers are refused; '*' turns the check off",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="a request body must arrive in this"
    )
    max_concurrent_bodies: int = Field(
        default=8, ge=1, description="request bodies read at once (half of them per client address)"
    )

    def key(self) -> str | None:
        """The API key clients must send: ``api_key``, else the variable ``api_key_env``."""
        return self.api_key or os.environ.get(self.api_key_env) or None

    def keys(self) -> list[str]:
        """Every accepted key (:meth:`key` may list several, comma-separated: one per client)."""
        return [k.strip() for k in (self.key() or "").split(",") if k.strip()]


class TracingConfig(BaseModel):
    """OpenTelemetry traces of runs (off unless turned on here or by an OTLP endpoint variable)."""

    model_config = ConfigDict(extra="forbid")

    otlp: bool = Field(
        default=False,
        description="export spans over OTLP/HTTP to the endpoint the standard "
        "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variable names (setting one turns this on)",
    )
    jsonl: Path | None = Field(default=None, description="also write each span to this file")

    @property
    def exports_otlp(self) -> bool:
        return (self.otlp or env_otlp_endpoint() is not None) and not otel_disabled()

    @property
    def enabled(self) -> bool:
        return self.exports_otlp or self.jsonl is not None and not otel_disabled()


class ModelsConfig(BaseModel):
    """Model weights: whether a run may download a chosen card's missing weights."""

    model_config = ConfigDict(extra="forbid")

    auto_pull: bool = Field(
        default=False,
        description="run, chat and serve download a chosen card's missing hub weights on first "
        "use (as orchestrator pull does); off: such a card stays unavailable",
    )


class StoreConfig(BaseModel):
    """Where runs are stored: SQLite (the default), or PostgreSQL that several servers share."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="postgresql://USER@HOST:PORT/DB: runs, spend and the server's file records "
        "live there (unset: the SQLite file of `checkpoints`); file contents stay in runs_dir",
    )


class Config(BaseModel):
    """Everything the orchestrator reads from configuration."""

    model_config = ConfigDict(extra="forbid")

    card_dirs: list[Path] = Field(default_factory=list, description="extra tool-card folders")
    planner: str = Field(default="auto", description="auto, embedded, llm, ...")
    runs_dir: Path = Path("runs")
    checkpoints: Path | None = Field(
        default=None, description="SQLite file of durable runs; default runs_dir/checkpoints.sqlite"
    )
    max_store_mb: float | None = Field(
        default=None,
        gt=0,
        description="size cap of the run store: the oldest runs are pruned when it is over",
    )
    router: str = Field(default="default", description="routing policy: default, llm, ...")
    scorer: str = Field(default="capability", description="selection scorer: capability, llm, ...")
    executor: str = Field(default="pool", description="where tools run: pool, inprocess, ray, ...")
    router_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the routing policy, e.g. cost_weight"
    )
    max_workers: int = Field(default=6, ge=1, description="warm worker processes kept at once")
    selection_encoder: Path | None = Field(
        default=None,
        description="encoder folder: tuned (cards tune-encoder) or a sentence-transformers model",
    )
    max_prompt_chars: int = Field(
        default=20_000,
        ge=1,
        description="longer requests are refused (attach long text as a .txt file)",
    )
    approve: dict[str, Permissions | bool] = Field(
        default_factory=dict,
        description="per card name, what it may do of what it asks (true: all of it)",
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """Read the config file (if any) and the environment."""
        path = path or _default_path()
        data: dict[str, object] = {}
        if path is not None:
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            hint = _unknown_key_hint(cls, first) if first["type"] == "extra_forbidden" else ""
            raise ConfigError(f"{path}: {where}: {first['msg']}{hint}") from exc
        if path is not None:
            config = config._relative_to(path.resolve().parent, data)
        return config.with_environment()

    def _relative_to(self, folder: Path, data: dict[str, object]) -> Config:
        """Relative paths the file sets are read from the file's folder, not the working one."""
        update: dict[str, object] = {}
        for key in _PATH_KEYS:
            value = getattr(self, key, None)
            if key in data and isinstance(value, Path) and not value.is_absolute():
                update[key] = folder / value
        if "card_dirs" in data:
            update["card_dirs"] = [p if p.is_absolute() else folder / p for p in self.card_dirs]
        jsonl = self.tracing.jsonl
        if jsonl is not None and not jsonl.is_absolute():
            update["tracing"] = self.tracing.model_copy(update={"jsonl": folder / jsonl})
        if "approve" in data:
            update["approve"] = {
                name: _paths_from(folder, grant) for name, grant in self.approve.items()
            }
        return self.model_copy(update=update)

    def with_card_dirs(self, folders: list[Path] | None) -> Config:
        """This config with the card folders ``folders`` read after its own (``--cards``)."""
        if not folders:
            return self
        return self.model_copy(update={"card_dirs": self.card_dirs + list(folders)})

    def with_approvals(self, names: list[str]) -> Config:
        """This config with everything the cards ``names`` ask for approved (``--approve``)."""
        if not names:
            return self
        return self.model_copy(update={"approve": {**self.approve, **dict.fromkeys(names, True)}})

    def with_environment(self) -> Config:
        """This config with the environment variables applied."""
        update: dict[str, object] = {}
        cards = os.environ.get("ORCHESTRATOR_CARDS")
        if cards:
            update["card_dirs"] = self.card_dirs + [Path(p) for p in cards.split(os.pathsep) if p]
        planner = env_planner()
        if planner:
            update["planner"] = planner
        if os.environ.get("ORCHESTRATOR_RUNS_DIR"):
            update["runs_dir"] = Path(os.environ["ORCHESTRATOR_RUNS_DIR"])
        llm = {
            key: value
            for key, value in (
                ("base_url", env_llm_base_url()),
                ("model", os.environ.get("ORCHESTRATOR_LLM_MODEL")),
            )
            if value
        }
        if llm:
            update["llm"] = self.llm.model_copy(update=llm)
        return self.model_copy(update=update)


_PATH_KEYS = ("runs_dir", "checkpoints", "selection_encoder")


def _env(name: str) -> str | None:
    """The variable ``name``; None when it is unset or empty."""
    return os.environ.get(name) or None


def cache_dir() -> Path:
    """Where the orchestrator keeps caches: ``$ORCHESTRATOR_CACHE_DIR`` or ~/.cache/orchestrator."""
    return Path(_env("ORCHESTRATOR_CACHE_DIR") or "~/.cache/orchestrator").expanduser()


def env_checkpoints() -> Path | None:
    """``$ORCHESTRATOR_CHECKPOINTS``: the run store, over the config's ``checkpoints``."""
    named = _env("ORCHESTRATOR_CHECKPOINTS")
    return Path(named) if named else None


def env_store_url() -> str | None:
    """``$ORCHESTRATOR_STORE_URL``: a PostgreSQL run store, over the config's ``[store] url``."""
    return _env("ORCHESTRATOR_STORE_URL")


def env_router() -> str | None:
    """``$ORCHESTRATOR_ROUTER``: the routing policy, over the config's ``router``."""
    return _env("ORCHESTRATOR_ROUTER")


def env_planner() -> str | None:
    """``$ORCHESTRATOR_PLANNER``: the planner, over the config's ``planner``."""
    return _env("ORCHESTRATOR_PLANNER")


def env_llm_base_url() -> str | None:
    """``$ORCHESTRATOR_LLM_BASE_URL``: the LLM endpoint, over the config's ``[llm] base_url``."""
    return _env("ORCHESTRATOR_LLM_BASE_URL")


OPENAI_API_URL = "https://api.openai.com/v1"


def openai_base_url(card_url: str | None = None) -> str:
    """Where an ``openai`` card talks: its ``base_url``, else ``$OPENAI_BASE_URL``, else OpenAI."""
    return card_url or _env("OPENAI_BASE_URL") or OPENAI_API_URL


def env_otlp_endpoint() -> str | None:
    """The standard ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``$OTEL_EXPORTER_OTLP_ENDPOINT``."""
    return _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")


def otel_disabled() -> bool:
    """The standard ``$OTEL_SDK_DISABLED=true`` turns every exporter off."""
    return (_env("OTEL_SDK_DISABLED") or "").strip().lower() == "true"


def _paths_from(folder: Path, grant: bool | Permissions) -> bool | Permissions:
    """An approval whose relative read/write paths are read from the config file's folder."""
    if isinstance(grant, bool):
        return grant

    def absolute(paths: list[str]) -> list[str]:
        return [p if p.startswith(("/", "~")) else str(folder / p) for p in paths]

    return grant.model_copy(update={"read": absolute(grant.read), "write": absolute(grant.write)})


def _unknown_key_hint(model: type[BaseModel], error: Any) -> str:
    """' (did you mean ...?; allowed: ...)' for an unknown key at ``error['loc']``."""
    for part in error["loc"][:-1]:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return ""
        model = inner
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f" ({guess}allowed: {', '.join(allowed)})"


def _default_path() -> Path | None:
    named = os.environ.get("ORCHESTRATOR_CONFIG")
    if named:
        return Path(named)
    local = Path("orchestrator.toml")
    return local if local.is_file() else None
