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
# real models. Each slow test also carries the marker of what makes it heavy (``-m "not
# browser"``, ``-m models`` ...), and every test under tests/execution/sandbox/ is ``sandbox``.
SLOW_MODULES = {  # module -> (marker, why)
    "test_chat_terminal": ("tmux", "drives the terminal chat in tmux"),
    "test_web_page": ("browser", "drives the web page in Chromium"),
    "test_web_controls": ("browser", "drives the web page's stop and new-chat buttons"),
    "test_execute_ray": ("ray", "starts a Ray cluster"),
    "test_tools": ("models", "runs the built-in tools' real models"),
    "test_orchestrator": ("models", "runs requests on the real models"),
    "test_embed": ("models", "embeds with the real MiniLM"),
    "test_embed_tune": ("models", "fine-tunes the real MiniLM"),
    "test_encoder_folder": ("models", "embeds with MiniLM and random encoders"),
    "test_evals_selection": ("models", "embeds zoos with the real MiniLM"),
    "test_backend_openai": ("llm", "serves the real small chat LLM"),
    "test_llm_server": ("llm", "serves the real small chat LLM"),
    "test_pg_store": ("postgres", "starts a PostgreSQL server"),
    "test_pg_servers": ("postgres", "starts a PostgreSQL server and two servers on it"),
}
SLOW_FIXTURES = {  # fixture -> (marker, why)
    "orchestrator": ("models", "runs the built-in zoo's real models"),
    "demo_inputs": ("models", "speaks and renders with the real models"),
    "llm_server": ("llm", "serves the real small chat LLM"),
}
SANDBOX_TESTS = Path(__file__).resolve().parent / "execution" / "sandbox"


def pytest_collection_modifyitems(config, items):
    for item in items:
        kinds = {SLOW_FIXTURES[f][0] for f in SLOW_FIXTURES.keys() & set(item.fixturenames)}
        if item.path.stem in SLOW_MODULES:
            kinds.add(SLOW_MODULES[item.path.stem][0])
        for kind in sorted(kinds):
            item.add_marker(getattr(pytest.mark, kind))
        if kinds:
            item.add_marker(pytest.mark.slow)
        if item.path.is_relative_to(SANDBOX_TESTS):
            item.add_marker(pytest.mark.sandbox)


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
    """Print the end-to-end suite's figure (tests/pipeline/test_e2e_requests.py) when it ran."""
    import sys

    module = sys.modules.get("test_e2e_requests")
    line = module.summary() if module is not None else None
    if line:
        terminalreporter.write_line(line)
