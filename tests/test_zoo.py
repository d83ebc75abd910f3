"""The zoo: card folders whose Python modules clash, read permissions that point nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends import CallContext
from orchestrator.errors import CardError
from orchestrator.execute import WorkerPoolExecutor
from orchestrator.zoo import Zoo, card_code_dirs, code_clashes, validate_paths

CARD = """\
name: {name}
task: summarization
description: A test summarizer that says which folder its code came from.
inputs: [{{name: text, type: text}}]
outputs: [{{name: summary, type: text}}]
backend: {{kind: python, entry: "{module}:load"}}
cost: {{latency_s: 0.01, load_s: 0.1, memory_mb: 64}}
{extra}"""

TOOL = """
def load(options):
    return lambda inputs, ctx: {{"summary": "code from {folder}"}}
"""


def card_folder(root: Path, folder: str, name: str, module: str = "tool", extra: str = "") -> Path:
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{module}.py").write_text(TOOL.format(folder=folder))
    (path / "card.yaml").write_text(CARD.format(name=name, module=module, extra=extra))
    return path


def test_same_module_name_in_two_card_folders_is_refused(tmp_path):
    c1 = card_folder(tmp_path, "c1", "sum-c1")
    c2 = card_folder(tmp_path, "c2", "sum-c2")
    with pytest.raises(CardError) as info:
        Zoo.load([c1, c2])
    message = str(info.value)
    assert "module 'tool' is in both" in message
    assert str(c1.resolve()) in message and str(c2.resolve()) in message
    assert "Rename one" in message
    assert [str(d) for d in validate_paths([c1, c2])] == [str(d) for d in info.value.defects]


def test_a_package_folder_clashes_like_a_module(tmp_path):
    c1 = card_folder(tmp_path, "c1", "sum-c1", module="helpers")
    c2 = card_folder(tmp_path, "c2", "sum-c2", module="other")
    (c2 / "helpers").mkdir()
    (c2 / "helpers" / "__init__.py").write_text("")
    assert ["module 'helpers' is in both" in d.message for d in code_clashes([c1, c2])] == [True]


def test_a_module_named_like_a_standard_module_is_refused(tmp_path):
    folder = card_folder(tmp_path, "c1", "sum-c1", module="json")
    defects = code_clashes([folder])
    assert len(defects) == 1 and "module 'json'" in defects[0].message
    assert defects[0].path == (folder / "json.py").resolve()


def test_distinct_modules_each_run_their_own_folder_code(tmp_path):
    c1 = card_folder(tmp_path, "c1", "sum-c1", module="tool_one")
    c2 = card_folder(tmp_path, "c2", "sum-c2", module="tool_two")
    zoo = Zoo.load([c1, c2, c1])  # a folder named twice is read once
    with WorkerPoolExecutor(extra_sys_path=card_code_dirs([c1, c2])) as executor:
        for name, folder in (("sum-c1", "c1"), ("sum-c2", "c2")):
            ctx = CallContext(scratch=tmp_path / "scratch")
            outcome = executor.call(zoo.get(name).card, {"text": "a"}, ctx)
            assert outcome.outputs["summary"] == f"code from {folder}"


def test_a_missing_read_path_is_an_error_and_makes_the_card_unavailable(tmp_path):
    missing = tmp_path / "no-such-data"
    folder = card_folder(
        tmp_path, "c1", "sum-reads", extra=f"permissions: {{read: [{str(missing)!r}]}}\n"
    )
    defects = validate_paths([folder])
    assert [d.field for d in defects] == ["permissions.read"]
    assert str(missing) in defects[0].message
    entry = Zoo.load([folder]).get("sum-reads")
    assert not entry.available and str(missing) in (entry.unavailable or "")
    missing.mkdir()
    assert validate_paths([folder]) == []
    assert Zoo.load([folder]).get("sum-reads").available
