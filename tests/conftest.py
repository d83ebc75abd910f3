"""Shared fixtures: the built-in zoo, one orchestrator with warm workers, demo inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# What makes a test heavy, so that ``pytest -m "not slow"`` is a fast inner loop (``make test``
# still runs everything). A module is slow as a whole when it drives tmux, Chromium or Ray, or
# runs real model weights throughout; any other test is slow when it uses a fixture that runs
# real models.
SLOW_MODULES = {
    "test_chat_terminal": "drives the terminal chat in tmux",
    "test_web_page": "drives the web page in Chromium",
    "test_execute_ray": "starts a Ray cluster",
    "test_tools": "runs the built-in tools' real models",
    "test_orchestrator": "runs requests on the real models",
    "test_embed": "embeds with the real MiniLM",
    "test_embed_tune": "fine-tunes the real MiniLM",
    "test_encoder_folder": "embeds with MiniLM and random encoders",
    "test_evals_selection": "embeds zoos with the real MiniLM",
    "test_backend_openai": "serves the real small chat LLM",
    "test_llm_server": "serves the real small chat LLM",
}
SLOW_FIXTURES = {
    "orchestrator": "runs the built-in zoo's real models",
    "demo_inputs": "speaks and renders with the real models",
    "llm_server": "serves the real small chat LLM",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        if module in SLOW_MODULES or SLOW_FIXTURES.keys() & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def builtin_zoo():
    from orchestrator.cards.zoo import Zoo

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
    from orchestrator.cli.demo import make_inputs

    folder = tmp_path_factory.mktemp("demo")
    make_inputs(orchestrator, folder)
    return folder


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """One real OpenAI-compatible server serving the small chat LLM card, for the session."""
    from _llm_server import CARD, start_llm_server, stop_llm_server

    from orchestrator.cards.backend import unavailable_reason
    from orchestrator.server.single_model import resolve_card

    reason = unavailable_reason(resolve_card(CARD))
    assert reason is None, f"{CARD} must be available here: {reason}"
    proc, base = start_llm_server(CARD, tmp_path_factory.mktemp("llm-server") / "server.log")
    try:
        yield base
    finally:
        stop_llm_server(proc)


def pytest_terminal_summary(terminalreporter):
    """Print the end-to-end suite's figure (tests/test_e2e_requests.py) when it ran."""
    import sys

    module = sys.modules.get("test_e2e_requests")
    line = module.summary() if module is not None else None
    if line:
        terminalreporter.write_line(line)
