"""Move every module to the package of its stage (issue 14, item 1), as ``layout.toml`` says.

Run on a clean checkout of main, from anywhere::

    .venv/bin/python .restructure/apply.py

It ``git mv``s each file, writes the ``__init__.py`` of the new packages, rewrites what points at
an old place (imports; dotted names and paths in strings, comments, docs, cards and config), makes
the edits no rule covers, sorts the rewritten imports (ruff), rewraps the Markdown lines that
grew past 100 characters, and re-digests the built-in cards'
profiles that were fresh before and went stale only because a card's text changed (a python
card's ``entry`` names its module). It stages everything and commits nothing.

In Python files only import statements, string literals and comments are rewritten, so a variable
called ``orchestrator`` (``orchestrator.run(...)``) is left alone.
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TOP = ("orchestrator", "planners", "evals", "tool_cards")
_TOP = "|".join(TOP)
DOTTED = re.compile(rf"(?<![\w.])(?:{_TOP})(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(rf"(?<![\w./-])(?:{_TOP})/[\w.*/<>-]*")

# Run with the old code before the move and, rewritten like any other file, with the new code
# after it: each built-in profile's stored digests and the digests the code computes now.
DIGESTS = """
import json

from orchestrator._probes import probes_digest, probes_for
from orchestrator.cards import builtin_cards_dir, load_card
from orchestrator.profile import card_digest, read_profile

found = {}
for path in sorted(builtin_cards_dir().glob("*.yaml")):
    if path.name.endswith(".probes.yaml"):
        continue
    card = load_card(path)
    stored = read_profile(path)
    if stored is not None:
        found[str(path)] = {
            "stored": [stored.get("card_digest"), stored.get("probes_digest")],
            "now": [card_digest(card), probes_digest(probes_for(card, path))],
        }
print(json.dumps(found))
"""


def git(*args: str) -> str:
    """Run git in the checkout; its standard output."""
    done = subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return done.stdout


def tracked() -> list[str]:
    """Every file git tracks in the checkout."""
    return [f for f in git("ls-files", "-z").split("\0") if f]


def module_of(path: str) -> str | None:
    """``a/b/c.py`` -> ``a.b.c``; ``a/b/__init__.py`` -> ``a.b``; None for other files."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass
class Layout:
    """What moves where, read from layout.toml and completed from the checkout's files."""

    files: dict[str, str]
    folders: dict[str, str]
    modules: dict[str, str]
    reexports: dict[str, set[str]]

    def module(self, name: str, shortest: int = 2) -> str:
        """The new name of a dotted name: its longest moved prefix replaced."""
        parts = name.split(".")
        for k in range(len(parts), shortest - 1, -1):
            prefix = ".".join(parts[:k])
            if prefix in self.reexports and k < len(parts) and parts[k] in self.reexports[prefix]:
                return name  # ``orchestrator.cards.ToolCard``: the package re-exports it
            if prefix in self.reexports and k == len(parts):
                return name
            if prefix in self.modules:
                return ".".join([self.modules[prefix], *parts[k:]])
        return name

    def path(self, path: str) -> str:
        """The new place of a path (a file or a folder) that moved; other paths unchanged."""
        bare = path.rstrip("/")
        if bare in self.files:
            return self.files[bare] + path[len(bare) :]
        for old in sorted(self.folders, key=len, reverse=True):
            if bare == old or bare.startswith(old + "/"):
                return self.folders[old] + path[len(old) :]
        return path


def read_layout(files: list[str]) -> tuple[dict, Layout]:
    """The layout file, and every move it implies for ``files``."""
    spec = tomllib.loads((HERE / "layout.toml").read_text(encoding="utf-8"))
    moves = dict(spec["files"])
    for name in files:
        for old, new in spec["folders"].items():
            if name.startswith(old + "/") and name not in moves:
                moves[name] = new + name[len(old) :]
    folders = dict(spec["folders"])
    for old, new in moves.items():
        if old.endswith("/__init__.py") and new.endswith("/__init__.py"):
            folders.setdefault(old[: -len("/__init__.py")], new[: -len("/__init__.py")])
    modules = {}
    for old, new in moves.items():
        if module_of(old) and module_of(new) and module_of(old) != module_of(new):
            modules[module_of(old)] = module_of(new)
    missing = [old for old in spec["files"] if old not in files]
    if missing:
        sys.exit(f"layout.toml names files this checkout does not have: {missing}")
    emptied = tuple(f"{folder}/" for folder in spec["emptied"]["folders"])
    unplaced = [f for f in files if f.startswith(emptied) and f not in moves]
    if unplaced:
        sys.exit(f"files no rule moves: {unplaced}; add them to layout.toml [files]")
    return spec, Layout(moves, folders, modules, {})


