"""Which test each column gets: Evidently's default choice, and the catalogue of tests.

The default follows ``evidently.legacy.calculations.stattests.registry._get_default_stattest``
(Evidently 0.7.23) so that nbprod and Evidently flag the same columns:

=====================  ===========================  =====================================
reference rows         numeric column               categorical column
=====================  ===========================  =====================================
≤ 1,000                KS if > 5 distinct values,    chi-square if > 2 distinct values,
                       else chi-square / z-test      else z-test
> 1,000                Wasserstein (normed) if > 5   Jensen–Shannon
                       distinct values, else J–S
=====================  ===========================  =====================================

"distinct values" counts the union of reference and current values. Which columns are
categorical also follows Evidently 0.7's type inference: strings, booleans and categories, and
integer columns with at most 10 distinct reference values (``INTEGER_CARDINALITY_LIMIT``).
p-value tests flag drift below their threshold (KS at or below it, like Evidently), distance
tests at or above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DriftError

__all__ = ["Test", "TESTS", "default_test", "get_test", "INTEGER_CARDINALITY_LIMIT", "SMALL_REFERENCE"]

#: Evidently 0.7 treats integer columns with at most this many distinct values as categorical.
INTEGER_CARDINALITY_LIMIT = 10
#: References up to this many rows get the hypothesis tests, larger ones the distances.
SMALL_REFERENCE = 1000


@dataclass(frozen=True)
class Test:
    """One drift test: how its score reads and when it says "drifted"."""

    name: str
    display: str
    score: str  # "p_value" or "distance"
    threshold: float
    numeric: bool  # applicable to numeric columns
    categorical: bool  # applicable to categorical columns

    def drifted(self, value: float, threshold: float) -> bool:
        if self.score == "p_value":
            return value <= threshold if self.name == "ks" else value < threshold
        return value >= threshold


TESTS: dict[str, Test] = {
    t.name: t
    for t in (
        Test("ks", "K-S p-value", "p_value", 0.05, numeric=True, categorical=False),
        Test("chisquare", "chi-square p-value", "p_value", 0.05, numeric=True, categorical=True),
        Test("z", "Z-test p-value", "p_value", 0.05, numeric=True, categorical=True),
        Test("wasserstein", "Wasserstein distance (normed)", "distance", 0.1, numeric=True, categorical=False),
        Test("jensenshannon", "Jensen-Shannon distance", "distance", 0.1, numeric=True, categorical=True),
        Test("psi", "PSI", "distance", 0.1, numeric=True, categorical=True),
    )
}


#: Tests that compare per-value counts: a numeric column needs few distinct values for them.
COUNT_TESTS = ("chisquare", "z")


def get_test(name: str, column: str, categorical: bool, *, counts: bool = True) -> Test:
    """The test called ``name`` for ``column``, or a :class:`DriftError` saying what exists.

    ``counts``: whether the reference has per-value counts for the column (categorical, or
    numeric with at most ``sides.LOW_CARDINALITY`` values); chi-square and the z-test need them.
    """
    test = TESTS.get(name)
    if test is None:
        raise DriftError(f"unknown drift test {name!r} for column {column!r}", f"use one of: {', '.join(TESTS)}")
    if categorical and not test.categorical:
        raise DriftError(f"test {name!r} needs a numeric column, but {column!r} is categorical",
                         "use chisquare, z, jensenshannon or psi for categorical columns")
    if name in COUNT_TESTS and not categorical and not counts:
        raise DriftError(f"test {name!r} compares value counts, but {column!r} is a continuous numeric column "
                         "(too many distinct values to count)",
                         "use ks, wasserstein, jensenshannon or psi for it, or bin it first (e.g. pd.cut) "
                         "and test the bins")
    return test


def default_test(*, categorical: bool, n_reference: int, n_values: int) -> Test:
    """Evidently's default test for a column (see the module docstring)."""
    if n_reference <= SMALL_REFERENCE:
        if categorical or n_values <= 5:
            return TESTS["chisquare"] if n_values > 2 else TESTS["z"]
        return TESTS["ks"]
    if categorical or n_values <= 5:
        return TESTS["jensenshannon"]
    return TESTS["wasserstein"]
