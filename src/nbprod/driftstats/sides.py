"""One column, one side: what the drift tests need to know about the reference or the current data.

A side is built either from raw values (a frame: ``exact`` — every statistic equals scipy's) or
from a training-profile column (quantiles, category counts, a bounded sample: statistics are
computed from those summaries and marked approximate where they are). Numeric values are read
once, cleaned the way Evidently cleans them (nulls and ±inf dropped) and sorted once; every
statistic is then a few ``searchsorted`` calls on the sorted array. A side never keeps more than
that one array (exact sides) or O(bins) numbers (profile sides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pandas.api import types as t

from ..data._columns import kind_of, numeric_view
from .choice import INTEGER_CARDINALITY_LIMIT

__all__ = ["Side", "from_series", "from_profile_column", "key_of", "quantiles_sorted", "LOW_CARDINALITY"]

#: Evidently bins numeric columns by value (not by range) when they have at most this many values.
LOW_CARDINALITY = 20
#: Quantile probabilities used when neither side brings its own (a frame reference).
DEFAULT_PROBS = np.linspace(0.0, 1.0, 101)


def key_of(value: Any) -> Any:
    """A category key comparable across a frame and a JSON profile (``True`` and ``"true"`` match)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return float(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)


@dataclass
class Side:
    """What is known about one column on one side (reference or current)."""

    kind: str  # "numeric" | "categorical" | "datetime" | "empty"
    dtype: str
    n: int  # usable (non-null, finite) values
    nulls: int  # missing values (None, NaN, NaT)
    exact: bool = True  # raw values (or every count) are known
    sorted: np.ndarray | None = None  # numeric, exact sides
    counts: dict | None = None  # category (or low-cardinality value) -> count
    other: int = 0  # values outside ``counts`` (a profile's top-k cut-off)
    distinct: int | None = None
    mean: float = math.nan
    std: float = math.nan  # population std (ddof=0), like Evidently's np.std
    min: float = math.nan
    max: float = math.nan
    quantiles: np.ndarray | None = None
    sample: np.ndarray | None = None  # raw reference values from a profile's sample
    numeric_values: bool = False  # values are numbers (also for integer columns read as categories)
    notes: list[str] = field(default_factory=list)
    infinite: int = 0  # ±inf values: dropped like Evidently does, but counted apart from the nulls

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"

    def value_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values, counts)`` of a low-cardinality numeric side, sorted by value."""
        if self.counts is None:
            raise ValueError("no counts")
        values = np.array(sorted(float(k) for k in self.counts), dtype=float)
        return values, np.array([self.counts[v] for v in values], dtype=float)

    def raw(self) -> np.ndarray:
        """The sorted raw values: only exact numeric sides have them (every current side, read from a frame)."""
        if self.sorted is None:
            raise ValueError(f"this {self.kind} side was built from a profile: it has no raw values")
        return self.sorted

    def quantiles_at(self, probs: np.ndarray) -> np.ndarray:
        if self.sorted is not None:
            return quantiles_sorted(self.sorted, probs)
        q = np.asarray(self.quantiles, dtype=float)
        return np.interp(probs, np.linspace(0.0, 1.0, q.size), q)


def quantiles_sorted(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``np.quantile(values, probs)`` (linear method) for an already sorted array, in O(len(probs))."""
    n = values.size
    pos = np.asarray(probs, dtype=float) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    a, b = values[lo], values[hi]
    return a + (b - a) * frac


def _clean_numeric(series) -> tuple[np.ndarray, int, int]:
    """Finite values as float64 (a copy only when needed), the count of missing values and the
    count of ±inf values (both dropped)."""
    values, mask = numeric_view(series)
    if values.dtype.kind == "M" or values.dtype.kind == "m":
        values = values.view("i8")
    if mask is not None:
        values = values[~mask]
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    infinite = 0
    if not finite.all():
        infinite = int(np.isinf(values).sum())
        values = values[finite]
    return values, len(series) - values.size - infinite, infinite


def _sorted_counts(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if sorted_values.size == 0:
        return sorted_values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, sorted_values.size])
    return sorted_values[starts], counts


