"""One mechanism for lazy public names: each package's ``__init__.pyi`` is the list (nbprod/_lazy.py).

What a type checker reads (the stub, parsed here with ``ast`` as mypy would) and what Python
exposes at run time (``__all__``, ``dir()``, attribute access) must be the same names bound to
the same objects; every name resolves; no submodule import rebinds a public name.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nbprod
from nbprod._lazy import stub_names

SRC = Path(nbprod.__file__).resolve().parent
STUBS = sorted(SRC.rglob("__init__.pyi"))
PACKAGES = [".".join(("nbprod", *p.parent.relative_to(SRC).parts)) for p in STUBS]


def typed_names(package: str, stub: Path) -> dict[str, tuple[str, str | None]]:
    """The stub as a type checker reads it: every ``from … import x as y`` at its top level."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        assert isinstance(node, ast.ImportFrom) and node.level >= 1, \
            f"{stub}:{node.lineno}: a lazy stub holds only relative 'from .x import y as y' lines"
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        for alias in node.names:
            public = alias.asname or alias.name
            assert public not in out, f"{stub}: {public} is listed twice"
            out[public] = (f"{base}.{node.module}", alias.name) if node.module else (f"{base}.{alias.name}", None)
    return out


def test_the_lazy_packages_are_the_ones_with_stubs():
    assert set(PACKAGES) >= {"nbprod", "nbprod.monitoring", "nbprod.serving", "nbprod.deployments"}
    for package in PACKAGES:
        init = (SRC.parent / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8")
        assert "attach(__name__, __file__)" in init, f"{package}/__init__.py does not use nbprod._lazy.attach"
        assert "_WHERE" not in init and "_LAZY" not in init and "TYPE_CHECKING" not in init, \
            f"{package}/__init__.py keeps a second table of its names"


@pytest.mark.parametrize("package, stub", list(zip(PACKAGES, STUBS, strict=True)), ids=PACKAGES)
def test_stub_and_runtime_agree(package, stub):
    typed = typed_names(package, stub)
    assert stub_names(package, str(stub)) == typed  # attach reads the stub as the type checker does
    module = importlib.import_module(package)
    assert list(module.__all__) == list(typed)
    assert set(typed) <= set(dir(module)) and set(dir(module)) == set(module.__all__)
    for public, (where, attribute) in typed.items():
        target = importlib.import_module(where)
        expected = target if attribute is None else getattr(target, attribute)
        assert getattr(module, public) is expected, f"{package}.{public} is not {where}.{attribute}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'frobnicate'"):
        module.frobnicate  # noqa: B018 - the attribute access is the test


def test_no_submodule_import_rebinds_a_public_name():
    """Importing ``pkg.x`` binds ``pkg.x`` to the module: a public name may not be a submodule's name
    (unless it is that submodule), or it means whichever was imported first. Checked in a fresh
    interpreter that imports every submodule first, then reads every public name."""
    expected = {p: {n: list(w) for n, w in stub_names(p, str(s)).items()} for p, s in zip(PACKAGES, STUBS, strict=True)}
    code = f"""
import importlib, pkgutil
expected = {expected!r}
for p in expected:
    for info in pkgutil.iter_modules(importlib.import_module(p).__path__):
        importlib.import_module(p + "." + info.name)
wrong = []
for p, names in expected.items():
    for name, (where, attribute) in names.items():
        target = importlib.import_module(where)
        value = target if attribute is None else getattr(target, attribute)
        if getattr(importlib.import_module(p), name) is not value:
            wrong.append(p + "." + name)
assert not wrong, wrong
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("line", ["import os", "from .x import y", "from nbprod.x import y as y", "x: int"])
def test_a_stub_line_attach_cannot_read_is_an_error_naming_it(tmp_path, line):
    stub = tmp_path / "__init__.pyi"
    stub.write_text(f"# a comment\nfrom .a import b as b\n{line}\n", encoding="utf-8")
    with pytest.raises(ImportError, match=rf"__init__.pyi:3: {line!r} is not a lazy public name"):
        stub_names("pkg", str(stub))
