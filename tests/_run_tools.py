"""Card folders of small python tools for the run-lifecycle tests (cancel, resume, locks).

Every tool appends ``<card> start`` / ``<card> done`` lines to ``calls.log`` in a shared folder
the card may write to, so a test can count real calls across processes. The summariser
(``sum-steady``, task summarization) is slow or failing on its first call only: it sleeps
``first_sleep`` seconds, or with ``fail_until`` it waits until that file exists (plus a short
delay) and raises while ``ok_flag`` does not exist. Later calls answer at once.
"""

from __future__ import annotations

from pathlib import Path

SUMMARY_CARD = """\
name: sum-steady
task: summarization
description: Summarises an English text by keeping its first sentence (a test card).
inputs: [{{name: text, type: text, description: the text to summarise}}]
outputs: [{{name: summary, type: text}}]
backend: {{kind: python, entry: "sum_steady:load", options: {options}}}
cost: {{usd_per_call: "0.001", latency_s: 0.5, load_s: 0.2}}
languages: [en]
tags: [summary, summarize, shorten, gist]
result_label: Summary
strength: 0.95
permissions: {{read: ["{shared}"], write: ["{shared}"]}}
"""

SUMMARY_MODULE = '''\
"""A summariser for tests: slow or failing on its first call, logged."""

import os
import time


def _log(shared, line):
    with open(os.path.join(shared, "calls.log"), "a") as f:
        f.write(line + "\\n")


def load(options):
    shared = options["shared"]

    def tool(inputs, ctx):
        first = not os.path.exists(os.path.join(shared, "sum-called"))
        open(os.path.join(shared, "sum-called"), "a").close()
        _log(shared, "sum-steady start")
        if first and options.get("fail_until"):
            while not os.path.exists(options["fail_until"]):
                time.sleep(0.02)
            time.sleep(0.5)
            if not os.path.exists(options["ok_flag"]):
                raise RuntimeError("first call fails")
        elif first:
            time.sleep(float(options.get("first_sleep", 0)))
        _log(shared, "sum-steady done")
        return {"summary": str(inputs["text"]).split(".")[0] + "."}

    return tool
'''

LABEL_CARD = """\
name: lang-quick
task: text-classification
description: Says which language a text is in (a test card; always German).
inputs: [{{name: text, type: text}}]
outputs: [{{name: label, type: text}}]
backend: {{kind: python, entry: "lang_quick:load", options: {{shared: "{shared}"}}}}
cost: {{usd_per_call: "0.002", latency_s: 0.1, load_s: 0.2}}
tags: [language, which language]
result_label: Language
strength: 0.99
permissions: {{write: ["{shared}"]}}
"""

LABEL_MODULE = '''\
"""A language labeller for tests: always German, logged, leaves a flag when done."""

import os


def load(options):
    shared = options["shared"]

    def tool(inputs, ctx):
        with open(os.path.join(shared, "calls.log"), "a") as f:
            f.write("lang-quick done\\n")
        open(os.path.join(shared, "lang-done"), "w").close()
        return {"label": "German"}

    return tool
'''


def write_cards(folder: Path, shared: Path, *, labeller: bool = True, **options: object) -> Path:
    """Write the summariser (and the labeller) with their modules into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    opts = {"shared": str(shared), **{k: str(v) for k, v in options.items()}}
    inline = "{" + ", ".join(f'{k}: "{v}"' for k, v in opts.items()) + "}"
    (folder / "sum_steady.yaml").write_text(SUMMARY_CARD.format(options=inline, shared=shared))
    (folder / "sum_steady.py").write_text(SUMMARY_MODULE)
    if labeller:
        (folder / "lang_quick.yaml").write_text(LABEL_CARD.format(shared=shared))
        (folder / "lang_quick.py").write_text(LABEL_MODULE)
    return folder


def calls(shared: Path) -> list[str]:
    """The lines of the shared call log."""
    log = shared / "calls.log"
    return log.read_text().splitlines() if log.exists() else []
