"""Configuration: a TOML file and environment variables, validated with pydantic.

Where it comes from, later winning:
1. defaults;
2. the TOML file named by ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.toml`` if present;
3. ``$ORCHESTRATOR_CARDS`` (folders of extra tool cards, separated by ``os.pathsep``),
   ``$ORCHESTRATOR_PLANNER``, ``$ORCHESTRATOR_RUNS_DIR``.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.budget import Budget
from orchestrator.errors import ConfigError

__all__ = ["BudgetConfig", "Config"]


class BudgetConfig(BaseModel):
    """Default budget limits of a run (each optional)."""

    model_config = ConfigDict(extra="forbid")

    usd: Decimal | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    calls: int | None = Field(default=None, ge=0)

    def to_budget(self) -> Budget:
        return Budget(usd=self.usd, seconds=self.seconds, tokens=self.tokens, calls=self.calls)


class Config(BaseModel):
    """Everything the orchestrator reads from configuration."""

    model_config = ConfigDict(extra="forbid")

    card_dirs: list[Path] = Field(default_factory=list, description="extra tool-card folders")
    planner: str = "embedded"
    runs_dir: Path = Path("runs")
    max_workers: int = Field(default=6, ge=1, description="warm worker processes kept at once")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

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
            raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
        return config.with_environment()

    def with_environment(self) -> Config:
        """This config with the environment variables applied."""
        update: dict[str, object] = {}
        cards = os.environ.get("ORCHESTRATOR_CARDS")
        if cards:
            update["card_dirs"] = self.card_dirs + [Path(p) for p in cards.split(os.pathsep) if p]
        if os.environ.get("ORCHESTRATOR_PLANNER"):
            update["planner"] = os.environ["ORCHESTRATOR_PLANNER"]
        if os.environ.get("ORCHESTRATOR_RUNS_DIR"):
            update["runs_dir"] = Path(os.environ["ORCHESTRATOR_RUNS_DIR"])
        return self.model_copy(update=update)


def _default_path() -> Path | None:
    named = os.environ.get("ORCHESTRATOR_CONFIG")
    if named:
        return Path(named)
    local = Path("orchestrator.toml")
    return local if local.is_file() else None
