"""An import a job pays for and never uses, deferred to its first use.

jsonschema — imported by nbformat, so by papermill and every job verb that reads a notebook —
registers checkers for the ``iri`` / ``iri-reference`` formats from ``rfc3987_syntax`` when that
is installed, and ``rfc3987_syntax`` compiles 38 lark grammars when imported: about 1.5 s of CPU,
more than the rest of papermill's imports together, in every fresh ``nbprod run`` process.
nbformat validates notebooks with JSON Schema draft 4, which has no such formats, so a job never
calls them.

:func:`defer_iri_grammars` puts a stand-in under that module's name before jsonschema is first
imported. The stand-in's ``is_valid_syntax`` (the one name jsonschema takes from it) and every
other attribute import the real module on first use, so code in the same process that does check
IRIs gets the same answers, one grammar compile later. Nothing changes when jsonschema or the
module is imported already, or when the module is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["defer_iri_grammars"]

_NAME = "rfc3987_syntax"


def _real() -> types.ModuleType:
    if isinstance(sys.modules.get(_NAME), _Deferred):
        del sys.modules[_NAME]
    return importlib.import_module(_NAME)


class _Deferred(types.ModuleType):
    """``rfc3987_syntax`` until something uses it."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(_real(), attr)


def _is_valid_syntax(term: str, value: str) -> bool:
    return _real().is_valid_syntax(term, value)


def defer_iri_grammars() -> None:
    """Defer ``rfc3987_syntax``'s grammar compilation to its first use (see the module docstring)."""
    if _NAME in sys.modules or "jsonschema" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_NAME)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    stand_in = _Deferred(_NAME, "stands in for rfc3987_syntax until its first use (nbprod.jobs.deferred)")
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin  # tools that walk sys.modules read it (Hypothesis, autoreload): no import
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.is_valid_syntax = _is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in
