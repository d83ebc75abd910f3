from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.config import Config, cache_dir, env_checkpoints, env_router
from orchestrator.errors import ConfigError


def test_toml_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "orchestrator.toml"
    path.write_text('card_dirs = ["a"]\nmax_workers = 3\n[budget]\nusd = "0.05"\ncalls = 7\n')
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(path))
    monkeypatch.setenv("ORCHESTRATOR_CARDS", f"b{__import__('os').pathsep}c")
    config = Config.load()
    # Relative folders in the file are read from the file's folder; the environment's as given.
    assert config.card_dirs == [tmp_path / "a", Path("b"), Path("c")]
    assert config.max_workers == 3
    budget = config.budget.to_budget()
    assert budget.usd == Decimal("0.05") and budget.calls == 7 and budget.seconds is None


def test_unknown_setting_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("planer = 'embedded'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: planer.*did you mean 'planner'\?"):
        Config.load(path)
    path.write_text("[budget]\nusdd = '1'\n")
    with pytest.raises(ConfigError, match=r"budget.usdd.*allowed: calls, seconds, tokens, usd"):
        Config.load(path)


def test_relative_paths_in_a_config_file_are_read_from_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "orchestrator.toml").write_text('runs_dir = "out"\ncard_dirs = ["/abs", "mine"]\n')
    monkeypatch.chdir(tmp_path)
    config = Config.load(folder / "orchestrator.toml")
    assert config.runs_dir == folder.resolve() / "out"
    assert config.card_dirs == [Path("/abs"), folder.resolve() / "mine"]
    (folder / "orchestrator.toml").write_text("max_workers = 2\n")
    assert Config.load(folder / "orchestrator.toml").runs_dir == Path("runs")  # the default


def test_broken_toml_is_reported(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("card_dirs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "nope.toml")


def test_the_readme_example_config_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "orchestrator.toml"
    path.write_text(example)
    config = Config.load(path)
    assert config.planner == "auto" and config.llm.base_url == "http://127.0.0.1:8001/v1"
    assert config.budget.to_budget().calls == 20


def test_approvals_are_read_from_the_file_with_paths_from_its_folder(tmp_path):
    from orchestrator.permissions import Permissions

    path = tmp_path / "orchestrator.toml"
    path.write_text(
        '[approve]\nall-of-it = true\n\n[approve.some-of-it]\nnetwork = ["127.0.0.1:8001"]\n'
        'read = ["data", "/abs/data"]\nenv = ["MY_TOKEN"]\n'
    )
    config = Config.load(path)
    assert config.approve["all-of-it"] is True
    assert config.approve["some-of-it"] == Permissions(
        network=["127.0.0.1:8001"], read=[str(tmp_path / "data"), "/abs/data"], env=["MY_TOKEN"]
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[approve.x]\nnetwork = ["no-port"]\n')
    with pytest.raises(ConfigError, match="approve.x.*host:port"):
        Config.load(bad)
    assert Config().with_approvals(["a", "b"]).approve == {"a": True, "b": True}


def test_variables_read_where_used_come_from_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", "")
    assert cache_dir() == tmp_path / ".cache" / "orchestrator"  # empty: the default
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", "~/caches")
    assert cache_dir() == tmp_path / "caches"
    monkeypatch.delenv("ORCHESTRATOR_CHECKPOINTS", raising=False)
    monkeypatch.setenv("ORCHESTRATOR_ROUTER", "")
    assert env_checkpoints() is None and env_router() is None
    monkeypatch.setenv("ORCHESTRATOR_CHECKPOINTS", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("ORCHESTRATOR_ROUTER", "llm")
    assert env_checkpoints() == tmp_path / "runs.sqlite" and env_router() == "llm"
