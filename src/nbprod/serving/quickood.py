"""A quick "is any row out of distribution?" in front of the OOD checker, on the request path.

Why: :meth:`nbprod.data.ood.OodChecker.flags` builds every reason row by row — right when a row is
flagged, and most of a request's OOD cost when none is (a loop per check, per row). Almost every
request is inside the training distribution, so :class:`QuickOod` first asks the cheap question
for every check at once — numeric columns compared with their bounds as arrays, categorical columns
as the set of their distinct values — and only when some value may be flagged (or a column is of an
unusual kind) runs the checker for its reasons. So the flags are always exactly the checker's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.ood import OodChecker
from .codecs import Coerced

__all__ = ["QuickOod"]

_SMALL = 32


class QuickOod:
    """``flags(cols, n)`` = ``checker.flags(cols, n)``, answered None without it when nothing is flagged."""

    def __init__(self, checker: OodChecker) -> None:
        self.checker = checker
        # datetime ranges compare timestamps: left to the checker (``quick`` is then never sure)
        self.quick = all(r.kind == "numeric" for r in checker.ranges)
        self.ranges = [(r.name, float(r.lo), float(r.hi)) for r in checker.ranges] if self.quick else []
        self.categories = [(c.name, c.seen) for c in checker.categories]
        self._wiring: tuple[tuple, Any] | None = None

    def flags(self, cols: dict[str, Any], n: int) -> list[list[str]] | None:
        if self.quick and self._inside(cols):
            return None
        return self.checker.flags(cols, n)

    def _wired(self, numeric: tuple) -> tuple[list, list, np.ndarray, np.ndarray, list]:
        """For a :class:`Coerced` with these numeric columns: the ranges on them as ``(row, lo, hi)`` and as
        bound vectors over every row of its matrix (±inf where there is no range), and the other ranges."""
        wiring = self._wiring
        if wiring is None or wiring[0] is not numeric:
            where = {name: j for j, name in enumerate(numeric)}
            on = [(where[name], lo, hi) for name, lo, hi in self.ranges if name in where]
            lows, highs = np.full((len(numeric), 1), -np.inf), np.full((len(numeric), 1), np.inf)
            for j, lo, hi in on:
                lows[j, 0], highs[j, 0] = max(lows[j, 0], lo), min(highs[j, 0], hi)
            rest = [r for r in self.ranges if r[0] not in where]
            wiring = self._wiring = (numeric, (on, [j for j, _, _ in on], lows, highs, rest))
        return wiring[1]

    def _inside(self, cols: dict[str, Any]) -> bool:
        """True only when no value can be flagged (missing values never are; NaN compares false)."""
        ranges = self.ranges
        if type(cols) is Coerced and ranges:  # the numeric columns as one matrix: all ranges at once
            on, rows, lows, highs, ranges = self._wired(cols.numeric)
            matrix = cols.matrix
            if matrix.shape[1] == 1:  # one row: Python comparisons, no numpy call
                row = cols.row
                for j, lo, hi in on:
                    x = row[j]
                    if x < lo or x > hi:  # NaN compares false: a missing value is never flagged
                        return False
            elif rows and ((matrix < lows).any() or (matrix > highs).any()):  # NaN compares false
                return False
        for name, lo, hi in ranges:
            values = cols.get(name)
            if values is None:
                continue
            if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiu" or not values.size:
                return False
            if values.size <= _SMALL:  # a few values: Python comparisons beat numpy's per-call cost
                for x in values.tolist():
                    if x < lo or x > hi:  # NaN compares false: a missing value is never flagged
                        return False
            elif np.fmin.reduce(values) < lo or np.fmax.reduce(values) > hi:  # fmin/fmax skip NaN
                return False
        distinct_of = cols.distinct if type(cols) is Coerced else None  # coerce's sets of distinct values
        for name, seen in self.categories:
            values = cols.get(name)
            if values is None:
                continue
            if type(values) is not list:
                return False
            if len(values) == 1:  # one row: {v} <= seen, or v is None (never flagged), without making the set
                v = values[0]
                if v is not None and v not in seen:
                    return False
                continue
            distinct = distinct_of.get(name) if distinct_of is not None else None
            if distinct is None:
                distinct = set(values)
            if not distinct <= seen and not (None in distinct and distinct - {None} <= seen):
                return False  # seen holds text: anything else (1 for "1") goes to the checker
        return True

    def __len__(self) -> int:
        return len(self.checker)
