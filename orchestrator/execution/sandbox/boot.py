"""The first code of every sandboxed Python process: ``python -I -S -B -u boot.py SPEC [ARG...]``.

``-I`` ignores every ``PYTHON*`` environment variable, the user's site folder and the script's
own folder; ``-S`` skips the ``site`` module at start-up. So no ``sitecustomize``,
``usercustomize`` or ``.pth`` file is looked for anywhere a card could have put one, and no
folder of a card is on the import path when the interpreter starts. This file (run by its path,
from the read-only project) then, in this order:

1. adds the site-packages folders the parent named (``site.addsitedir``: the ``.pth`` files there
   belong to installed packages, which are trusted like the interpreter);
2. loads :mod:`orchestrator.execution.sandbox.confine` by its path and confines the process as
   ``$ORCHESTRATOR_SANDBOX_CONFINE`` says (mounts, capabilities and uid, Landlock, seccomp). Up
   to here only the standard library, pyseccomp and installed packages' ``.pth`` hooks ran;
3. appends the project root, then the card's own code folders, to the END of ``sys.path``: the
   standard library and installed packages always win over a card's module of the same name,
   and a worker sees the code of its own card only;
4. starts the in-sandbox half of the network relay when the card was given endpoints;
5. runs the target module as ``__main__`` with the remaining arguments.

SPEC is JSON: ``{"module", "root", "site", "code"}``. If confinement fails, nothing else runs:
the reason goes to standard error and the process exits with :data:`BOOT_FAILED`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

BOOT_FAILED = 121


def _confine() -> dict[str, Any]:
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("_orchestrator_confine", f"{here}/confine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    confined: dict[str, Any] = module.confine_from_env()
    return confined


def main() -> int:
    """Set up the import path, confine, then run the target module (see the module doc)."""
    boot = json.loads(sys.argv[1])
    import site

    for folder in boot.get("site", []):
        site.addsitedir(folder)
    try:
        confined = _confine()
    except Exception as exc:  # nothing of the tool may run unconfined
        sys.stderr.write(f"sandbox: could not be applied: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        return BOOT_FAILED
    for folder in [boot["root"], *boot.get("code", [])]:
        if folder not in sys.path:
            sys.path.append(folder)
    if confined.get("forward"):
        from orchestrator.execution.sandbox.relay import start_forwarders

        start_forwarders(confined["forward"])
    import runpy

    sys.argv = [boot["module"], *sys.argv[2:]]
    runpy.run_module(boot["module"], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
