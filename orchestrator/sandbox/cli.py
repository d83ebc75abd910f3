"""``orchestrator sandbox info`` and ``orchestrator sandbox exec FILE.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["sandbox_app"]

sandbox_app = typer.Typer(help="Inspect and try the sandbox tools run in.", no_args_is_help=True)


@sandbox_app.command("info")
def info() -> None:
    """Print each isolation layer and whether it is in force on this host."""
    from orchestrator.sandbox.launch import Sandbox

    sandbox = Sandbox()
    probe = sandbox.probe
    print(f"mode: {sandbox.mode}")
    for layer, state in probe.layers().items():
        print(f"{layer:<11} {state}")
    missing = probe.missing_for_full()
    print("full isolation: " + ("yes" if not missing else f"no (missing {', '.join(missing)})"))


@sandbox_app.command("exec")
def exec_file(
    file: Annotated[Path, typer.Argument(help="the Python file to run", exists=True)],
    allow_network: Annotated[bool, typer.Option("--allow-network", help="share the network")] = (
        False
    ),
    timeout: Annotated[float, typer.Option("--timeout", help="wall-clock seconds")] = 30.0,
    memory: Annotated[int, typer.Option("--memory", help="memory cap in MB")] = 1024,
) -> None:
    """Run FILE inside exactly the sandbox tools get; exit with its status."""
    from orchestrator.sandbox.run_file import run_file

    result = run_file(file, allow_network=allow_network, timeout_s=timeout, memory_mb=memory)
    if result.reason:
        print(f"sandbox: stopped: {result.reason}", file=sys.stderr)
        raise typer.Exit(result.code if result.code > 0 else 128 + max(-result.code, 1))
    raise typer.Exit(result.code)
