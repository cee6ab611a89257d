"""Out-of-distribution checks, compiled once from a training profile: the one implementation.

``validate.row_flags`` (a frame) and the model server (a request's coerced columns) both call an
:class:`OodChecker`; ``validate()``'s out_of_range check uses the same :func:`bounds`. So the
rules cannot drift apart:

- numeric and datetime columns: a value is out of distribution when it lies outside the seen
  ``[min, max]`` widened by ``tolerance`` × the span (inclusive bounds: the seen extremes are in);
  datetimes are compared as naive UTC; the profile's bounds are finite, so ±inf is out of
  distribution unless the training data had an infinity of that sign;
- categorical and boolean columns: a value is out of distribution when its text is not among the
  seen categories — only when the profile kept the complete set (``other_count == 0``);
- missing values (None, NaN, NaT, NA) are never out of distribution (``validate`` reports nulls),
  nor are columns the profile lacks, nor values that cannot be read as the column's kind (a
  dtype problem, which ``validate`` reports).

Why compiled: a server checks every request, most of them one row. The checker holds plain
Python floats, numpy datetimes and frozensets (it pickles into the server's start-up cache and
unpickles without pandas); a few rows are checked with plain comparisons (microseconds), many
rows with vectorised numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ..config import settings
from ..errors import DataError

# pandas, and ._columns (which imports it), are imported in the functions that need them: the
# model server imports this module on every start, and a start from its cache never loads pandas.

__all__ = ["OodChecker", "RangeCheck", "CategoryCheck", "Coded", "Masked", "bounds", "resolve_tolerance", "SMALL"]

#: Up to this many rows, values are checked one by one in Python (cheaper than numpy's set-up).
SMALL = 64


def resolve_tolerance(tolerance: float | None) -> float:
    """``tolerance`` as a float ≥ 0 (default: ``settings.range_tolerance``), else a DataError."""
    tolerance = settings.range_tolerance if tolerance is None else tolerance
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise DataError(f"tolerance {tolerance!r} is not a number",
                        "pass a fraction of the seen range, e.g. 0.05") from None
    if tolerance != tolerance or tolerance == float("inf"):
        raise DataError(f"tolerance {tolerance} is not a finite number",
                        "pass a fraction ≥ 0 of the seen range, e.g. 0.05 (0: the exact seen range)")
    if not tolerance >= 0:
        raise DataError(f"tolerance {tolerance} is negative", "pass a fraction ≥ 0 of the seen range, e.g. 0.05")
    return tolerance


def _timestamp(value: Any) -> np.datetime64:
    """An ISO string or timestamp as naive UTC ``datetime64[ns]``."""
    from . import _columns as C

    return C.to_timestamp(value)


def bounds(col: Any, tolerance: float) -> tuple[Any, Any]:
    """The seen ``[min, max]`` of a profile column widened by ``tolerance`` × its span.

    Numbers stay Python numbers (ints of an int column stay exact when ``tolerance`` is 0);
    datetimes become naive UTC ``datetime64[ns]``. The one bound computation of nbprod: used by
    ``validate()`` (out_of_range), ``row_flags`` and the model server.
    """
    if col.kind == "datetime":
        lo, hi = _timestamp(col.min), _timestamp(col.max)
    else:
        lo, hi = col.min, col.max
    if tolerance:
        slack = (hi - lo) * tolerance
        lo, hi = lo - slack, hi + slack
    return lo, hi


@dataclass(frozen=True)
class RangeCheck:
    """Values of ``name`` must lie in ``[lo, hi]`` (``kind``: ``numeric`` or ``datetime``);
    ``neg_inf_ok`` / ``pos_inf_ok``: -inf / +inf pass too (the training data had them)."""

    name: str
    kind: str
    lo: Any
    hi: Any
    neg_inf_ok: bool = False
    pos_inf_ok: bool = False


@dataclass(frozen=True)
class CategoryCheck:
    """Values of ``name`` must be among ``seen`` (compared by their text)."""

    name: str
    seen: frozenset


@dataclass
class Coded:
    """A column given as integer codes into ``labels`` (-1 = missing), e.g. a pandas Categorical."""

    codes: np.ndarray
    labels: list

    def __len__(self) -> int:
        return len(self.codes)


@dataclass
class Masked:
    """A numeric column as its data plus a mask of missing values (pandas' nullable dtypes)."""

    values: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    name = type(v).__name__
    if name in ("NAType", "NaTType"):
        return True
    if isinstance(v, (np.floating, np.datetime64, np.timedelta64)):
        return bool(np.isnan(v)) if isinstance(v, np.floating) else bool(np.isnat(v))
    return False


def _py(v: Any) -> Any:
    """A numpy scalar as a Python one (for messages and text comparisons)."""
    return v.item() if isinstance(v, np.generic) and not isinstance(v, (np.datetime64, np.timedelta64)) else v


def _text_seen(v: Any, seen: frozenset) -> bool:
    """Is ``v`` (not missing) one of the seen categories? Lenient: ``1`` matches ``"1"``."""
    if isinstance(v, str):
        return v in seen
    return str(_py(v)) in seen or str(v) in seen


def _show(v: Any) -> str:
    if isinstance(v, (np.datetime64,)) or type(v).__name__ == "Timestamp":
        from . import _columns as C

        return str(C.iso(v))
    return str(_py(v))


class OodChecker:
    """Per-column ranges and category sets from a profile; checks frames or request columns.

    Build it once with :meth:`from_profile`; then :meth:`flags` (request columns: a dict of
    arrays/lists) or :meth:`check_frame` (a DataFrame). Empty (``len() == 0``) when the profile
    gives nothing to check.
    """

    def __init__(self, ranges: Iterable[RangeCheck] = (), categories: Iterable[CategoryCheck] = (),
                 tolerance: float = 0.0) -> None:
        self.ranges = tuple(ranges)
        self.categories = tuple(categories)
        self.tolerance = tolerance

    @classmethod
    def from_profile(cls, profile: Any, tolerance: float | None = None) -> OodChecker:
        """Compile the checks of ``profile`` (a :class:`~nbprod.data.profile.Profile`)."""
        columns = getattr(profile, "columns", None)
        if not isinstance(columns, dict):
            raise DataError(f"an OOD checker needs a Profile, got {type(profile).__name__}",
                            "pass nbprod.profile(training_df) or Profile.load(path)")
        tolerance = resolve_tolerance(tolerance)
        ranges, categories = [], []
        for name, col in columns.items():
            if col.kind in ("numeric", "datetime") and col.min is not None and col.max is not None:
                lo, hi = bounds(col, tolerance)
                ranges.append(RangeCheck(str(name), col.kind, lo, hi, getattr(col, "neg_inf_count", 0) > 0,
                                         getattr(col, "pos_inf_count", 0) > 0))
            elif col.kind in ("categorical", "boolean") and col.count > 0 and col.categories_complete:
                categories.append(CategoryCheck(str(name), frozenset(str(c) for c in col.categories)))
        return cls(ranges, categories, tolerance)

    def __len__(self) -> int:
        return len(self.ranges) + len(self.categories)

    def __repr__(self) -> str:
        return (f"OodChecker({len(self.ranges)} ranges, {len(self.categories)} category sets, "
                f"tolerance {self.tolerance:g})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, OodChecker) and self.ranges == other.ranges
                and self.categories == other.categories and self.tolerance == other.tolerance)

    # --- checking ---------------------------------------------------------------------------------
    def flags(self, cols: Mapping[str, Any], n: int) -> list[list[str]] | None:
        """One list of reasons per row (empty = in distribution), or None when no row is flagged.

        ``cols`` maps column names to numpy arrays, lists, :class:`Masked` or :class:`Coded`
        columns of length ``n``; columns it lacks are not checked.
        """
        reasons: list[list[str]] | None = None
        found_per_check = itertools.chain(
            (_range(chk, values, n) for chk in self.ranges if (values := cols.get(chk.name)) is not None),
            (_unseen(chk, values, n) for chk in self.categories if (values := cols.get(chk.name)) is not None),
        )
        for found in found_per_check:
            if found is not None:
                reasons = reasons or [[] for _ in range(n)]
                for i, why in found:
                    reasons[i].append(why)
        return reasons

    def check_frame(self, df: Any) -> tuple[np.ndarray, list[list[str]]]:
        """``(flags, reasons)`` for every row of a DataFrame (see ``nbprod.data.validate.row_flags``)."""
        n = len(df)
        if n <= SMALL:  # one object matrix, then plain Python comparisons
            matrix = df.to_numpy(dtype=object)
            cols = {str(c): matrix[:, j] for j, c in enumerate(df.columns)}
        else:
            cols = _frame_columns(df, {c.name: c for c in self.ranges}, {c.name for c in self.categories})
        reasons = self.flags(cols, n) or [[] for _ in range(n)]
        return np.fromiter((bool(r) for r in reasons), dtype=bool, count=n), reasons


# --- one column ------------------------------------------------------------------------------------
def _below(chk: RangeCheck, v: Any) -> str:
    return f"{chk.name}={_show(v)} below the seen min {_show(chk.lo)}"


def _above(chk: RangeCheck, v: Any) -> str:
    return f"{chk.name}={_show(v)} above the seen max {_show(chk.hi)}"


def _range(chk: RangeCheck, values: Any, n: int) -> list[tuple[int, str]] | None:
    """``[(row, reason), …]`` for values outside ``[lo, hi]``, or None."""
    if n <= SMALL:
        out = None
        lo, hi = chk.lo, chk.hi
        if isinstance(values, Masked):
            items = [None if m else v for v, m in zip(values.values.tolist(), values.mask.tolist(), strict=True)]
        elif isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
            items = values.tolist()
        else:
            items = values
        for i, v in enumerate(items):
            if v is None:
                continue
            x = _scalar(chk.kind, v)
            if x is None:
                continue
            if x < lo:
                if chk.neg_inf_ok and x == -np.inf:
                    continue
                out = out or []
                out.append((i, _below(chk, _shown(v, x))))
            elif x > hi:
                if chk.pos_inf_ok and x == np.inf:
                    continue
                out = out or []
                out.append((i, _above(chk, _shown(v, x))))
        return out
    nulls = None
    if isinstance(values, Masked):
        values, nulls = values.values, values.mask
    arr = _datetimes(values) if chk.kind == "datetime" else _floats(values)
    with np.errstate(invalid="ignore"):
        below, above = arr < chk.lo, arr > chk.hi
    if chk.neg_inf_ok:
        below &= arr != -np.inf
    if chk.pos_inf_ok:
        above &= arr != np.inf
    bad = below | above
    if nulls is not None:
        bad &= ~nulls
    if not bad.any():
        return None
    return [(int(i), (_below if below[i] else _above)(chk, _shown(values[i], arr[i]))) for i in np.flatnonzero(bad)]


def _shown(original: Any, compared: Any) -> Any:
    """The value a reason shows: as compared (a float, a UTC time), but integers stay integers."""
    if isinstance(original, (int, np.integer)) and not isinstance(original, (bool, np.bool_)):
        return original
    return compared


def _scalar(kind: str, v: Any) -> Any:
    """One value as something comparable with the bounds, or None (missing / unreadable)."""
    if kind == "datetime":
        if _is_missing(v):
            return None
        try:
            return v if isinstance(v, np.datetime64) and v.dtype == "M8[ns]" else _timestamp(v)
        except (TypeError, ValueError, OverflowError):
            return None
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        return None  # not comparable: validate() reports the dtype problem
    return None if x != x else x


def _floats(values: Any) -> np.ndarray:
    """Values as float64 with NaN for missing or unreadable ones (lenient: numbers sent as text)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values if values.dtype == np.float64 else values.astype(np.float64)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        out = [_scalar("numeric", v) for v in values]
        return np.array([np.nan if x is None else x for x in out], dtype=np.float64)


def _datetimes(values: Any) -> np.ndarray:
    """Values as naive UTC datetime64[ns] (NaT for missing or unreadable ones)."""
    if isinstance(values, np.ndarray) and values.dtype == "M8[ns]":
        return values
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).to_numpy(dtype="M8[ns]")


def _unseen(chk: CategoryCheck, values: Any, n: int) -> list[tuple[int, str]] | None:
    """``[(row, reason), …]`` for values not among the seen categories, or None."""
    seen = chk.seen
    if isinstance(values, Coded):
        lut = np.array([not _text_seen(v, seen) for v in values.labels] + [False], dtype=bool)  # slot -1: missing
        codes, labels = values.codes, values.labels
    elif n <= SMALL:
        out = None
        for i, v in enumerate(values):
            if v is None or _is_missing(v) or _text_seen(v, seen):
                continue
            out = out or []
            out.append((i, f"{chk.name}={_py(v)!r} is an unseen category"))
        return out
    elif isinstance(values, (list, tuple)) or isinstance(values, np.ndarray) and values.dtype == object:
        try:  # request columns: the distinct values decide, rows are scanned only when one is unseen
            unseen = {v for v in set(values) if not _is_missing(v) and not _text_seen(v, seen)}
        except TypeError:  # unhashable values: one by one
            return _unseen(chk, values, 0)
        if not unseen:
            return None
        return [(i, f"{chk.name}={_py(v)!r} is an unseen category") for i, v in enumerate(values) if v in unseen]
    else:
        import pandas as pd

        try:
            codes, labels = pd.factorize(pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values)
        except TypeError:  # unhashable values: one by one
            return _unseen(chk, list(values), 0)
        labels = list(labels)
        lut = np.array([not _text_seen(v, seen) for v in labels] + [False], dtype=bool)
    if not lut.any():
        return None
    bad = lut[codes]
    if not bad.any():
        return None
    return [(int(i), f"{chk.name}={_py(labels[codes[i]])!r} is an unseen category") for i in np.flatnonzero(bad)]


def _frame_columns(df: Any, ranges: dict[str, RangeCheck], categories: set[str]) -> dict[str, Any]:
    """The checked columns of a big frame as arrays, without copies where pandas allows."""
    import pandas as pd

    from . import _columns as C

    cols: dict[str, Any] = {}
    for c in df.columns:
        name = str(c)
        series = df[c]
        if name in ranges:
            if ranges[name].kind == "datetime":
                kind = C.kind_of(series.dtype)
                cols[name] = (C.datetime_view(series) if kind == "datetime"
                              else _datetimes(series.to_numpy(dtype=object)))
                continue
            if C.kind_of(series.dtype) in ("numeric", "boolean"):
                values, nulls = C.numeric_view(series)
                cols[name] = values if nulls is None else Masked(values, nulls)
            else:
                cols[name] = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        elif name in categories:
            if isinstance(series.dtype, pd.CategoricalDtype):
                cols[name] = Coded(series.cat.codes.to_numpy(), list(series.cat.categories))
            else:
                cols[name] = series
    return cols
