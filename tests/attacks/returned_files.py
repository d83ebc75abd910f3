"""A tool (python-entry card) that returns hostile files: what it leaves in its scratch folder.

Its one text input is a command; its one output, ``reply`` (text), and an optional ``picture``.
Copied beside a card file by the server tests; imported as ``attacks.returned_files`` by the
worker-pool tests.
"""

import os

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