def from_series(series, *, reference_kind: str | None = None, categorical: bool | None = None) -> Side:
    """A side from raw values. ``reference_kind``/``categorical`` come from the reference when this
    is the current side (the reference decides how a column is read)."""

    dtype = str(series.dtype)
    kind = reference_kind or kind_of(series.dtype)
    if kind == "boolean":
        kind = "categorical"
    if kind == "datetime":
        values, dropped, _ = _clean_numeric(series)
        return Side(kind="datetime", dtype=dtype, n=values.size, nulls=dropped)
    if kind == "numeric":
        values, dropped, infinite = _clean_numeric(series)
        values = np.sort(values)
        side = Side(kind="numeric", dtype=dtype, n=values.size, nulls=dropped, sorted=values, numeric_values=True,
                    infinite=infinite)
        if values.size:
            uniq, freq = _sorted_counts(values)
            side.distinct = int(uniq.size)
            side.mean = float(values.mean())
            side.std = float(values.std())
            side.min, side.max = float(values[0]), float(values[-1])
            if uniq.size <= LOW_CARDINALITY:
                side.counts = {float(u): int(c) for u, c in zip(uniq, freq, strict=True)}
        if categorical is None:
            categorical = t.is_integer_dtype(series.dtype) and (side.distinct or 0) <= INTEGER_CARDINALITY_LIMIT
        if categorical:
            side.kind = "categorical"
            side.counts = {float(u): int(c) for u, c in zip(*_sorted_counts(values), strict=True)}
        return side
    # categorical: strings, objects, categories, booleans
    if isinstance(series.dtype, type(None)):  # pragma: no cover - defensive
        raise TypeError
    counts: dict[Any, int]
    if hasattr(series, "cat"):
        codes = series.cat.codes.to_numpy()
        tallies = np.bincount(codes + 1, minlength=len(series.cat.categories) + 1)
        nulls = int(tallies[0])
        counts = {key_of(c): int(n) for c, n in zip(series.cat.categories, tallies[1:], strict=True) if n}
    else:
        vc = series.value_counts(dropna=True, sort=False)
        counts = {}
        for value, n in zip(vc.index.tolist(), vc.to_numpy().tolist(), strict=True):
            key = key_of(value)
            counts[key] = counts.get(key, 0) + int(n)
        nulls = len(series) - sum(counts.values())
    return Side(kind="categorical", dtype=dtype, n=sum(counts.values()), nulls=nulls, counts=counts,
                distinct=len(counts))


def from_profile_column(col: Any, sample=None) -> Side:
    """A reference side from a profile's ``ColumnProfile`` (and the column of its sample, if any).

    Reads only documented fields: ``kind``, ``dtype``, ``count``, ``null_count``, ``mean``,
    ``std``, ``min``, ``max``, ``quantiles``, ``categories``, ``other_count``, ``distinct_count``.
    """
    kind = getattr(col, "kind", "categorical")
    dtype = str(getattr(col, "dtype", ""))
    n = int(getattr(col, "count", 0) or 0)
    nulls = int(getattr(col, "null_count", 0) or 0)
    categories = getattr(col, "categories", None) or {}
    other = int(getattr(col, "other_count", 0) or 0)
    distinct = getattr(col, "distinct_count", None)
    if kind == "boolean":
        kind = "categorical"
    if kind == "datetime":
        return Side(kind="datetime", dtype=dtype, n=n, nulls=nulls, exact=False)
    if kind == "numeric":
        std = _float(getattr(col, "std", None))
        if n > 1 and math.isfinite(std):
            std = std * math.sqrt((n - 1) / n)  # profiles store the sample std (ddof=1); Evidently uses ddof=0
        quantiles = getattr(col, "quantiles", None)
        side = Side(kind="numeric", dtype=dtype, n=n, nulls=nulls, exact=False, distinct=distinct, numeric_values=True,
                    mean=_float(getattr(col, "mean", None)), std=std, min=_float(getattr(col, "min", None)),
                    max=_float(getattr(col, "max", None)),
                    quantiles=None if quantiles is None else np.asarray([_float(q) for q in quantiles], dtype=float))
        if categories and other == 0:
            side.counts = {float(k): int(v) for k, v in categories.items()}
            side.distinct = len(side.counts)
        if sample is not None:
            values, _, _ = _clean_numeric(sample)
            side.sample = np.sort(values)
        integer = dtype.lower().startswith(("int", "uint"))
        if integer and side.distinct is not None and side.distinct <= INTEGER_CARDINALITY_LIMIT:
            side.kind = "categorical"
            if side.counts is None:
                side.notes.append("category counts estimated from the profile's quantiles")
                side.counts = _counts_from_quantiles(side)
        return side
    counts = {_profile_key(k, kind): int(v) for k, v in categories.items()}
    return Side(kind="categorical", dtype=dtype, n=n, nulls=nulls, exact=other == 0, counts=counts, other=other,
                distinct=int(distinct) if distinct is not None else len(counts) + (1 if other else 0))


def _profile_key(key: Any, kind: str) -> Any:
    if isinstance(key, str) and key.lower() in ("true", "false") and kind in ("boolean", "categorical"):
        return key.lower() if kind == "boolean" else key
    return key_of(key)


def _counts_from_quantiles(side: Side) -> dict:
    """Approximate value counts of a discrete column from its quantile plateaus."""
    if side.quantiles is None:  # no finite value in the profiled column: nothing to count
        return {}
    q = side.quantiles
    values = np.unique(q)
    edges = np.r_[values[:-1] + np.diff(values) / 2, np.inf]
    probs = np.linspace(0.0, 1.0, q.size)
    cdf = np.interp(edges[:-1], q, probs)
    shares = np.diff(np.r_[0.0, cdf, 1.0])
    return {float(v): int(round(s * side.n)) for v, s in zip(values, shares, strict=True)}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
