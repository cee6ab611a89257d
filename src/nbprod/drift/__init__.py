"""Drift: how far new data has moved from the training baseline, per column and for the dataset.

``drift(reference, current)`` returns a :class:`DriftReport`. The statistics live in
:mod:`nbprod.drift.stats`, the choice of test in :mod:`nbprod.drift.choice`. Importing this
package loads no numpy, pandas or scipy; they load on the first call.
"""

from __future__ import annotations

from .api import drift
from .choice import TESTS, default_test
from .report import ColumnDrift, DriftReport

__all__ = ["drift", "DriftReport", "ColumnDrift", "TESTS", "default_test"]
