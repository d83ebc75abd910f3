"""The zoo: card folders whose Python modules share names or shadow installed ones, read
permissions that point nowhere or are not approved."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cards.approvals import Approvals
from orchestrator.cards.backend import CallContext
from orchestrator.cards.zoo import Zoo, code_clashes, validate_paths
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.permissions import Permissions

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


def test_same_module_name_in_two_card_folders_each_runs_its_own_code(tmp_path):
    c1 = card_folder(tmp_path, "c1", "sum-c1")
    c2 = card_folder(tmp_path, "c2", "sum-c2")
    (c2 / "helpers").mkdir()
    (c2 / "helpers" / "__init__.py").write_text("")
    assert validate_paths([c1, c2]) == []
    zoo = Zoo.load([c1, c2])
    with WorkerPoolExecutor() as executor:
        for name, folder in (("sum-c1", "c1"), ("sum-c2", "c2")):
            ctx = CallContext(scratch=tmp_path / "scratch")
            outcome = executor.call(zoo.get(name).card, {"text": "a"}, ctx)
            assert outcome.outputs["summary"] == f"code from {folder}"


def test_a_package_named_like_an_installed_one_is_refused(tmp_path):
    folder = card_folder(tmp_path, "c1", "sum-c1")
    (folder / "openai").mkdir()
    (folder / "openai" / "__init__.py").write_text("")
    defects = code_clashes([folder])
    assert len(defects) == 1 and "module 'openai'" in defects[0].message
    assert "installed module" in defects[0].message


def test_a_module_named_like_a_standard_module_is_refused(tmp_path):
    folder = card_folder(tmp_path, "c1", "sum-c1", module="json")
    defects = code_clashes([folder])
    assert len(defects) == 1 and "module 'json'" in defects[0].message
    assert defects[0].path == (folder / "json.py").resolve()


def test_distinct_modules_each_run_their_own_folder_code(tmp_path):
    c1 = card_folder(tmp_path, "c1", "sum-c1", module="tool_one")
    c2 = card_folder(tmp_path, "c2", "sum-c2", module="tool_two")
    zoo = Zoo.load([c1, c2, c1])  # a folder named twice is read once
    with WorkerPoolExecutor() as executor:
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
    unapproved = Zoo.load([folder]).get("sum-reads")
    assert not unapproved.available and "[approve.sum-reads]" in (unapproved.unavailable or "")
    approved = Approvals({"sum-reads": Permissions(read=[str(missing)])})
    assert Zoo.load([folder], approvals=approved).get("sum-reads").available
