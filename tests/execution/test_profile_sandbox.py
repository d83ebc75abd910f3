"""Profiling runs the card's code in sandboxed workers: failures are recorded, never fatal.

Every card here is a python card written into a tmp folder; its code runs in real worker
processes (the executor runs use), with real timeouts and real crashes.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cards.probes.aptitude import Probe
from orchestrator.cards.profile import profile_path
from orchestrator.cards.zoo import Zoo
from orchestrator.cli.main import app
from orchestrator.execution.pool import WorkerPoolExecutor
from orchestrator.execution.profiling import profile_card

CARD = """\
name: {name}
task: summarization
description: A test summarizer that keeps the first sentence of its text.
inputs: [{{name: text, type: text}}]
outputs: [{{name: summary, type: text}}]
backend: {{kind: python, entry: "{module}:load"}}
cost: {{usd_per_call: "0.00001", latency_s: 0.01, load_s: 0.1, memory_mb: 64}}
"""

GOOD_TOOL = """
def load(options):
    def tool(inputs, ctx):
        return {"summary": inputs["text"].split(".")[0] + "."}
    return tool
"""

PROBES = [
    Probe(
        "first",
        {"text": "The storm hit the coast. Power was lost for two days in the north."},
        {"summary": {"reference": "The storm hit the coast."}},
    ),
    Probe(
        "second",
        {"text": "Rain fell all day. Roads flooded and schools closed early."},
        {"summary": {"reference": "Rain fell all day."}},
    ),
    Probe(
        "third",
        {"text": "Markets rose. Bonds fell after the bank raised its rates."},
        {"summary": {"reference": "Markets rose."}},
    ),
]


def make_card(folder: Path, name: str, tool_source: str) -> Path:
    """A python card ``name`` in ``folder`` with its module beside it; the card file's path."""
    module = name.replace("-", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(tool_source))
    card_file = folder / f"{module}.yaml"
    card_file.write_text(CARD.format(name=name, module=module))
    return card_file


def profile(folder: Path, name: str, **options):
    zoo = Zoo.load([folder])
    with WorkerPoolExecutor(extra_sys_path=[str(folder)]) as executor:
        return profile_card(zoo.get(name).card, PROBES, executor=executor, **options)


def errors(record) -> list[str | None]:
    return [p.get("error") for p in record["probes"]]


def test_tool_code_cannot_write_on_the_host(tmp_path):
    (tmp_path / "host").mkdir()
    target = tmp_path / "host" / "ESCAPED"  # a host folder the sandbox does not show
    make_card(
        tmp_path / "cards",
        "sum-escape",
        f"""
        def load(options):
            def tool(inputs, ctx):
                open({str(target)!r}, "w").write("written from tool code")
                return {{"summary": "x"}}
            return tool
        """,
    )
    record = profile(tmp_path / "cards", "sum-escape")
    assert not target.exists()
    assert all(e and "sum-escape: raised" in e for e in errors(record))
    assert record["mean_score"] == 0.0 and record["failed"] == 3


def test_a_crashing_tool_fails_its_probes_and_the_rest_are_not_run(tmp_path):
    make_card(
        tmp_path,
        "sum-exit",
        """
        import os
        def load(options):
            def tool(inputs, ctx):
                os._exit(3)
            return tool
        """,
    )
    record = profile(tmp_path, "sum-exit")
    first, second, third = errors(record)
    assert "exited with code 3" in first and "exited with code 3" in second
    assert third.startswith("not run: the tool failed before")
    assert [p["score"] for p in record["probes"]] == [0.0, 0.0, 0.0]


def test_a_hanging_tool_times_out_with_the_timeout(tmp_path):
    make_card(
        tmp_path,
        "sum-hang",
        """
        import time
        def load(options):
            def tool(inputs, ctx):
                time.sleep(1000)
            return tool
        """,
    )
    started = time.monotonic()
    record = profile(tmp_path, "sum-hang", timeout_s=1.0)
    assert time.monotonic() - started < 30
    first, second, third = errors(record)
    assert "timed out" in first and "timed out" in second
    assert third.startswith("not run")


def test_a_model_that_does_not_load_stops_the_test_at_once(tmp_path):
    make_card(
        tmp_path,
        "sum-noload",
        """
        def load(options):
            raise RuntimeError("weights missing at /nowhere")
        """,
    )
    record = profile(tmp_path, "sum-noload")
    first, second, third = errors(record)
    assert "failed to load: RuntimeError: weights missing at /nowhere" in first
    assert second.startswith("not run") and third.startswith("not run")


