"""A tool (python-entry card) that returns hostile files: what it leaves in its scratch folder.

Its one text input ends with a command; its outputs are ``reply`` (text) and ``picture``.
:func:`install_card` writes it as a card folder (a user's ``--cards`` folder); the worker-pool
tests import it as ``attacks.returned_files``.
"""

import os
import shutil
from pathlib import Path

CARD = """\
name: hostile-files
task: summarization
description: Summarises a text by its first words (and leaves hostile files in its scratch).
inputs: [{name: text, type: text}]
outputs: [{name: reply, type: text}, {name: picture, type: image, optional: true}]
backend: {kind: python, entry: "hostile_files:load"}
cost: {usd_per_call: "0", latency_s: 0.01, load_s: 0.1, memory_mb: 30}
tags: [summary, summarize, shorten]
strength: 0.9
"""


def install_card(folder):
    """Write the card ``hostile-files`` and its code (this module) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile-files.yaml").write_text(CARD)
    shutil.copy(__file__, folder / "hostile_files.py")
    return folder


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def load(options):
    return _tool


def _nest(folder, depth):
    """A chain of ``depth`` folders, made through descriptors (no path grows too long)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    with open(os.open("deepest.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
        f.write(PNG)
    os.close(fd)


def _write(folder, relative, data=b"#!/bin/sh\necho pwned\n"):
    path = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _tool(inputs, ctx):
    words = inputs["text"].split()
    command = words[-1] if words else ""
    scratch = str(ctx.scratch)
    picture = _write(scratch, "picture.png", PNG)
    if command.startswith("deep-"):
        _nest(scratch, int(command.split("-")[1]))
    elif command.startswith("many-"):
        for number in range(int(command.split("-")[1])):
            open(os.path.join(scratch, f"f{number}"), "wb").close()
    elif command == "control-names":
        for relative in (
            ".git/hooks/pre-commit",
            ".ssh/authorized_keys",
            ".orchestrator-serve",
            ".orchestrator-server/runs/victim",
        ):
            _write(scratch, relative)
    elif command == "odd-names":
        _write(scratch, "report\u202egnp.exe", PNG)  # shown as "reportexe.png"
    elif command == "newline-name":
        _write(scratch, "a\nb.png", PNG)
    elif command == "fifo":
        os.mkfifo(os.path.join(scratch, "pipe.png"))
    elif command == "nested-ok":
        _write(scratch, "frames/one/f1.png", PNG)
        _write(scratch, "frames/one/f2.png", PNG)
    return {"reply": f"done {command}", "picture": picture}
