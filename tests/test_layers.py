"""Nothing imports upward: every import of every module under src/nbprod against the layer table.

The order is written once, in docs/design-notes.md ("## Layers"); this test parses it. Every
import counts — at the top, inside a function, under ``TYPE_CHECKING``, in a package's lazy
``__init__.pyi``, and
``importlib.import_module("nbprod.…")`` with a literal name — because a function-local import
hides a cycle from import time, not from a reader.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "nbprod"
NOTES = ROOT / "docs" / "design-notes.md"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "nbprod.serving.app"
    target: str  # the imported module, e.g. "nbprod.monitoring.http"
    name: str | None  # the name taken from it (None: the module itself)
    line: int

    def where(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}{'.' + self.name if self.name else ''}"


def layer_table(text: str) -> tuple[dict[str, int], str | None]:
    """{top-level name: rank (0 = top)} from the table under "## Layers", and the module named on
    the "Bottom of the request path:" line."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    ranks: dict[str, int] = {}
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past header and rule
    for rank, row in enumerate(rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`([^`]+)`", cells[1]):
            assert name not in ranks, f"{name} is listed twice in the layer table"
            ranks[name] = rank
    bottom = re.search(r"^Bottom of the request path: `([^`]+)`", section, re.M)
    return ranks, bottom.group(1) if bottom else None


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


@functools.lru_cache(maxsize=None)
def _nodes(path: Path, text: str) -> tuple[ast.AST, ...]:
    """Every node of a module, parsed once per text: the check walks each module three times and the
    planted-violation tests run it six times (re-parsing all of src/ cost ~15 s of CPU)."""
    return tuple(ast.walk(ast.parse(text, str(path))))


def nodes(path: Path) -> tuple[ast.AST, ...]:
    return _nodes(path, path.read_text(encoding="utf-8"))


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of an nbprod module in ``path`` (wherever it stands in the file)."""
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    out: list[Import] = []
    for node in nodes(path):
        if isinstance(node, ast.Import):
            out += [Import(module, a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "nbprod"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "nbprod":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append(Import(module, sub, None, node.lineno) if sub in known
                           else Import(module, target, a.name, node.lineno))
        elif isinstance(node, ast.Call) and _literal_import(node):
            out.append(Import(module, node.args[0].value, None, node.lineno))
    return out


def _literal_import(call: ast.Call) -> bool:
    """``importlib.import_module("nbprod.…")`` (or ``import_module(...)``) with a literal name."""
    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
    arg = call.args[0] if call.args else None
    return name == "import_module" and isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
        and arg.value.split(".")[0] == "nbprod"


def private_uses(module: str, path: Path, known: set[str]) -> list[str]:
    """``module._x`` and ``from module import _x`` where ``module`` is in another top-level package."""
    mine = _top(module)
    tree = nodes(path)
    aliases: dict[str, str] = {}
    found = []
    imports = imports_of(module, path, known)
    for imp in imports:
        if imp.name and _private(imp.name) and _top(imp.target) != mine:
            found.append(imp.where())
    for node in tree:
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                for imp in imports:
                    if imp.line == node.lineno and imp.name is None and imp.target.endswith("." + a.name):
                        aliases[a.asname or a.name] = imp.target
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name.split(".")[0] == "nbprod":
                    aliases[a.asname] = a.name
    for node in tree:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and _private(node.attr) and _top(aliases[node.value.id]) != mine:
            found.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _top(module: str) -> str:
    """The layer-table name of a module: its first part under nbprod (``__init__`` for nbprod itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(ranks: dict[str, int], bottom: str | None) -> list[str]:
    mods = modules()
    known = set(mods)
    bad = []
    # a package's __init__.pyi lists its lazy public names (nbprod/_lazy.py): its imports count too
    stubs = {module: path.with_suffix(".pyi") for module, path in mods.items() if path.with_suffix(".pyi").is_file()}
    for module, path in sorted(mods.items()) + sorted(stubs.items()):
        src = _top(module)
        for imp in imports_of(module, path, known):
            dst = _top(imp.target)
            if src == dst:
                continue
            if ranks[dst] < ranks[src]:
                bad.append(f"{imp.where()}: {src} may not import {dst}, a higher layer")
            elif src == bottom and ranks[dst] == ranks[src]:
                bad.append(f"{imp.where()}: {src} is the bottom of the request path and imports no other "
                           f"module of its layer")
        bad += [f"{use}: a private name of another package" for use in private_uses(module, path, known)]
    return bad


def test_every_module_has_a_layer():
    ranks, bottom = layer_table(NOTES.read_text(encoding="utf-8"))
    unplaced = sorted({_top(m) for m in modules()} - set(ranks))
    assert not unplaced, f"add these to the layer table in docs/design-notes.md: {unplaced}"
    assert bottom in ranks and ranks["serving"] == ranks["registry"] < ranks["data"] < ranks["config"]


def test_no_module_imports_a_higher_layer_or_a_private_name_of_another_package():
    ranks, bottom = layer_table(NOTES.read_text(encoding="utf-8"))
    found = violations(ranks, bottom)
    assert not found, "layer violations:\n" + "\n".join(found)


@pytest.mark.parametrize("code, expected", [
    ("from ..monitoring.http import feedback_endpoint", "bottom of the request path"),  # another capability
    ("def f():\n    from ..service import serve\n", "serving may not import service"),  # hidden in a function
    ("from ..registry.versions import _mlflow_call", "a private name of another package"),
    ("from ..deployments import process\nprocess._popen", "a private name of another package"),
    ("import importlib\nimportlib.import_module('nbprod.cli')", "serving may not import cli"),
])
def test_the_check_catches(tmp_path, monkeypatch, code, expected):
    """The check itself: a violation planted as a module of serving/ (written under tmp_path) is reported."""
    ranks, bottom = layer_table(NOTES.read_text(encoding="utf-8"))
    original = modules

    def with_planted() -> dict[str, Path]:
        out = original()
        path = tmp_path / "_planted_for_test_layers.py"
        path.write_text(code, encoding="utf-8")
        out["nbprod.serving._planted_for_test_layers"] = path
        return out

    monkeypatch.setitem(globals(), "modules", with_planted)
    found = [v for v in violations(ranks, bottom) if "_planted_for_test_layers" in v]
    assert any(expected in v for v in found), found
