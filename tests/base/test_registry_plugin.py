"""A real package, pip-installed into a throwaway folder, adds a part of every kind.

The package declares entry points for a backend kind (with its own card spec and a trivial
tool), a planner, a router policy, a scorer and an executor, plus two broken ones. It is
installed offline with ``pip install --target`` into a folder of ``tmp_path`` (the test venv's
site-packages are not touched) and used in a subprocess that has that folder on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "orchestrator-tinyplug"
version = "0.1"

[tool.setuptools]
py-modules = ["tinyplug"]

[project.entry-points."orchestrator.backends"]
shout = "tinyplug:ShoutBackend"
broken = "tinyplug_missing:Nothing"
python = "tinyplug:ShoutBackend"

[project.entry-points."orchestrator.planners"]
tiny = "tinyplug:TinyPlanner"

[project.entry-points."orchestrator.policies"]
tiny = "tinyplug:TinyPolicy"

[project.entry-points."orchestrator.scorers"]
tiny = "tinyplug:TinyScorer"

[project.entry-points."orchestrator.executors"]
tiny = "tinyplug:TinyExecutor"
"""

MODULE = '''\
"""A tiny plugin: a backend kind that shouts its text, and one part of every other kind."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.execution.inprocess import InProcessExecutor
from orchestrator.plan import Plan
from orchestrator.routing.policy import DefaultPolicy
from orchestrator.selection.rank import CapabilityScorer


class ShoutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["shout"]
    suffix: str = "!"


class ShoutBackend:
    spec = ShoutSpec

    def unavailable_reason(self, card):
        return None

    def load(self, card):
        suffix = card.backend.suffix
        return lambda inputs, ctx: {"summary": inputs["text"].upper() + suffix}


class TinyPlanner:
    name = "tiny"

    def plan(self, request, zoo, *, files=()):
        step = {"id": "s1", "task": "summarization", "instruction": "shout it",
                "args": {"text": {"kind": "text", "value": request}}}
        return Plan.model_validate({"request": request, "subtasks": [step], "planner": "tiny"})


@dataclass
class TinyPolicy(DefaultPolicy):
    name: str = "tiny"


class TinyScorer(CapabilityScorer):
    pass


class TinyExecutor(InProcessExecutor):
    calls = 0

    def call(self, card, inputs, ctx, limit=None):
        TinyExecutor.calls += 1
        return super().call(card, inputs, ctx, limit)
'''

CARD = """\
name: shouter
task: summarization
description: Shouts the text back in capitals (a plugin's backend kind).
inputs: [{name: text, type: text}]
outputs: [{name: summary, type: text}]
backend: {kind: shout, suffix: "!!"}
"""

PYTHON_CARD = """\
name: echo
task: summarization
description: Repeats the text it is given (a built-in backend kind).
inputs: [{name: text, type: text}]
outputs: [{name: summary, type: text}]
backend: {kind: python, entry: "os.path:basename"}
"""

SCRIPT = """\
import json, sys, warnings
from pathlib import Path

from orchestrator.cards import card_from_yaml
from orchestrator.cards.backend import BACKENDS, get_backend
from orchestrator.config import Config
from orchestrator.errors import CardError, PluginError
from orchestrator.execution import EXECUTORS
from orchestrator.pipeline.orchestrator import Orchestrator
from orchestrator.planning import PLANNERS
from orchestrator.routing.policy import POLICIES
from orchestrator.selection import SCORERS

folder = Path(sys.argv[1])
out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out["backends"] = BACKENDS.names()
out["warnings"] = [str(w.message) for w in caught]
out["names"] = {r.group: r.names() for r in (PLANNERS, POLICIES, SCORERS, EXECUTORS)}

card = card_from_yaml((folder / "cards" / "shouter.yaml").read_text())
out["spec"] = type(card.backend).__name__
out["python_card"] = type(card_from_yaml(sys.argv[2]).backend).__name__
out["python_backend"] = type(get_backend("python")).__name__


def defect(text):
    try:
        card_from_yaml(text)
    except CardError as exc:
        return str(exc)
    return None


shout = (folder / "cards" / "shouter.yaml").read_text()
out["misspelt"] = defect(shout.replace("suffix:", "sufix:"))
out["broken_card"] = defect(shout.replace("kind: shout", "kind: broken"))
try:
    get_backend("broken")
except PluginError as exc:
    out["broken"] = str(exc)

config = Config(
    runs_dir=folder / "runs", card_dirs=[folder / "cards"],
    planner="tiny", router="tiny", scorer="tiny", executor="tiny",
)
with Orchestrator(config, durable=False) as orch:
    result = orch.run("hello plugins")
    parts = (orch.planner, orch.policy, orch.scorer, orch.executor)
    out["parts"] = [type(p).__name__ for p in parts]
    out["executor_calls"] = type(orch.executor).calls
out["status"] = result.status
out["outputs"] = [step.outputs for step in result.steps]
out["cards"] = [step.card for step in result.steps]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the folder the package is installed in, a work folder with the card)."""
    root = tmp_path_factory.mktemp("tinyplug")
    source = root / "src"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "tinyplug.py").write_text(MODULE)
    target = root / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--target", str(target), str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    work = root / "work"
    (work / "cards").mkdir(parents=True)
    (work / "cards" / "shouter.yaml").write_text(CARD)
    return target, work