def test_bad_outputs_and_raising_tools_are_recorded_per_probe(tmp_path):
    make_card(
        tmp_path,
        "sum-picky",
        """
        def load(options):
            def tool(inputs, ctx):
                text = inputs["text"]
                if text.startswith("The"):
                    return 42
                if text.startswith("Rain"):
                    return {}["missing"]
                return {"summary": text.split(".")[0] + "."}
            return tool
        """,
    )
    record = profile(tmp_path, "sum-picky")
    first, second, third = errors(record)
    assert "returned int, not a dict of outputs" in first
    assert "raised KeyError" in second
    assert third is None and record["probes"][2]["score"] == 1.0
    assert record["failed"] == 2 and record["mean_score"] == round(1 / 3, 4)


def test_cli_reports_a_crash_cleanly_and_writes_no_profile(tmp_path):
    card_file = make_card(
        tmp_path,
        "sum-crash",
        """
        import os
        def load(options):
            def tool(inputs, ctx):
                os._exit(3)
            return tool
        """,
    )
    result = CliRunner().invoke(app, ["profile", "sum-crash", "--cards", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "failed every probe, so no profile was written" in result.output
    assert "worker exited with code 3" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not profile_path(card_file).exists()


def test_cli_profiles_cards_of_the_config_and_of_the_environment(tmp_path, monkeypatch):
    project = tmp_path / "project"
    card_file = make_card(project / "my_cards", "sum-conf", GOOD_TOOL)
    (project / "orchestrator.toml").write_text('card_dirs = ["my_cards"]\n')
    monkeypatch.chdir(project)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CARDS", raising=False)
    result = CliRunner().invoke(app, ["profile", "sum-conf"])
    assert result.exit_code == 0, result.output
    written = json.loads(profile_path(card_file).read_text())
    # The first sentence is a fair summary of the built-in test's articles, but not the best.
    assert 0.2 < written["mean_score"] < 1.0 and written["failed"] == 0
    assert Zoo.load([project / "my_cards"]).get("sum-conf").card.profile is not None

    env_cards = make_card(tmp_path / "env_cards", "sum-env", GOOD_TOOL)
    monkeypatch.setenv("ORCHESTRATOR_CARDS", str(tmp_path / "env_cards"))
    result = CliRunner().invoke(app, ["profile", "sum-env"])
    assert result.exit_code == 0, result.output
    assert profile_path(env_cards).exists()


def test_cli_refuses_unknown_and_unavailable_cards(tmp_path):
    folder = tmp_path / "cards"
    make_card(folder, "sum-good", GOOD_TOOL)
    (folder / "needs.yaml").write_text(
        CARD.format(name="sum-needs", module="sum_good").replace(
            "cost:", "requires: {packages: [no_such_package_xyz]}\ncost:"
        )
    )
    runner = CliRunner()
    unknown = runner.invoke(app, ["profile", "sum-nope", "--cards", str(folder)])
    assert unknown.exit_code == 2
    assert "no card named 'sum-nope'" in unknown.output and "--cards DIR" in unknown.output
    unavailable = runner.invoke(app, ["profile", "sum-needs", "--cards", str(folder)])
    assert unavailable.exit_code == 2
    assert "sum-needs cannot be profiled here" in unavailable.output
    assert "no_such_package_xyz" in unavailable.output


def test_a_partly_failed_profile_is_written_and_attached(tmp_path):
    card_file = make_card(
        tmp_path,
        "sum-half",
        """
        def load(options):
            def tool(inputs, ctx):
                if "flooding" in inputs["text"]:
                    raise ValueError("no rain today")
                return {"summary": inputs["text"].split(".")[0] + "."}
            return tool
        """,
    )
    from orchestrator.cards.probes.aptitude import probes_for
    from orchestrator.cards.profile import write_profile

    zoo = Zoo.load([tmp_path])
    probes = probes_for(zoo.get("sum-half").card, card_file)  # the built-in summarization test
    with WorkerPoolExecutor(extra_sys_path=[str(tmp_path)]) as executor:
        record = profile_card(zoo.get("sum-half").card, probes, executor=executor)
    write_profile(card_file, record)
    card = Zoo.load([tmp_path]).get("sum-half").card
    assert card.profile is not None
    assert [p.error is None for p in card.profile.probes] == [True, False]
    assert "no rain today" in card.profile.probes[1].error
