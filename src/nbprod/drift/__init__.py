"""Drift: how far new data has moved from the training baseline, per column and for the dataset.

``drift(reference, current)`` returns a :class:`DriftReport`. The statistics live in
:mod:`nbprod.drift.stats`, the choice of test in :mod:`nbprod.drift.choice`. Importing this
package loads no numpy, pandas or scipy; they load on the first call.
"""

from __future__ import annotations

import sys
import types

from .api import drift
from .choice import TESTS, default_test
from .report import ColumnDrift, DriftReport

__all__ = ["drift", "DriftReport", "ColumnDrift", "TESTS", "default_test"]


class _Verb(types.ModuleType):
    """``nbprod.drift`` is both this package and the verb. Importing any ``nbprod.drift.*`` module
    (``monitor`` does) binds the package to the name ``nbprod.drift``, replacing the lazily
    exported function; calling the package calls the verb, so ``nbprod.drift(ref, cur)`` works
    whichever of the two the name holds."""

    def __call__(self, *args, **kwargs) -> DriftReport:
        return drift(*args, **kwargs)


sys.modules[__name__].__class__ = _Verb
