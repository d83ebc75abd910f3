from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cards import card_from_yaml, load_card
from orchestrator.cards.zoo import Zoo, builtin_cards_dir, validate_paths
from orchestrator.cli.main import app
from orchestrator.errors import CardError

GOOD = """
name: my-echo
task: text-generation
description: Repeats the text it is given, for testing the pipeline.
inputs: [{name: prompt, type: text}]
outputs: [{name: text, type: text}]
backend: {kind: python, entry: "os.path:basename"}
cost: {usd_per_call: "0.001", latency_s: 0.1}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def defects_of(text: str, tmp_path: Path) -> list[str]:
    path = write(tmp_path, "card.yaml", text)
    with pytest.raises(CardError) as info:
        load_card(path)
    return [str(d) for d in info.value.defects]


def test_good_card_loads_with_exact_money(tmp_path):
    card = load_card(write(tmp_path, "c.yaml", GOOD))
    assert card.name == "my-echo"
    assert card.cost.usd_per_call == Decimal("0.001")
    assert card.input_types() == {"text"}


def test_float_money_is_kept_exact(tmp_path):
    card = card_from_yaml(GOOD.replace('"0.001"', "0.1"))
    assert card.cost.usd_per_call == Decimal("0.1")


def test_unknown_backend_names_file_field_and_fix(tmp_path):
    [defect] = defects_of(GOOD.replace("kind: python", "kind: tensorflow"), tmp_path)
    assert "card.yaml" in defect and "backend" in defect
    assert "transformers" in defect and "python" in defect  # lists the known kinds


def test_misspelt_field_is_reported(tmp_path):
    defects = defects_of(GOOD.replace("description:", "descripton:"), tmp_path)
    assert any(
        "descripton" in d and "unknown field; did you mean 'description'?" in d for d in defects
    )


def test_unknown_io_type_is_reported(tmp_path):
    defects = defects_of(GOOD.replace("type: text}]\noutputs", "type: video}]\noutputs"), tmp_path)
    assert any("inputs.0.type" in d and "video" in d and "audio" in d for d in defects)


def test_missing_inputs_is_reported(tmp_path):
    text = GOOD.replace("inputs: [{name: prompt, type: text}]\n", "")
    [defect] = defects_of(text, tmp_path)
    assert "inputs" in defect and "missing" in defect


def test_malformed_cost_is_reported(tmp_path):
    defects = defects_of(GOOD.replace('"0.001"', '"a lot"'), tmp_path)
    assert any("cost.usd_per_call" in d for d in defects)
    defects = defects_of(GOOD.replace('"0.001"', '"-1"'), tmp_path)
    assert any("cost.usd_per_call" in d and "non-negative" in d for d in defects)


def test_not_yaml_is_reported(tmp_path):
    [defect] = defects_of("name: [unclosed", tmp_path)
    assert "not valid YAML" in defect


def test_duplicate_names_across_files(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    defects = validate_paths([tmp_path])
    assert len(defects) == 1
    assert "b.yaml" in str(defects[0]) and "duplicate name 'my-echo'" in str(defects[0])
    with pytest.raises(CardError):
        Zoo.load([tmp_path], builtin=False)


def test_every_builtin_card_is_valid():
    assert validate_paths([builtin_cards_dir()]) == []


def test_user_cards_come_from_env_folder(tmp_path, monkeypatch):
    from orchestrator.config import Config

    write(tmp_path, "mine.yaml", GOOD)
    monkeypatch.setenv("ORCHESTRATOR_CARDS", str(tmp_path))
    zoo = Zoo.load(Config.load().card_dirs)
    assert "my-echo" in zoo
    assert zoo.get("my-echo").path == tmp_path / "mine.yaml"


def test_cli_validate_exit_status(tmp_path):
    runner = CliRunner()
    good = write(tmp_path, "good.yaml", GOOD)
    assert runner.invoke(app, ["cards", "validate", str(good)]).exit_code == 0
    bad = write(tmp_path, "bad.yaml", GOOD.replace("kind: python", "kind: nope"))
    result = runner.invoke(app, ["cards", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml: backend" in result.output


def test_cli_list_and_show_report_unavailable_cards():
    runner = CliRunner()
    listed = runner.invoke(app, ["cards", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    import json

    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["openai-gpt-4o-mini"]["available"] in (True, False)
    shown = runner.invoke(app, ["cards", "show", "no-such-card"])
    assert shown.exit_code == 2
    assert "known cards" in shown.output


PY_CARD = """\
name: {name}
task: summarization
description: A test summarizer card for the validate command.
inputs: [{{name: text, type: text}}]
outputs: [{{name: summary, type: text}}]
backend: {{kind: python, entry: "{entry}"}}
cost: {{latency_s: 0.01, load_s: 0.1}}
"""


def py_card(folder: Path, name: str, entry: str, module_source: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if module_source is not None:
        write(folder, entry.partition(":")[0] + ".py", module_source)
    return write(folder, f"{name}.yaml", PY_CARD.format(name=name, entry=entry))


def test_validate_refuses_a_duplicate_of_a_builtin_name_by_default(tmp_path):
    write(tmp_path, "dupe.yaml", GOOD.replace("name: my-echo", "name: vader-sentiment"))
    runner = CliRunner()
    result = runner.invoke(app, ["cards", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "duplicate name 'vader-sentiment'" in result.output
    assert "vader-sentiment.yaml" in result.output
    alone = runner.invoke(app, ["cards", "validate", "--no-with-builtin", str(tmp_path)])
    assert alone.exit_code == 0, alone.output
    # The built-in folder itself is not a duplicate of itself.
    assert runner.invoke(app, ["cards", "validate", str(builtin_cards_dir())]).exit_code == 0


def test_validate_says_an_empty_folder_has_no_cards(tmp_path):
    empty = tmp_path / "emptydir"
    empty.mkdir()
    result = CliRunner().invoke(app, ["cards", "validate", str(empty)])
    assert result.exit_code == 1
    assert f"no cards in {empty}" in result.output


def test_validate_imports_python_entries_in_the_sandbox(tmp_path):
    runner = CliRunner()
    py_card(tmp_path / "nomodule", "sum-nomod", "no_such_module_xyz:load")
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "nomodule")])
    assert result.exit_code == 1
    assert "'no_such_module_xyz:load' cannot be imported" in result.output
    assert "no_such_module_xyz.py beside the card" in result.output

    py_card(tmp_path / "dep", "sum-dep", "sum_dep:load", "\n\nimport no_such_dependency_abc\n")
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "dep")])
    assert result.exit_code == 1
    assert "No module named 'no_such_dependency_abc'" in result.output
    assert f"{tmp_path / 'dep' / 'sum_dep.py'}:3" in result.output

    py_card(tmp_path / "syntax", "sum-syn", "sum_syn:load", "def load(options)\n    pass\n")
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "syntax")])
    assert result.exit_code == 1 and "SyntaxError" in result.output
    assert f"{tmp_path / 'syntax' / 'sum_syn.py'}:1" in result.output

    py_card(tmp_path / "noattr", "sum-noattr", "sum_noattr:load", "VALUE = 1\n")
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "noattr")])
    assert result.exit_code == 1 and "has no 'load'" in result.output

    # Importing runs in the sandbox: a module that writes on import leaves nothing on the host.
    (tmp_path / "host").mkdir()
    marker = tmp_path / "host" / "IMPORTED"
    source = f"open({str(marker)!r}, 'w').write('x')\ndef load(options):\n    return None\n"
    py_card(tmp_path / "writer", "sum-writer", "sum_writer:load", source)
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "writer")])
    assert result.exit_code == 1 and not marker.exists()

    py_card(tmp_path / "fine", "sum-fine", "sum_fine:load", "def load(options):\n    return 1\n")
    result = runner.invoke(app, ["cards", "validate", str(tmp_path / "fine")])
    assert result.exit_code == 0, result.output


def test_misspelt_backend_field_gets_a_suggestion_without_the_union_tag(tmp_path):
    text = GOOD.replace('entry: "os.path:basename"', 'entry: "os.path:basename", optons: {}')
    assert defects_of(text, tmp_path) == [
        f"{tmp_path / 'card.yaml'}: backend.optons: unknown field; did you mean 'options'? "
        "Allowed: entry, kind, options."
    ]


def test_yaml_errors_give_line_and_column_not_a_unicode_string(tmp_path):
    text = GOOD.replace("Repeats the text", '"Repeats the text')
    (message,) = defects_of(text, tmp_path)
    assert message.startswith(f"{tmp_path / 'card.yaml'}: <yaml>: not valid YAML:")
    assert "<unicode string>" not in message and "at line" in message


def test_a_factory_that_returns_a_non_callable_is_named_as_such(tmp_path):
    from orchestrator.cards.backend import CallContext
    from orchestrator.errors import ToolFailed
    from orchestrator.execution.pool import WorkerPoolExecutor

    py_card(tmp_path, "sum-int", "sum_int:load", "def load(options):\n    return 42\n")
    card = Zoo.load([tmp_path]).get("sum-int").card
    with WorkerPoolExecutor(extra_sys_path=[str(tmp_path)]) as executor:
        with pytest.raises(ToolFailed) as info:
            executor.call(card, {"text": "a"}, CallContext(scratch=tmp_path / "out"))
    assert "failed to load: TypeError: sum_int:load returned int 42, not a callable" in str(
        info.value
    )


def test_an_entry_naming_a_missing_attribute_says_which_module_lacks_it():
    from orchestrator.plugins import import_entry

    with pytest.raises(
        AttributeError, match=r"os\.path:no_such_factory: module os\.path .* has no"
    ):
        import_entry("os.path:no_such_factory")
