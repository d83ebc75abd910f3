from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.config import Config
from orchestrator.errors import ConfigError


def test_toml_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "orchestrator.toml"
    path.write_text('card_dirs = ["a"]\nmax_workers = 3\n[budget]\nusd = "0.05"\ncalls = 7\n')
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(path))
    monkeypatch.setenv("ORCHESTRATOR_CARDS", f"b{__import__('os').pathsep}c")
    config = Config.load()
    assert config.card_dirs == [Path("a"), Path("b"), Path("c")]
    assert config.max_workers == 3
    budget = config.budget.to_budget()
    assert budget.usd == Decimal("0.05") and budget.calls == 7 and budget.seconds is None


def test_unknown_setting_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("planer = 'embedded'\n")
    with pytest.raises(ConfigError, match="bad.toml: planer"):
        Config.load(path)


def test_broken_toml_is_reported(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("card_dirs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "nope.toml")


def test_the_readme_example_config_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "orchestrator.toml"
    path.write_text(example)
    config = Config.load(path)
    assert config.planner == "auto" and config.llm.base_url == "http://127.0.0.1:8001/v1"
    assert config.budget.to_budget().calls == 20
