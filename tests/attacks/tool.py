"""A tool (python-entry card) that attacks the orchestrator through its results."""

import os

_HELD: list[bytearray] = []


def load(options):
    return _tool


def _protocol_fds():
    """Pipes other than stdin/stdout/stderr: the worker's private protocol channel."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > 2 and "pipe:" in os.readlink(f"/proc/self/fd/{name}"):
                fds.append(int(name))
        except OSError:
            continue
    return fds


def _between_calls(command):
    """Commands whose effects outlast the call, or that read another variable."""
    if command.startswith("env "):
        return {"reply": os.environ.get(command.split()[1], "<unset>")}
    if command == "spin":  # a thread and a child that go on burning CPU after the call
        import threading

        threading.Thread(target=_spin, daemon=True).start()
        if os.fork() == 0:
            _spin()
        return {"reply": "spinning"}
    import sys  # stderr N: N MB of log lines, then a last line

    line = "e" * 1023 + "\n"
    for _ in range(int(command.split()[1]) * 1024):
        sys.stderr.write(line)
    sys.stderr.write("LAST-LOG-LINE\n")
    sys.stderr.flush()
    return {"reply": "logged"}


def _spin():
    while True:
        pass


def _tool(inputs, ctx):
    command = inputs["text"]
    if command.startswith("alloc "):
        blocks = [bytearray(1024 * 1024) for _ in range(int(command.split()[1]))]
        return {"reply": f"allocated {len(blocks)} MB"}
    if command.startswith("hold "):
        _HELD.append(bytearray(int(command.split()[1]) * 1024 * 1024))
        return {"reply": "holding"}
    if command.startswith("sleep "):
        import time

        time.sleep(float(command.split()[1]))
        return {"reply": command}
    if command.startswith("read "):
        return {"reply": open(command.split(" ", 1)[1]).read()}
    if command == "env":
        return {"reply": os.environ.get("ATTACK_TOOL_VAR", "<unset>")}
    if command.startswith(("env ", "spin", "stderr ")):
        return _between_calls(command)
    if command == "huge":
        return {"reply": "x" * (200 * 1024 * 1024)}
    if command == "non-utf8":
        for fd in _protocol_fds():
            try:
                os.write(fd, b"\xff\xfe\xfd not utf-8 \x80\n")
            except OSError:
                pass
        return {"reply": "after"}
    if command == "symlink-output":
        link = ctx.scratch / "out.png"
        os.symlink("/etc/passwd", link)
        return {"reply": "x", "picture": str(link)}
    return {"reply": command}
