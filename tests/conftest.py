"""Shared fixtures: the built-in zoo, one orchestrator with warm workers, demo inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def builtin_zoo():
    from orchestrator.zoo import Zoo

    return Zoo.load([])


@pytest.fixture(scope="session")
def orchestrator(builtin_zoo, tmp_path_factory):
    """One orchestrator for the session: its worker processes stay warm across tests."""
    from orchestrator import Config, Orchestrator

    config = Config(runs_dir=tmp_path_factory.mktemp("runs"))
    with Orchestrator(config, zoo=builtin_zoo) as orch:
        yield orch


@pytest.fixture(scope="session")
def demo_inputs(orchestrator, tmp_path_factory):
    """demo.wav (spoken by the TTS model) and demo.png (rendered text) in one folder."""
    from orchestrator.demo import make_inputs

    folder = tmp_path_factory.mktemp("demo")
    make_inputs(orchestrator, folder)
    return folder
