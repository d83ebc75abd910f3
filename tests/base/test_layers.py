"""The package's layers point one way, the stages stay apart, and no modules import in a circle.

Layers, lowest first (a module may import its own layer or lower ones):

0. base: the modules at the top of ``orchestrator/`` (errors, config, budget, plan, ...);
1. ``cards``;
2. the stages: ``planning``, ``selection``, ``execution``, ``routing`` (none imports another);
3. ``pipeline``;
4. the interfaces: ``server``, ``cli``, ``evals``.

``orchestrator/__init__.py`` (the public API) and ``__main__.py`` may import anything.

Which imports count: for the layer rules, every ``import`` and ``from ... import`` anywhere in a
module, including inside functions (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:``. For cycles, only the imports that run when the module is imported: those
at module level and in its module-level ``if``/``try`` blocks, not those inside functions or under
``if TYPE_CHECKING:``. ``from pkg import name`` counts as importing ``pkg.name`` when that is a
module, else ``pkg``. The parent packages Python runs on the way (``orchestrator/__init__.py``
for every module) are not counted as imports of the module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

STAGES = ("planning", "selection", "execution", "routing")
LAYERS = {
    "cards": 1,
    **{stage: 2 for stage in STAGES},
    "pipeline": 3,
    "server": 4,
    "cli": 4,
    "evals": 4,
}
LAYER_NAMES = {0: "base", 1: "cards", 2: "stage", 3: "pipeline", 4: "interface"}
ANYTHING_GOES = {"orchestrator", "orchestrator.__main__"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is, and whether it runs at import time."""

    source: str
    target: str
    line: int
    at_import_time: bool


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _known(name: str) -> str:
    """The module ``name`` names, or its nearest enclosing module that exists."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base.pop()
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [
        f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
        for alias in node.names
    ]


def _imports(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[Import] = []

    def visit(node: ast.AST, at_import_time: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for branch in child.orelse:
                    visit_one(branch, at_import_time)
                continue
            visit_one(child, at_import_time)

    def visit_one(child: ast.AST, at_import_time: bool) -> None:
        if isinstance(child, ast.Import | ast.ImportFrom):
            for target in _targets(child, module):
                if target == "orchestrator" or target.startswith("orchestrator."):
                    found.append(Import(module, _known(target), child.lineno, at_import_time))
            return
        nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        visit(child, at_import_time and not nested)

    visit(tree, True)
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in _imports(module)]


def _layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) == 2 and MODULES[module].name != "__init__.py":
        return 0, "base"
    return LAYERS[parts[1]], parts[1]


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(PACKAGE.parent)}:{imp.line} imports {imp.target}"


def test_every_package_has_a_layer():
    unmapped = {
        module.split(".")[1]
        for module in MODULES
        if module not in ANYTHING_GOES
        and MODULES[module].parent != PACKAGE
        and module.split(".")[1] not in LAYERS
    }
    assert not unmapped, f"give these packages a layer in {Path(__file__).name}: {sorted(unmapped)}"


def test_no_module_imports_a_higher_layer():
    wrong = []
    for imp in ALL_IMPORTS:
        if imp.source in ANYTHING_GOES or imp.target in ANYTHING_GOES:
            if imp.target == "orchestrator" and imp.source not in ANYTHING_GOES:
                wrong.append(f"{_where(imp)}: import from the subpackage, not the public API")
            continue
        (low, low_name), (high, high_name) = _layer(imp.source), _layer(imp.target)
        if high > low:
            wrong.append(
                f"{_where(imp)}: {low_name} ({LAYER_NAMES[low]}, layer {low}) may not import "
                f"{high_name} ({LAYER_NAMES[high]}, layer {high}); move what it needs down"
            )
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(set(wrong)))


def test_no_stage_imports_another_stage():
    wrong = []
    for imp in ALL_IMPORTS:
        if imp.source in ANYTHING_GOES or imp.target in ANYTHING_GOES:
            continue
        (low, source), (high, target) = _layer(imp.source), _layer(imp.target)
        if low == high == LAYERS["planning"] and source != target:
            wrong.append(
                f"{_where(imp)}: stage {source} may not import stage {target}; what both need "
                "belongs in cards or base"
            )
    assert not wrong, "stages importing each other:\n" + "\n".join(sorted(set(wrong)))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], Import] = {}
    for imp in ALL_IMPORTS:
        if imp.at_import_time and imp.source != imp.target:
            edges.setdefault(imp.source, set()).add(imp.target)
            lines.setdefault((imp.source, imp.target), imp)
    problems = []
    for component in _cycles(edges):
        members = set(component)
        links = [
            _where(lines[(source, target)])
            for source in component
            for target in sorted(edges.get(source, ()))
            if target in members
        ]
        problems.append(
            f"modules importing each other at import time: {', '.join(component)}\n  "
            + "\n  ".join(links)
            + "\n  break the circle: move the shared part into its own module"
        )
    assert not problems, "\n".join(problems)


def test_the_tests_mirror_the_packages():
    tests = Path(__file__).resolve().parents[1]
    loose = sorted(p.name for p in tests.glob("test_*.py"))
    assert not loose, f"put each test in the folder of its package: {loose}"
    for path in sorted(tests.rglob("test_*.py")):
        folder = path.parent.relative_to(tests)
        if folder.parts[0] == "base":  # the package root's own modules
            assert len(folder.parts) == 1, path
            continue
        assert (PACKAGE / folder / "__init__.py").is_file(), (
            f"{path.relative_to(tests)}: no package orchestrator/{folder.as_posix()} to mirror"
        )


def test_heavy_tests_carry_the_marker_of_what_makes_them_heavy(pytestconfig):
    from conftest import SLOW_FIXTURES, SLOW_MODULES

    kinds = {kind for kind, _ in [*SLOW_MODULES.values(), *SLOW_FIXTURES.values()]}
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert kinds | {"slow", "sandbox"} <= registered