def move(layout: Layout) -> None:
    """``git mv`` every file to its new place."""
    for old, new in layout.files.items():
        (ROOT / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", old, new)


def read_reexports(spec: dict, layout: Layout) -> None:
    """The names each re-exporting package re-exports: its module's ``__all__``."""
    for init, module in spec["reexport"].items():
        package = module_of(init)
        assert package is not None
        layout.reexports[package] = set(_all_of(ROOT / (module.replace(".", "/") + ".py")))


def write_packages(spec: dict) -> None:
    """The ``__init__.py`` of each new package (after the rewrite: they name new places)."""
    for folder, doc in spec["packages"].items():
        init = ROOT / folder / "__init__.py"
        if init.exists():
            sys.exit(f"{init} exists already; layout.toml [packages] should not name {folder}")
        init.write_text(doc if "\n" in doc else f'"""{doc}"""\n', encoding="utf-8")
    write_reexports(spec)
    git("add", *[f"{folder}/__init__.py" for folder in spec["packages"]], *spec["reexport"])


def write_reexports(spec: dict) -> None:
    """A package's ``__init__.py`` that re-exports one module (written after the rewrite)."""
    for init, module in spec["reexport"].items():
        names = _all_of(ROOT / (module.replace(".", "/") + ".py"))
        doc = spec["packages"].get(init.rsplit("/", 1)[0], "")
        listed = "".join(f"    {n},\n" for n in names)
        quoted = "".join(f'    "{n}",\n' for n in sorted(names))
        text = f'"""{doc}"""\n\nfrom {module} import (\n{listed})\n\n__all__ = [\n{quoted}]\n'
        (ROOT / init).write_text(text, encoding="utf-8")


def _all_of(source: Path) -> list[str]:
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    sys.exit(f"{source} has no __all__ to re-export")


def rewrite_words(text: str, layout: Layout) -> str:
    """Dotted module names and paths in free text (docs, cards, strings, comments)."""
    text = DOTTED.sub(lambda m: layout.module(m.group(0), 1), text)

    def path(match: re.Match[str]) -> str:
        found = match.group(0)
        bare = found.rstrip(".")
        return layout.path(bare) + found[len(bare) :]

    return PATH.sub(path, text)


def rewrite_python(text: str, layout: Layout, name: str = "<text>") -> str:
    """Imports, and the strings and comments, of one Python file."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(row: int, col_bytes: int) -> int:
        line = lines[row - 1]
        return starts[row - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8"))

    edits: list[tuple[int, int, str]] = []
    spans: list[tuple[int, int]] = []
    for node in ast.walk(ast.parse(text, name)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            start = offset(node.lineno, node.col_offset)
            end = offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
            spans.append((start, end))
            new = _import(node, layout, " " * node.col_offset)
            if new is not None:
                edits.append((start, end, new))
    kinds = (tokenize.STRING, tokenize.COMMENT)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in kinds:
            continue
        start = starts[token.start[0] - 1] + token.start[1]
        end = starts[token.end[0] - 1] + token.end[1]
        if any(a <= start < b for a, b in spans):
            continue
        new = rewrite_words(token.string, layout)
        if new != token.string:
            edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _import(node: ast.Import | ast.ImportFrom, layout: Layout, indent: str) -> str | None:
    """The rewritten import statement, or None when nothing it names moved."""
    if isinstance(node, ast.Import):
        names = [(layout.module(a.name, 1), a.asname) for a in node.names]
        if all(new == a.name for (new, _), a in zip(names, node.names, strict=True)):
            return None
        for (new, alias), a in zip(names, node.names, strict=True):
            if alias is None and new != a.name:
                print(f"  note: 'import {a.name}' became 'import {new}': its uses need an edit")
        return "import " + ", ".join(n if a is None else f"{n} as {a}" for n, a in names)
    if node.level or node.module is None:
        return None
    groups: dict[str, list[str]] = {}
    for a in node.names:
        full = f"{node.module}.{a.name}"
        if full in layout.modules:  # a module imported from its package
            parent, last = layout.modules[full].rsplit(".", 1)
            alias = a.asname or (a.name if last != a.name else None)
            groups.setdefault(parent, []).append(last if alias is None else f"{last} as {alias}")
            continue
        if node.module in layout.reexports and a.name in layout.reexports[node.module]:
            target = node.module
        elif node.module in layout.reexports:
            target = layout.modules[node.module]
        else:
            target = layout.module(node.module, 1)
        name = a.name if a.asname is None else f"{a.name} as {a.asname}"
        groups.setdefault(target, []).append(name)
    before = [a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names]
    if groups == {node.module: before}:
        return None
    return f"\n{indent}".join(f"from {m} import {', '.join(ns)}" for m, ns in groups.items())


def rewrite_all(layout: Layout) -> list[str]:
    """Rewrite every tracked text file; the Python files that changed."""
    changed = []
    for name in tracked():
        if name.startswith(".restructure/"):
            continue
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".wav", ".jpg", ".onnx"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if name.endswith(".py"):
            new = rewrite_python(text, layout, name)
        elif name.endswith(".md"):
            new = rewrap(text, rewrite_words(text, layout))
        else:
            new = rewrite_words(text, layout)
        if new != text:
            path.write_text(new, encoding="utf-8")
            if name.endswith(".py"):
                changed.append(name)
    return changed


def rewrap(old: str, new: str, limit: int = 100) -> str:
    """Markdown ``new`` with each prose line the rewrite made too long pushed into the next."""
    lines = new.split("\n")
    grown = [a != b for a, b in zip(old.split("\n"), lines, strict=True)]
    inside = False
    for i, line in enumerate(lines):
        inside ^= line.lstrip().startswith("```")
        if inside or line.lstrip().startswith(("```", "|", "#")):
            grown[i] = False  # code, tables and headings stay as they are
    i = 0
    while i < len(lines):
        if grown[i] and len(lines[i]) > limit:
            i = _push(lines, grown, i, limit)
        i += 1
    return "\n".join(lines)


def _push(lines: list[str], grown: list[bool], i: int, limit: int) -> int:
    """Move the words past ``limit`` on line ``i`` to the start of its paragraph's next line."""
    while len(lines[i]) > limit:
        line = lines[i]
        cut = line.rfind(" ", 0, limit + 1)
        if cut <= len(line) - len(line.lstrip()):
            break  # one word longer than the line: leave it
        lines[i], tail = line[:cut], line[cut + 1 :]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and not nxt.lstrip().startswith(("- ", "* ", "```", "|", "#")):
            lines[i + 1] = nxt[: len(nxt) - len(nxt.lstrip())] + tail + " " + nxt.lstrip()
            grown[i + 1] = True
        else:
            indent = "  " if line.startswith("- ") else line[: len(line) - len(line.lstrip())]
            lines.insert(i + 1, indent + tail)
            grown.insert(i + 1, True)
        i += 1
    return i


def apply_edits(spec: dict) -> None:
    """The edits no rule makes; each one's old text must be found exactly once."""
    for edit in spec.get("edit", []):
        path = ROOT / edit["file"]
        text = path.read_text(encoding="utf-8")
        if text.count(edit["old"]) != 1:
            sys.exit(
                f"{edit['file']}: expected the text once, found {text.count(edit['old'])}:\n"
                f"{edit['old']}"
            )
        path.write_text(text.replace(edit["old"], edit["new"]), encoding="utf-8")


def sort_imports(changed: list[str]) -> None:
    """Let ruff sort and wrap the rewritten imports (its isort rule, nothing else)."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        sys.exit("ruff not found: install the test extra (pip install -e '.[test]')")
    subprocess.run([ruff, "check", "--quiet", "--select", "I", "--fix", *changed], cwd=ROOT)


def digests(code: str) -> dict[str, dict[str, list[str]]]:
    """Run the digest snippet with the checkout's code (not an installed copy)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"the digest check failed:\n{done.stderr}")
    return json.loads(done.stdout)


def redigest(before: dict, layout: Layout) -> None:
    """Profiles fresh before the move and stale after it get the new digests; no other."""
    after = digests(rewrite_python(DIGESTS, layout))
    by_name = {Path(k).name: v for k, v in after.items()}
    paths = {Path(k).name: Path(k) for k in after}
    for key, old in before.items():
        name = Path(key).name
        if old["stored"] != old["now"]:
            print(f"  {name}: its profile was stale before the move; left as it is")
            continue
        new = by_name[name]["now"]
        if new == old["stored"]:
            continue
        profile = paths[name].with_name(paths[name].stem + ".profile.json")
        text = profile.read_text(encoding="utf-8")
        fields = ("card_digest", "probes_digest")
        for field, was, now in zip(fields, old["stored"], new, strict=True):
            text = text.replace(f'"{field}": "{was}"', f'"{field}": "{now}"')
        profile.write_text(text, encoding="utf-8")
        print(f"  {profile.relative_to(ROOT)}: digests {old['stored']} -> {new}")


def tidy(spec: dict) -> None:
    """Remove the caches left in the emptied folders; name the modules left at the top."""
    for folder in spec["emptied"]["folders"]:
        path = ROOT / folder
        if path.is_dir() and all(p.name == "__pycache__" or p.is_dir() for p in path.rglob("*")):
            shutil.rmtree(path)
    top = sorted(f for f in tracked() if f.count("/") == 1 and f.startswith("orchestrator/"))
    print("  left at the top of the package (the base):", ", ".join(Path(f).name for f in top))


def main() -> None:
    """Move, rewrite, edit, sort, re-digest, stage."""
    if git("status", "--porcelain", "--untracked-files=no").strip():
        sys.exit("the checkout has changes: run this on a clean checkout of main")
    files = tracked()
    spec, layout = read_layout(files)
    print("digests before the move ...")
    before = digests(DIGESTS)
    print(f"moving {len(layout.files)} files ...")
    move(layout)
    read_reexports(spec, layout)
    print("rewriting imports, dotted names and paths ...")
    changed = rewrite_all(layout)
    write_packages(spec)
    apply_edits(spec)
    sort_imports([f for f in tracked() if f.endswith(".py") and not f.startswith(".restructure/")])
    print("re-digesting the built-in profiles ...")
    redigest(before, layout)
    tidy(spec)
    git("add", "-u")
    print(f"done: {len(changed)} Python files rewritten; review `git diff --cached --stat`")


if __name__ == "__main__":
    main()
