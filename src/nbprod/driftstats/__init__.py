"""Drift statistics: how far new data has moved from the training baseline, per column and for the dataset.

The verb is :func:`nbprod.drift` (``drift(reference, current)`` returns a :class:`DriftReport`,
:mod:`nbprod.driftstats.api`). The statistics live in :mod:`nbprod.driftstats.stats`, the choice of
test in :mod:`nbprod.driftstats.choice`. The package is ``driftstats`` so that the name
``nbprod.drift`` is only the function. Importing this package loads no numpy, pandas or scipy; they
load on the first call.
"""

from __future__ import annotations

from .api import drift
from .choice import TESTS, default_test
from .report import ColumnDrift, DriftReport

__all__ = ["drift", "DriftReport", "ColumnDrift", "TESTS", "default_test"]