@pytest.fixture(scope="module")
def seen(plugin: tuple[Path, Path]) -> dict:
    """What the subprocess with the installed package on its path found and ran."""
    target, work = plugin
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ORCHESTRATOR_CONFIG", None)
    command = [sys.executable, "-c", SCRIPT, str(work), PYTHON_CARD]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_package_is_installed_outside_the_test_venv(plugin):
    target, _ = plugin
    assert (target / "tinyplug.py").is_file()
    assert list(target.glob("orchestrator_tinyplug-0.1.dist-info/entry_points.txt"))
    here = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('tinyplug'))"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert here.stdout.strip() == "None"


def test_every_kind_of_part_is_found_by_name(seen):
    assert {"shout", "broken", "python", "transformers"} <= set(seen["backends"])
    names = seen["names"]
    assert names["orchestrator.planners"] == ["embedded", "llm", "tiny"]
    assert names["orchestrator.policies"] == ["default", "learned", "llm", "tiny"]
    assert names["orchestrator.scorers"] == ["capability", "llm", "tiny"]
    assert names["orchestrator.executors"] == ["inprocess", "pool", "ray", "tiny"]


def test_a_card_of_the_new_kind_validates_against_its_own_spec(seen):
    assert seen["spec"] == "ShoutSpec"
    assert seen["misspelt"].endswith(
        "backend.sufix: unknown field; did you mean 'suffix'? Allowed: kind, suffix."
    )


def test_the_card_runs_through_the_orchestrator_with_the_plugins_parts(seen):
    assert seen["parts"] == ["TinyPlanner", "TinyPolicy", "TinyScorer", "TinyExecutor"]
    assert seen["status"] == "ok"
    assert seen["cards"] == ["shouter"]
    assert seen["outputs"] == [{"summary": "HELLO PLUGINS!!"}]
    assert seen["executor_calls"] == 1


def test_a_broken_entry_point_names_its_package_and_spares_the_built_ins(seen):
    assert "broken = tinyplug_missing:Nothing" in seen["broken"]
    assert "orchestrator-tinyplug" in seen["broken"]
    assert "ModuleNotFoundError" in seen["broken"] and "uninstall" in seen["broken"]
    assert "backend: entry point 'broken = tinyplug_missing:Nothing'" in seen["broken_card"]
    assert seen["python_card"] == "PythonBackend"


def test_an_entry_point_cannot_take_a_built_in_name(seen):
    assert seen["python_backend"] == "PythonEntryBackend"
    [warning] = seen["warnings"]
    assert "'python = tinyplug:ShoutBackend'" in warning and "orchestrator-tinyplug" in warning
    assert "already registered" in warning


def test_without_the_package_the_kind_is_unknown_and_the_fix_is_named():
    from orchestrator.cards import card_from_yaml
    from orchestrator.errors import CardError

    with pytest.raises(CardError) as caught:
        card_from_yaml(CARD)
    message = str(caught.value)
    kinds = "diffusers, hf-inference, mcp, openai, python"
    assert f"backend: unknown backend kind; use one of: {kinds}" in message
    assert "'orchestrator.backends' entry point group" in message


README = Path(__file__).resolve().parents[2] / "README.md"
README_CARD = CARD.replace(
    "outputs: [{name: summary, type: text}]", "outputs: [{name: text, type: text}]"
)
README_CHECK = """\
import sys
from pathlib import Path

from orchestrator.cards import load_card
from orchestrator.cards.backend import CallContext, load_tool

card = load_card(Path(sys.argv[1]))
print(type(card.backend).__name__)
print(load_tool(card)({"text": "hello"}, CallContext(scratch=Path(sys.argv[1]).parent))["text"])
"""


def _readme_block(marker: str) -> str:
    text = README.read_text()
    section = text.index("## Adding a backend from another package")
    start = text.index("```", text.index(marker, section))
    body = text[text.index("\n", start) + 1 :]
    return body[: body.index("```")]


def test_the_readme_example_package_installs_and_its_card_runs(tmp_path):
    source = tmp_path / "orchestrator-shout"
    source.mkdir()
    (source / "pyproject.toml").write_text(_readme_block("`pyproject.toml`:"))
    (source / "orchestrator_shout.py").write_text(_readme_block("`orchestrator_shout.py`:"))
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--target", str(target), str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "shouter.yaml").write_text(README_CARD)
    env = {**os.environ, "PYTHONPATH": str(target)}
    check = [sys.executable, "-c", README_CHECK, str(cards / "shouter.yaml")]
    done = subprocess.run(check, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ShoutSpec", "HELLO!!"]
    validate = [str(Path(sys.executable).parent / "orchestrator"), "cards", "validate", str(cards)]
    done = subprocess.run(validate, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
