"""State-DB tables defined on first use: importing the module that owns one needs no SQLAlchemy.

``nbprod.state`` imports SQLAlchemy and defines the audit tables; the serving and deployment
modules are imported on light paths (``import nbprod``, the CLI's help, a model server's start)
and define their tables through :class:`LazyTable` instead.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["LazyTable"]


class LazyTable:
    """The state-DB table ``name``, added to :data:`nbprod.state.metadata` from ``columns()`` the
    first time it is used (so :func:`nbprod.state.engine` creates it with the others); the same
    ``Table`` after that. Attributes (``.c``, ``.insert()``, ``.create()``) are the table's."""

    def __init__(self, name: str, columns: Callable[[], list]) -> None:
        self.name = name
        self._columns = columns

    def table(self):
        from . import state

        found = state.metadata.tables.get(self.name)
        if found is None:
            from sqlalchemy import Table

            found = Table(self.name, state.metadata, *self._columns())
        return found

    def __getattr__(self, item: str) -> Any:
        return getattr(self.table(), item)
