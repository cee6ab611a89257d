"""Run one drift test on one column: from two sides to a statistic, a score and a decision.

Every branch says whether its result is exact (equal to scipy / Evidently on the raw data) or an
approximation from a profile, and how it was obtained (``method``), so the report can be explicit
about which tests ran on a sample or on quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import stats
from .choice import Test
from .sides import LOW_CARDINALITY, Side

__all__ = ["Outcome", "run_test", "union_values", "distributions"]


@dataclass
class Outcome:
    statistic: float
    score: float  # the p-value or the distance the threshold applies to
    exact: bool
    method: str


def union_values(ref: Side, cur: Side) -> int:
    """Distinct values of reference and current together (Evidently's ``n_values``).

    Only needs to be exact near the decision boundaries (2 and 5 values): a reference with more
    than 5 known distinct values is reported as is, without looking at the current data.
    """
    if ref.distinct is not None and ref.distinct > LOW_CARDINALITY:
        return ref.distinct
    if ref.counts is not None and cur.counts is not None:
        keys = set(ref.counts) | set(cur.counts)
        return len(keys) + (1 if ref.other else 0)
    if ref.counts is not None and cur.sorted is not None:
        return len(set(ref.counts) | set(np.unique(cur.sorted).tolist()))
    return max(ref.distinct or 0, cur.distinct or 0)


def _aligned_counts(ref: Side, cur: Side) -> tuple[list, np.ndarray, np.ndarray, bool]:
    """Counts of both sides over the union of keys; a profile's "other" bucket is kept as one key."""
    ref_counts = ref.counts or {}
    cur_counts = _current_counts(cur)
    keys = list(dict.fromkeys([*ref_counts, *cur_counts]))
    exact = ref.other == 0 and not ref.notes
    r = np.array([ref_counts.get(k, 0) for k in keys], dtype=float)
    c = np.array([cur_counts.get(k, 0) for k in keys], dtype=float)
    if ref.other:
        # current values outside the reference's top-k are the reference's "other" bucket
        in_other = np.array([k not in ref_counts for k in keys])
        c = np.r_[c[~in_other], c[in_other].sum()]
        r = np.r_[r[~in_other], float(ref.other)]
        keys = [k for k, o in zip(keys, in_other, strict=True) if not o] + ["(other)"]
    return keys, r, c, exact


def _counts_method(ref: Side, exact: bool) -> str:
    if exact:
        return "value counts"
    if ref.notes:
        return "value counts estimated from profile quantiles"
    return "profile top-k counts + other"


def _current_counts(cur: Side) -> dict:
    if cur.counts is not None:
        return cur.counts
    if cur.sorted is not None:
        values, counts = np.unique(cur.sorted, return_counts=True)
        return {float(v): int(c) for v, c in zip(values, counts, strict=True)}
    return {}


def run_test(test: Test, ref: Side, cur: Side, *, categorical: bool) -> Outcome:
    """Compute ``test`` on one column (``categorical`` as decided from the reference)."""
    name = test.name
    if name == "ks":
        return _ks(ref, cur)
    if name in ("chisquare", "z"):
        if ref.counts is None:
            return Outcome(math.nan, math.nan, False, f"{name} needs the value counts of a low-cardinality column")
        keys, r, c, exact = _aligned_counts(ref, cur)
        if name == "chisquare":
            statistic, p = stats.chisquare_counts(r, c)
        else:
            statistic, p = _z(ref, cur, keys, r, c)
        return Outcome(statistic, p, exact, _counts_method(ref, exact))
    if name == "wasserstein":
        return _wasserstein(ref, cur)
    if name == "jensenshannon":
        return _jensenshannon(ref, cur, categorical)
    if name == "psi":
        return _psi(ref, cur, categorical)
    raise ValueError(name)  # pragma: no cover - names are checked by choice.get_test


def _z(ref: Side, cur: Side, keys: list, r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    present = [k for k, a, b in zip(keys, r, c, strict=True) if a or b]
    if len(present) <= 1:
        return 0.0, 1.0  # one and the same value on both sides: Evidently's p = 1
    first = sorted(present, key=lambda k: (isinstance(k, str), k))[0]
    i = keys.index(first)
    return stats.ztest_counts(r[i], r.sum(), c[i], c.sum())


def _ks(ref: Side, cur: Side) -> Outcome:
    if ref.sorted is not None:
        statistic, p = stats.ks_2samp(ref.sorted, cur.raw())
        return Outcome(statistic, p, True, "raw values")
    if ref.sample is None or ref.sample.size == 0:
        return Outcome(math.nan, math.nan, False, "no sample in the profile")
    statistic, p = stats.ks_2samp(ref.sample, cur.raw())
    whole = ref.sample.size >= ref.n
    return Outcome(statistic, p, whole,
                   "profile sample (= the whole reference)" if whole else f"profile sample of {ref.sample.size:,} rows")


def _wasserstein(ref: Side, cur: Side) -> Outcome:
    norm = max(ref.std if math.isfinite(ref.std) else 0.0, 0.001)
    if ref.sorted is not None:
        return Outcome(stats.wasserstein_sorted(ref.sorted, cur.raw()) / norm, math.nan, True, "raw values")
    if ref.counts is not None and ref.other == 0:
        rv, rc = ref.value_counts()
        cv, cc = np.unique(cur.raw(), return_counts=True)
        distance = stats.wasserstein_weighted(rv, rc, cv, cc) / norm
        return Outcome(distance, math.nan, not ref.notes, _counts_method(ref, not ref.notes))
    if ref.quantiles is None:
        return Outcome(math.nan, math.nan, False, "no quantiles in the profile")
    probs = np.linspace(0.0, 1.0, ref.quantiles.size)
    cur_q = cur.quantiles_at(probs)
    distance = stats.wasserstein_from_quantiles(ref.quantiles, cur_q, ref.mean, cur.mean) / norm
    return Outcome(distance, math.nan, False, f"profile quantiles ({ref.quantiles.size - 1} bins)")


def _binned(ref: Side, cur: Side, categorical: bool) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """Evidently's ``get_binned_data`` shares (reference, current), without zero filling."""
    low_card = categorical or (ref.distinct is not None and ref.distinct <= LOW_CARDINALITY and ref.counts is not None)
    if low_card:
        _, r, c, exact = _aligned_counts(ref, cur)
        return r / max(ref.n, 1), c / max(cur.n, 1), exact, _counts_method(ref, exact)
    lo = min(ref.min, cur.min)
    hi = max(ref.max, cur.max)
    edges = stats.sturges_edges(lo, hi, ref.n + cur.n)
    c = _histogram(cur.raw(), edges) / cur.n
    if ref.sorted is not None:
        return _histogram(ref.sorted, edges) / ref.n, c, True, "Sturges bins on raw values"
    q = np.asarray(ref.quantiles, dtype=float)
    return stats.masses_from_quantiles(q, edges), c, False, f"Sturges bins from profile quantiles ({q.size - 1} bins)"


def _histogram(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for sorted values (last bin closed, like numpy)."""
    idx = np.searchsorted(sorted_values, edges, side="left")
    idx[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(idx).astype(float)


def _jensenshannon(ref: Side, cur: Side, categorical: bool) -> Outcome:
    r, c, exact, method = _binned(ref, cur, categorical)
    return Outcome(stats.jensenshannon(r, c), math.nan, exact, method)


def _psi(ref: Side, cur: Side, categorical: bool) -> Outcome:
    low_card = categorical or (ref.counts is not None and ref.other == 0)
    if low_card:
        _, r, c, exact = _aligned_counts(ref, cur)
        return Outcome(stats.psi(r / r.sum(), c / c.sum()), math.nan, exact, _counts_method(ref, exact))
    probs = np.linspace(0.1, 0.9, 9)
    deciles = np.unique(ref.quantiles_at(probs))
    edges = np.r_[-np.inf, deciles, np.inf]
    c = _decile_hist(cur.raw(), edges) / cur.n
    if ref.sorted is not None:
        r = _decile_hist(ref.sorted, edges) / ref.n
        return Outcome(stats.psi(r, c), math.nan, True, "reference decile bins")
    q = np.asarray(ref.quantiles, dtype=float)  # as ref.quantiles_at read them
    grid = np.linspace(0.0, 1.0, q.size)
    cdf = np.interp(deciles, q, grid)
    r = np.diff(np.r_[0.0, cdf, 1.0])
    return Outcome(stats.psi(r, c), math.nan, False, "reference decile bins from profile quantiles")


def _decile_hist(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``[edges[i], edges[i+1])``, like ``np.histogram`` with infinite outer edges."""
    return np.diff(np.searchsorted(sorted_values, edges, side="left")).astype(float)


#: A category is named in a report only when at least this many rows on one side hold it …
MIN_LABEL_COUNT = 5
#: … and the column is not near-unique (distinct values above this share of the rows: ids, emails).
NEAR_UNIQUE = 0.5
RARE = "(rare values)"


def _near_unique(side: Side) -> bool:
    return side.distinct is not None and side.n > 0 and side.distinct > NEAR_UNIQUE * side.n


def distributions(ref: Side, cur: Side, categorical: bool, *, bins: int = 20, top: int = 15) -> dict:
    """Small reference/current distributions for charts: shares per bin or per category (O(bins)).

    Reports hold summaries, never raw rows: categories held by fewer than ``MIN_LABEL_COUNT``
    rows on both sides, and every category of a near-unique column (ids, emails), are shown
    together as one unnamed "(rare values)" bar instead of by value.
    """
    if categorical or not ref.numeric:
        keys, r, c, _ = _aligned_counts(ref, cur)
        named = np.maximum(r, c) >= MIN_LABEL_COUNT
        if _near_unique(ref) or _near_unique(cur):
            named[:] = False
        if ref.other:
            named[-1] = True  # the profile's "(other)" bucket is an aggregate, not a value
        if not named.all():
            keys = [k for k, n in zip(keys, named, strict=True) if n] + [RARE]
            r = np.r_[r[named], r[~named].sum()]
            c = np.r_[c[named], c[~named].sum()]
        r = r / max(r.sum(), 1)
        c = c / max(c.sum(), 1)
        order = np.argsort(-(r + c))[:top]
        return {"type": "categorical", "labels": [str(keys[i]) for i in order],
                "reference": [float(r[i]) for i in order], "current": [float(c[i]) for i in order]}
    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {"type": "none"}
    if hi == lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    c = _histogram(cur.raw(), edges) / max(cur.n, 1)
    if ref.sorted is not None:
        r = _histogram(ref.sorted, edges) / max(ref.n, 1)
    elif ref.quantiles is not None:
        r = stats.masses_from_quantiles(ref.quantiles, edges)
    else:
        r = np.zeros(bins)
    return {"type": "numeric", "edges": [float(e) for e in edges], "reference": [float(x) for x in r],
            "current": [float(x) for x in c]}
