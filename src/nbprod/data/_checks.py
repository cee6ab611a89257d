"""Vectorised column checks shared by profile-based and rule-based validation.

Each check looks at one column at a time and is built so that a *clean* column costs one or two
reductions (min/max, a null count, a look-up over the categories) and allocates no row mask; a
boolean mask of bad rows is materialised only for a column that fails, and is reduced at once to
a count and a handful of example positions. That keeps validation of a 1M-row frame close to
the cost of a hand-written numpy check, with memory bounded by one mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from ..config import settings
from . import _columns as C

__all__ = ["Failure", "Collector", "null_mask", "range_mask", "numeric_nulls_and_range", "unseen_mask", "dtype_problem", "duplicate_mask",
           "rule_dtype_ok"]


@dataclass
class Failure:
    """One failed check: which column, which check, how many rows, a few example rows, a message.

    ``check`` is one of ``missing_column``, ``extra_column``, ``dtype``, ``nulls``,
    ``out_of_range``, ``unseen_category``, ``duplicate_key`` or ``rule:<name>``. ``examples``
    holds up to ``settings.max_examples`` rows as dicts; the row's index label is under
    ``"index"`` (``"_index"`` if the frame has a column called ``index``).
    """

    column: str | None
    check: str
    count: int
    examples: list[dict] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Collector:
    """Turns bad-row masks into :class:`Failure` records (count + examples), one column at a time."""

    def __init__(self, df: pd.DataFrame, key: list[str] | None = None) -> None:
        self.df = df
        self.key = key or []
        self.failures: list[Failure] = []
        self.max_examples = int(settings.max_examples)
        self._names = {str(c): c for c in df.columns}

    def add(self, column: str | None, check: str, mask: np.ndarray | None, message: str | Callable[[int], str],
            *, count: int | None = None) -> None:
        """Record a failure. ``mask`` marks the bad rows (None: no rows to show, e.g. a missing column)."""
        positions = np.empty(0, dtype=np.intp)
        if mask is None and count is None:  # the check found nothing
            return
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            n_bad = int(np.count_nonzero(mask))
            if n_bad == 0:
                return
            positions = np.flatnonzero(mask)[: self.max_examples]
            count = n_bad if count is None else count
        text = message(int(count or 0)) if callable(message) else message
        self.failures.append(Failure(column=column, check=check, count=int(count or 0), message=text,
                                     examples=self.examples(positions, column)))

    def examples(self, positions: np.ndarray, column: str | None) -> list[dict]:
        if not len(positions):
            return []
        df = self.df
        order = [c for c in ([column] if column else []) + self.key if c in self._names]
        order += [c for c in self._names if c not in order][: max(0, 20 - len(order))]
        rows = df.iloc[positions]
        index_key = "_index" if "index" in self._names else "index"
        index = [C.json_scalar(v) for v in rows.index.tolist()]
        cols = {c: C.json_list(rows[self._names[c]]) for c in order}
        return [{index_key: index[i], **{c: cols[c][i] for c in order}} for i in range(len(positions))]


def pct(count: int, n: int) -> str:
    return f"{count / n:.2%}" if n else "-"


# --- primitive checks: each returns None on a clean column ------------------------------------
def null_mask(series: pd.Series) -> np.ndarray | None:
    """Mask of missing values, or None when there are none (cheap for clean float columns)."""
    kind = C.kind_of(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        if not len(codes) or codes.min() >= 0:
            return None
        return codes < 0
    if kind in ("numeric", "boolean"):
        values, mask = C.numeric_view(series)
        if mask is not None:
            return mask if mask.any() else None
        if values.dtype.kind == "f" and len(values) and np.isnan(values.min()):
            return np.isnan(values)
        return None
    if kind == "datetime":
        nat = np.isnat(C.datetime_view(series))
        return nat if nat.any() else None
    mask = series.isna().to_numpy()
    return mask if mask.any() else None


def range_mask(series: pd.Series, kind: str, lo: Any, hi: Any) -> tuple[np.ndarray, int, int] | None:
    """``(bad_mask, n_below, n_above)`` for values outside ``[lo, hi]`` (None bounds are open), or None."""
    if kind == "datetime":
        values = C.datetime_view(series)
        valid = values[~np.isnat(values)]
        lo = None if lo is None else C.to_timestamp(lo)
        hi = None if hi is None else C.to_timestamp(hi)
        mask = None
    else:
        values, mask = C.numeric_view(series)
        valid = values if mask is None else values[~mask]
    if not len(valid):
        return None
    if kind == "datetime":
        vmin, vmax = valid.min(), valid.max()
    else:
        vmin, vmax = np.fmin.reduce(valid), np.fmax.reduce(valid)
        if vmin != vmin:  # all NaN
            return None
    if (lo is None or vmin >= lo) and (hi is None or vmax <= hi):
        return None
    below = np.zeros(len(values), dtype=bool) if lo is None else values < lo
    above = np.zeros(len(values), dtype=bool) if hi is None else values > hi
    if mask is not None:
        below &= ~mask
        above &= ~mask
    n_below, n_above = int(np.count_nonzero(below)), int(np.count_nonzero(above))
    below |= above
    return below, n_below, n_above


def numeric_nulls_and_range(series: pd.Series, want_nulls: bool, lo: Any, hi: Any):
    """Null and range checks of a numeric column in as few passes as possible.

    Returns ``(null_mask_or_None, range_result_or_None)`` like :func:`null_mask` and
    :func:`range_mask`. A clean float column without nulls costs exactly two reductions (min,
    max): a NaN shows up as a NaN minimum, and only then is a null mask built.
    """
    values, mask = C.numeric_view(series)
    if not len(values):
        return None, None
    if mask is None:
        vmin = values.min()
        if vmin != vmin:  # NaN present (float): missing values
            nan = np.isnan(values)
            nulls = nan if want_nulls else None
            if nan.all():
                return nulls, None
            vmin, vmax = np.fmin.reduce(values), np.fmax.reduce(values)
        else:
            nulls, vmax = None, values.max()
    else:
        nulls = mask if want_nulls and mask.any() else None
        valid = values[~mask]
        if not len(valid):
            return nulls, None
        vmin, vmax = np.fmin.reduce(valid), np.fmax.reduce(valid)
    if (lo is None or vmin >= lo) and (hi is None or vmax <= hi):
        return nulls, None
    return nulls, range_mask(series, "numeric", lo, hi)


def unseen_mask(series: pd.Series, allowed: Iterable[Any]) -> tuple[np.ndarray, list[str]] | None:
    """``(bad_mask, first unseen values)`` for non-null values not in ``allowed``, or None.

    Values are compared as they are and, failing that, by their text (``str``) — so ``1`` in an
    object column matches the category ``"1"`` of a profile, and ``True`` matches ``"True"``.
    """
    allowed = list(allowed)
    allowed_text = {str(a) for a in allowed}
    kind = C.kind_of(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in series.cat.categories]
        lut = np.zeros(len(labels) + 1, dtype=bool)  # last slot: code -1 (missing)
        bad_codes = [i for i, label in enumerate(labels) if label not in allowed_text]
        if not bad_codes:
            return None
        lut[bad_codes] = True
        bad = lut[series.cat.codes.to_numpy()]
        if not bad.any():
            return None
        present = np.unique(series.cat.codes.to_numpy()[bad])[:5]
        return bad, [labels[i] for i in present]
    if kind in ("numeric", "boolean", "datetime") and len(series):
        if kind == "datetime":
            values = C.datetime_view(series)
            nulls = np.isnat(values)
            targets = []
            for a in allowed:
                try:
                    targets.append(C.to_timestamp(a))
                except (TypeError, ValueError):
                    pass
            ok = np.isin(values, np.array(targets, dtype="datetime64[ns]")) if targets else np.zeros(len(values), bool)
        else:
            values, nulls = C.numeric_view(series)
            if nulls is None and values.dtype.kind == "f":
                nulls = np.isnan(values)
            targets = [a for a in allowed if isinstance(a, (int, float, np.number, bool, np.bool_))]
            targets += [_number(a) for a in allowed if isinstance(a, str) and _number(a) is not None]
            ok = np.isin(values, np.array(targets)) if targets else np.zeros(len(values), bool)
            if kind == "boolean":
                ok |= np.isin(values, [t == "True" for t in allowed_text & {"True", "False"}])
        bad = ~ok if nulls is None else ~ok & ~nulls
        if not bad.any():
            return None
        uniq = pd.unique(values[bad])
        # the text form can still match (1.0 vs category "1.0"): drop those uniques
        still = [u for u in uniq if C.json_scalar(u) is not None and str(C.json_scalar(u)) not in allowed_text
                 and str(u) not in allowed_text]
        if len(still) < len(uniq):
            bad &= np.isin(values, np.array(still, dtype=values.dtype))
            if not bad.any():
                return None
        return bad, [str(C.json_scalar(u)) for u in still[:5]]
    # strings / objects
    try:
        ok = series.isin(allowed + sorted(allowed_text - set(a for a in allowed if isinstance(a, str))))
    except TypeError:  # unhashable values
        ok = series.map(lambda v: str(v) in allowed_text)
    cand = ~ok.to_numpy(dtype=bool) & series.notna().to_numpy(dtype=bool)
    if not cand.any():
        return None
    uniq = pd.unique(series[cand].astype(object).map(str))
    still = [u for u in uniq if u not in allowed_text]
    if not still:
        return None
    if len(still) < len(uniq):
        cand &= series.astype(object).map(str).isin(still).to_numpy(dtype=bool)
    return cand, still[:5]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_INT = ("int", "uint", "Int", "UInt")


def dtype_problem(series: pd.Series, expected: str, expected_kind: str) -> tuple[str, np.ndarray | None, bool] | None:
    """Is the column's dtype compatible with what the profile saw?

    Returns None when compatible, else ``(message, mask_or_None, comparable)`` where
    ``comparable`` says whether range/category checks still make sense. Compatible means: same
    kind, with widening allowed (int where float was seen; float where int was seen if every
    value is integral; any string/object/category where categorical was seen; numbers or
    booleans where categorical was seen, compared by text) and matching time-zone awareness.
    """
    actual = C.dtype_name(series.dtype)
    if actual == expected:
        return None
    kind = C.kind_of(series.dtype)
    if expected_kind == "categorical":
        return None if kind != "datetime" else (f"is {actual}, the training data had {expected}", None, False)
    if kind != expected_kind:
        return (f"is {actual} ({kind}), the training data had {expected} ({expected_kind})", None, False)
    if expected_kind == "datetime":
        tz_expected = "," in expected
        tz_actual = getattr(series.dtype, "tz", None) is not None
        if tz_expected != tz_actual:
            which = "time-zone aware" if tz_actual else "naive"
            return (f"is {actual} ({which}), the training data had {expected}", None, True)
        return None
    if expected_kind == "numeric" and expected.startswith(_INT) and actual.lower().startswith("float"):
        values, nulls = C.numeric_view(series)
        with np.errstate(invalid="ignore"):
            frac = np.modf(values)[0] != 0  # NaN → True, ±inf → False
        frac ^= np.isnan(values)  # missing values are the null check's business
        frac |= np.isinf(values)
        if nulls is not None:
            frac &= ~nulls
        if frac.any():
            return (f"has non-integer values ({actual}), the training data had integers ({expected})", frac, True)
    return None


def rule_dtype_ok(series: pd.Series, spec: str) -> bool:
    """Does the column match a rule's ``dtype:`` (a family name or an exact pandas dtype)?"""
    from pandas.api import types as t

    dtype = series.dtype
    family = spec.lower()
    if family in ("int", "integer"):
        return t.is_integer_dtype(dtype) and not t.is_bool_dtype(dtype)
    if family == "float":
        return t.is_float_dtype(dtype)
    if family in ("numeric", "number"):
        return C.kind_of(dtype) == "numeric"
    if family in ("bool", "boolean") and spec in ("bool", "boolean", "Bool", "Boolean"):
        return C.kind_of(dtype) == "boolean"
    if family == "datetime":
        return C.kind_of(dtype) == "datetime"
    if family in ("category", "categorical"):
        return isinstance(dtype, pd.CategoricalDtype)
    if family in ("string", "str", "text") and spec in ("string", "str", "text"):
        return t.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
    if str(dtype) == spec:
        return True
    try:
        return t.pandas_dtype(spec) == dtype
    except TypeError:
        return False


def duplicate_mask(df: pd.DataFrame, columns: list[Any]) -> np.ndarray | None:
    """Rows whose key appears more than once (all of them, not only the repeats), or None."""
    if len(columns) == 1:
        s = df[columns[0]]
        if s.is_unique:
            return None
        mask = s.duplicated(keep=False).to_numpy()
    else:
        mask = df.duplicated(subset=columns, keep=False).to_numpy()
    return mask if mask.any() else None
