"""Lazy public names, read from the package's ``.pyi`` stub: one list, for type checkers and for Python.

A package that exports names lazily lists them in the stub next to its ``__init__.py``, one
``from .module import name as name`` line each (``from . import module as module`` for a
submodule). Type checkers and IDEs read the stub for the types; :func:`attach` reads the same
lines at import and builds the package's ``__getattr__``, ``__dir__`` and ``__all__``, so no
second table exists to fall out of step (in the manner of ``lazy_loader.attach_stub``)::

    # nbprod/monitoring/__init__.py
    from .._lazy import attach

    __getattr__, __dir__, __all__ = attach(__name__, __file__)

A name's module is imported on first access and the value kept in the package's namespace, so
the next access is a plain attribute. The stub is read line by line rather than with ``ast``:
this runs inside ``import nbprod``, whose cost ``tests/test_import.py`` and
``benchmarks/bench_import.py`` watch; ``tests/test_lazy.py`` checks that ``ast`` reads every
stub the same way.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not loaded at run time: this module sits on `import nbprod`'s path
    from typing import Any, Callable

__all__ = ["attach", "stub_names"]


def stub_names(package: str, stub: str) -> dict[str, tuple[str, str | None]]:
    """{public name: (module, attribute or None for the module itself)} from the stub at path
    ``stub``, in its order. Every line is blank, a comment, or ``from .x import y as z``."""
    with open(stub, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out: dict[str, tuple[str, str | None]] = {}
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0].split()
        if not code:
            continue
        if len(code) != 6 or code[0] != "from" or code[2] != "import" or code[4] != "as" \
                or not code[1].startswith("."):
            raise ImportError(f"{stub}:{number}: {line.strip()!r} is not a lazy public name: write one "
                              "'from .module import name as public' per line")
        relative, name, public = code[1], code[3], code[5]
        module = relative.lstrip(".")
        level = len(relative) - len(module)
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        if module:
            out[public] = (f"{base}.{module}", name)
        else:  # `from . import x as x`: the submodule x
            out[public] = (f"{base}.{name}", None)
    return out


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, from the ``__init__.pyi`` beside ``init_file``."""
    names = stub_names(package, init_file[: -len(".py")] + ".pyi")
    public = list(names)

    def __getattr__(name: str) -> Any:
        try:
            module_name, attribute = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__, public
