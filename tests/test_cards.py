from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cards import card_from_yaml, load_card
from orchestrator.cli import app
from orchestrator.errors import CardError
from orchestrator.zoo import Zoo, builtin_cards_dir, validate_paths

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
