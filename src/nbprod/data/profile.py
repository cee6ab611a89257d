"""The training profile: what a model's training data looked like, as one small JSON artefact.

A :class:`Profile` is computed once, when a model is registered, and then drives validation of
new frames, out-of-distribution flags at serving time and the reference side of drift. It holds,
per column, the dtype, the null rate, min/max/mean/std, quantile bin edges, the top-k category
frequencies, a distinct count, and for the whole frame a bounded uniform sample of rows.

Profiles are plain data (dataclasses of JSON-native values) and round-trip through JSON
(:meth:`Profile.to_json` / :meth:`Profile.from_json`). The JSON carries ``schema_version`` so a
profile written by a newer nbprod is refused with a clear error rather than misread.

Speed: ``profile()`` of 1,000,000 rows × 25 columns takes a fraction of a second. Nothing sorts a
full column: quantiles come from a uniform sample of up to :data:`QUANTILE_SAMPLE` values per
column (exact below that), distinct counts of numeric columns from a hash sketch (exact for small
columns and low cardinalities), categorical counts from the integer codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _format
from .._display import Display, Table, View
from .._files import write_text_atomic
from ..config import settings
from ..errors import ProfileError
from . import _columns as C

__all__ = ["SCHEMA_VERSION", "QUANTILE_SAMPLE", "LOW_CARDINALITY", "ColumnProfile", "Profile", "profile"]

#: Version of the JSON layout. Bump it when a reader of the old layout would misread the new one.
SCHEMA_VERSION = 1

#: Quantile edges are computed exactly on columns up to this many non-null values, and on a
#: uniform sample of this many values above it (rank error about 1/sqrt(QUANTILE_SAMPLE) ≈ 0.3%).
QUANTILE_SAMPLE = 100_000

#: Distinct counts are exact up to this many values; above it they come from a hash sketch.
_EXACT_DISTINCT = QUANTILE_SAMPLE
_SKETCH_SIZE = 16_384  # expected number of hashes kept by the sketch
_SKETCH_MIN = 1_024  # fewer distinct hashes than this in the sketch → count exactly instead

#: Numeric columns with at most this many distinct values also store exact ``categories``
#: (value → count), so drift on low-cardinality integer columns — categorical by Evidently's
#: rules — is exact rather than estimated from quantiles.
LOW_CARDINALITY = 20


@dataclass
class ColumnProfile:
    """What one column looked like.

    ``distinct_count`` is exact for categorical and boolean columns and for numeric/datetime
    columns of up to 100,000 non-null values or few distinct values (under about
    ``1024 × rows / 16384``); above that it is an estimate from a hash sketch (the values whose
    64-bit splitmix hash falls below a threshold chosen to keep ~16,384 of them; the distinct
    hashes found, scaled by the threshold), typically within 1–2%.

    ``quantiles`` (numeric only) holds ``n_quantiles + 1`` bin edges at probabilities
    ``0, 1/n, …, 1``; the first and last edge are the exact min and max. ``categories`` holds the
    ``top_k`` most frequent values (as strings) with their counts and ``other_count`` the rest; when
    ``other_count`` is 0 the categories are the complete set seen (what unseen-category checks
    need). For boolean columns ``categories`` is ``{"True": n, "False": m}`` and ``mean`` the rate
    of True. Numeric columns with at most :data:`LOW_CARDINALITY` distinct values also get
    exact ``categories`` (the value's text → count, ``other_count`` 0, ``distinct_count`` exact);
    for them the range, not the categories, drives validation. Profiles written before this
    (numeric ``categories`` None) are read as they are. Datetimes are ISO 8601 strings (``std`` an
    ISO 8601 duration).

    Infinite values (float columns) are counted in ``neg_inf_count`` / ``pos_inf_count`` and left
    out of every statistic, so ``min``/``max``/``mean``/``std``/``quantiles``/``categories`` are
    finite (or None when no finite value was seen) and the JSON is strict. Validation and the OOD
    checker accept an infinity of a sign the training data had; any other ±inf is out of range.
    Profiles written before these fields read as having seen no infinity.
    """

    name: str
    dtype: str
    kind: str
    null_count: int = 0
    null_rate: float = 0.0
    count: int = 0
    min: Any = None
    max: Any = None
    mean: Any = None
    std: Any = None
    quantiles: list[float] | None = None
    categories: dict[str, int] | None = None
    other_count: int = 0
    distinct_count: int = 0
    neg_inf_count: int = 0
    pos_inf_count: int = 0

    @property
    def inf_count(self) -> int:
        """How many values were ±infinity (numeric only; they are in ``count``, not in the stats)."""
        return self.neg_inf_count + self.pos_inf_count

    @property
    def never_null(self) -> bool:
        """True when the training data had values and none missing: a null now is a failure."""
        return self.count > 0 and self.null_count == 0

    @property
    def categories_complete(self) -> bool:
        """True when ``categories`` lists every value seen (no "other" bucket)."""
        return self.categories is not None and self.other_count == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        if not isinstance(d, dict):
            raise ProfileError(f"a column profile must be a JSON object, got {type(d).__name__}",
                               "regenerate the profile with nbprod.profile(df)")
        known = {f for f in cls.__dataclass_fields__}
        missing = {"name", "dtype", "kind"} - set(d)
        if missing:
            raise ProfileError(f"column profile lacks {', '.join(sorted(missing))}: {d!r:.120}",
                               "regenerate the profile with nbprod.profile(df)")
        if d["kind"] not in C.KINDS:
            raise ProfileError(f"column {d['name']!r} has unknown kind {d['kind']!r}",
                               f"kind must be one of {', '.join(C.KINDS)}; regenerate the profile")
        values = {k: v for k, v in d.items() if k in known}
        try:
            col = cls(**values)
            col.null_count, col.count, col.other_count, col.distinct_count = (
                int(col.null_count), int(col.count), int(col.other_count), int(col.distinct_count))
            col.neg_inf_count, col.pos_inf_count = int(col.neg_inf_count), int(col.pos_inf_count)
            col.null_rate = float(col.null_rate)
            if col.categories is not None:
                col.categories = {str(k): int(v) for k, v in dict(col.categories).items()}
            if col.quantiles is not None:
                col.quantiles = [float(q) for q in col.quantiles]
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"column profile {d.get('name')!r} is malformed: {exc}",
                               "regenerate the profile with nbprod.profile(df)") from exc
        return col

    def _summary_row(self) -> list[Any]:
        top = ""
        if self.categories and self.kind != "numeric":  # numeric values are summarised by min/max/mean
            top = ", ".join(list(self.categories)[:3]) + (" …" if len(self.categories) > 3 else "")
        return [self.name, self.dtype, self.kind, f"{self.null_rate:.1%}", self.min, self.max,
                self.mean, self.distinct_count, top]


_HEADER = ["column", "dtype", "kind", "nulls", "min", "max", "mean", "distinct", "top values"]


@dataclass(repr=False)
class Profile(Display):
    """A training profile (see the module docstring). Build it with :func:`profile`."""

    n_rows: int
    columns: dict[str, ColumnProfile]
    key: list[str] | None = None
    created_at: str = ""
    sample: dict[str, list] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # --- access -------------------------------------------------------------------------------
    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise ProfileError(f"the profile has no column {name!r}",
                               f"use one of: {', '.join(self.columns) or '(none)'}") from None

    def sample_frame(self) -> pd.DataFrame:
        """The sampled rows as a DataFrame with the profiled dtypes restored."""
        n = len(next(iter(self.sample.values()), []))
        frame = pd.DataFrame({name: pd.Series(self.sample.get(name, [None] * n), dtype=object)
                              for name in self.columns}, index=range(n))
        for name, col in self.columns.items():
            frame[name] = _restore(frame[name], col)
        return frame

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "n_rows": self.n_rows,
            "key": self.key,
            "created_at": self.created_at,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
            "sample": self.sample,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        fix = "regenerate the profile with nbprod.profile(df) and save it again"
        if not isinstance(d, dict):
            raise ProfileError(f"a profile must be a JSON object, got {type(d).__name__}", fix)
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise ProfileError("this is not an nbprod profile (no integer schema_version)", fix)
        if version > SCHEMA_VERSION:
            raise ProfileError(
                f"the profile has schema_version {version}, newer than this nbprod understands ({SCHEMA_VERSION})",
                "upgrade nbprod (pip install -U nbprod) or regenerate the profile with this version")
        columns = d.get("columns")
        if not isinstance(columns, dict) or not isinstance(d.get("n_rows"), int):
            raise ProfileError("the profile lacks 'columns' (an object) or 'n_rows' (an integer)", fix)
        cols = {}
        for name, c in columns.items():
            col = ColumnProfile.from_dict(c)
            cols[str(name)] = col
        key = d.get("key")
        if key is not None and (not isinstance(key, list) or not all(k in cols for k in key)):
            raise ProfileError(f"the profile's key {key!r} is not a list of its columns", fix)
        sample = d.get("sample") or {}
        if not isinstance(sample, dict) or any(not isinstance(v, list) for v in sample.values()) \
                or len({len(v) for v in sample.values()}) > 1:
            raise ProfileError("the profile's sample must map columns to lists of equal length", fix)
        return cls(n_rows=d["n_rows"], columns=cols, key=key, created_at=str(d.get("created_at") or ""),
                   sample=sample)

    def to_json(self, indent: int | None = None) -> str:
        """Strict JSON (no NaN/Infinity tokens, which other JSON readers refuse)."""
        try:
            return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # a non-finite float that was not profiled by nbprod.profile()
            raise ProfileError(f"the profile holds a value JSON cannot represent: {exc}",
                               "regenerate the profile with nbprod.profile(df), which keeps its statistics finite"
                               ) from exc

    @classmethod
    def from_json(cls, s: str | bytes) -> Profile:
        try:
            d = json.loads(s)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"the profile is not valid JSON: {exc}",
                               "pass the text written by Profile.to_json() or Profile.save()") from exc
        return cls.from_dict(d)

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (atomically: a failed write leaves no partial file)."""
        path = Path(path)
        text = self.to_json(indent=1)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
        except OSError as exc:
            raise ProfileError(f"cannot write the profile to {path}: {exc}", "choose a writable path") from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read a profile from {path}: {exc}",
                               "pass the path of a JSON file written by Profile.save() or `nbprod profile -o`") from exc
        except UnicodeDecodeError:
            raise ProfileError(f"{path} is not a JSON profile (it is not UTF-8 text; a data file?)",
                               "pass the path of a JSON file written by Profile.save() or `nbprod profile -o`"
                               ) from None
        return cls.from_json(text)

    # --- display ------------------------------------------------------------------------------
    def _headline(self) -> str:
        key = f", key {', '.join(self.key)}" if self.key else ""
        sample = len(next(iter(self.sample.values()), []))
        return (f"Profile of {_format.rows(self.n_rows)} × {_format.rows(len(self.columns), 'column')}{key}"
                f" (sample of {_format.rows(sample)}; {self.created_at})")

    def _view(self) -> View:
        return View(self._headline(), [Table(_HEADER, [c._summary_row() for c in self.columns.values()],
                                             more="more columns")])


# ---------------------------------------------------------------------------------------------
def profile(df: pd.DataFrame, *, key: str | list[str] | None = None, sample_size: int | None = None,
            top_k: int | None = None, n_quantiles: int | None = None, random_state: int = 0,
            dask: Any = None) -> Profile:
    """Profile a frame: the baseline for validation, serving checks and drift.

    ``key`` names the column(s) that identify a row (checked for duplicates by ``validate``).
    ``sample_size``, ``top_k`` and ``n_quantiles`` default to the nbprod settings of the same
    names. ``random_state`` seeds the row sample, so the same frame gives the same profile.
    A ``dask.dataframe.DataFrame`` is profiled partition by partition on Dask
    (:mod:`nbprod.data.partitioned`: what is exact, what is a sketch); ``dask`` then names the
    scheduler (an address or a ``distributed.Client``; default: the client already open, else
    Dask's local scheduler).
    """
    from .partitioned import is_dask_frame, profile_partitioned  # it builds on this module's column code

    if is_dask_frame(df):
        return profile_partitioned(df, key=key, sample_size=sample_size, top_k=top_k, n_quantiles=n_quantiles,
                                   random_state=random_state, dask=dask)
    df = C.check_frame(df)
    sample_size = settings.sample_size if sample_size is None else sample_size
    top_k = settings.top_k if top_k is None else top_k
    n_quantiles = settings.n_quantiles if n_quantiles is None else n_quantiles
    for name, value, low in (("sample_size", sample_size, 0), ("top_k", top_k, 1), ("n_quantiles", n_quantiles, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ProfileError(f"{name}={value!r} is not an integer ≥ {low}", f"pass {name} as an integer ≥ {low}")
    keys = _key_list(key, df)
    n = len(df)
    rng = np.random.default_rng(random_state)
    q_idx = None if n <= QUANTILE_SAMPLE else np.sort(rng.choice(n, QUANTILE_SAMPLE, replace=False))
    s_idx = np.arange(n) if n <= sample_size else np.sort(rng.choice(n, sample_size, replace=False))
    columns: dict[str, ColumnProfile] = {}
    sample: dict[str, list] = {}
    for name in df.columns:
        series = df[name]
        col = _profile_column(str(name), series, n, top_k=top_k, n_quantiles=n_quantiles, q_idx=q_idx)
        columns[col.name] = col
        sample[col.name] = C.json_list(series.iloc[s_idx])
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Profile(n_rows=n, columns=columns, key=keys, created_at=created, sample=sample)


def _key_list(key: str | list[str] | None, df: pd.DataFrame) -> list[str] | None:
    if key is None:
        return None
    keys = [key] if isinstance(key, str) else [str(k) for k in key]
    names = [str(c) for c in df.columns]
    missing = [k for k in keys if k not in names]
    if missing or not keys:
        raise ProfileError(f"key column(s) {', '.join(map(repr, missing)) or '(empty)'} not in the data",
                           f"use columns of the frame: {', '.join(names[:20])}")
    return keys


def _profile_column(name: str, series: pd.Series, n: int, *, top_k: int, n_quantiles: int,
                    q_idx: np.ndarray | None, distinct: bool = True) -> ColumnProfile:
    """One column's profile. ``distinct=False`` (a partition's summary, which keeps its own hash
    sketch for the merge) skips the distinct count of high-cardinality numeric and datetime columns."""
    kind = C.kind_of(series.dtype)
    col = ColumnProfile(name=name, dtype=C.dtype_name(series.dtype), kind=kind)
    try:
        if kind == "numeric":
            _numeric(col, series, n_quantiles, q_idx, distinct)
        elif kind == "datetime":
            _datetime(col, series, distinct)
        elif kind == "boolean":
            _boolean(col, series)
        else:
            _categorical(col, series, top_k)
    except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - exotic object data
        raise ProfileError(f"cannot profile column {name!r} ({col.dtype}): {exc}",
                           "convert the column to a numeric, string, boolean or datetime dtype") from exc
    col.count = n - col.null_count
    col.null_rate = col.null_count / n if n else 0.0
    return col


def _num(x: Any) -> Any:
    """A numpy scalar as a JSON-native number (NaN and ±inf, e.g. an overflowed mean → None)."""
    v = x.item() if hasattr(x, "item") else x
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _numeric(col: ColumnProfile, series: pd.Series, n_quantiles: int, q_idx: np.ndarray | None,
             distinct: bool = True) -> None:
    values, mask = C.numeric_view(series)
    if mask is None and values.dtype.kind == "f" and len(values) and np.isnan(values.min()):
        mask = np.isnan(values)
    valid = values if mask is None else values[~mask]
    col.null_count = 0 if mask is None else int(mask.sum())
    if not len(valid):
        return
    lo, hi = valid.min(), valid.max()
    if values.dtype.kind == "f" and (np.isinf(lo) or np.isinf(hi)):  # only then: count and set aside ±inf
        inf = np.isinf(values)
        if mask is not None:
            inf &= ~mask
        col.pos_inf_count = int(np.count_nonzero(inf & (values > 0)))
        col.neg_inf_count = int(np.count_nonzero(inf)) - col.pos_inf_count
        mask = inf if mask is None else mask | inf  # from here on, "not a finite value"
        valid = values[~mask]
        col.distinct_count = (col.neg_inf_count > 0) + (col.pos_inf_count > 0)
        if not len(valid):
            return
        lo, hi = valid.min(), valid.max()
    col.min, col.max = _num(lo), _num(hi)
    if values.dtype.kind == "f":  # keep float columns' bounds floats, even when integral
        col.min, col.max = float(lo), float(hi)
    with np.errstate(over="ignore", invalid="ignore"):  # huge floats: mean/std overflow to inf
        col.mean = _num(valid.mean(dtype="float64"))
        col.std = _num(valid.std(dtype="float64", ddof=1)) if len(valid) > 1 else None
    if q_idx is None:
        qv = valid
    else:
        qv = values[q_idx]
        if mask is not None:
            qv = qv[~mask[q_idx]]
    ordered = np.sort(qv)
    edges = _quantiles(ordered, n_quantiles)
    edges[0], edges[-1] = float(lo), float(hi)
    col.quantiles = [float(e) for e in edges]
    counts = _low_cardinality_counts(ordered, valid if q_idx is not None else None)
    if counts is not None:  # few distinct values: keep them all, exactly (drift reads them as categories)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep value order
        col.categories, col.other_count = dict(ranked), 0
        col.distinct_count += len(counts)
    elif q_idx is None:  # the whole column is sorted already: count its distinct values exactly
        col.distinct_count += int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1
    elif distinct:
        col.distinct_count += _distinct(valid)


def _low_cardinality_counts(ordered: np.ndarray, valid: np.ndarray | None) -> dict[str, int] | None:
    """Exact value → count of a numeric column with at most :data:`LOW_CARDINALITY` distinct values.

    ``ordered`` is the sorted column (``valid`` None) or a sorted uniform sample of ``valid`` (the
    whole column). With a sample, its distinct values are the candidates; one binary search over
    the column confirms them and counts (values the sample missed are added when few), so a
    high-cardinality column costs nothing beyond the sample's distinct count.
    """
    if not len(ordered):
        return None
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    if len(starts) > LOW_CARDINALITY:
        return None
    if valid is None:
        keys, tallies = ordered[starts], np.diff(np.r_[starts, len(ordered)])
    else:
        keys = ordered[starts]
        for _ in range(2):
            pos = np.minimum(np.searchsorted(keys, valid), len(keys) - 1)
            hit = keys[pos] == valid
            if hit.all():
                break
            missed = np.unique(valid[~hit])
            if len(keys) + len(missed) > LOW_CARDINALITY:
                return None
            keys = np.union1d(keys, missed)
        else:  # pragma: no cover - the union covers every value
            return None
        tallies = np.bincount(pos, minlength=len(keys))
    return {str(_num(k)): int(c) for k, c in zip(keys, tallies, strict=True) if c}


def _quantiles(ordered: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Edges at probabilities 0..1 of a sorted array, linearly interpolated (numpy's default
    method) — without np.quantile's multi-kth partition, which is slower than one sort."""
    m = len(ordered)
    if not m:
        return np.full(n_quantiles + 1, np.nan)
    pos = np.linspace(0.0, m - 1, n_quantiles + 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, m - 1)
    frac = pos - below
    low, high = ordered[below].astype("float64"), ordered[above].astype("float64")
    with np.errstate(invalid="ignore", over="ignore"):
        edges = low + (high - low) * frac
        spilled = ~np.isfinite(edges)  # high - low overflowed (values near ±1.8e308): interpolate apart
        if spilled.any():
            edges[spilled] = (low * (1 - frac) + high * frac)[spilled]
    return np.where(frac == 0, low, edges)


def _datetime(col: ColumnProfile, series: pd.Series, distinct: bool = True) -> None:
    values = C.datetime_view(series)
    nat = np.isnat(values)
    col.null_count = int(nat.sum())
    valid = values[~nat] if col.null_count else values
    if not len(valid):
        return
    ints = valid.view("i8")
    unit = np.datetime_data(values.dtype)[0]
    tz = getattr(series.dtype, "tz", None)

    def stamp(i: float) -> str:
        # numpy's stubs want the unit as a literal; datetime_data gives it as str
        ts = pd.Timestamp(np.datetime64(int(round(i)), unit))  # type: ignore[call-overload]
        return (ts.tz_localize("UTC").tz_convert(tz) if tz is not None else ts).isoformat()

    col.min, col.max = stamp(ints.min()), stamp(ints.max())
    col.mean = stamp(ints.mean(dtype="float64"))
    if len(ints) > 1:
        std = ints.std(dtype="float64", ddof=1)
        col.std = pd.Timedelta(int(round(std)), unit=unit).isoformat()
    if distinct:
        col.distinct_count = _distinct(ints)


def _boolean(col: ColumnProfile, series: pd.Series) -> None:
    values, mask = C.numeric_view(series)
    if values.dtype == object:  # pragma: no cover - defensive
        values = series.astype("boolean").array._data
    col.null_count = 0 if mask is None else int(mask.sum())
    valid = values if mask is None else values[~mask]
    n_true = int(np.count_nonzero(valid))
    n_false = len(valid) - n_true
    col.categories = {k: v for k, v in (("True", n_true), ("False", n_false)) if v}
    col.categories = dict(sorted(col.categories.items(), key=lambda kv: -kv[1]))
    col.distinct_count = len(col.categories)
    col.mean = n_true / len(valid) if len(valid) else None


def _categorical(col: ColumnProfile, series: pd.Series, top_k: int) -> None:
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        counts = np.bincount(codes.astype(np.intp) + 1, minlength=len(series.cat.categories) + 1)
        col.null_count = int(counts[0])
        labels = [str(c) for c in series.cat.categories]
        pairs = [(label, int(c)) for label, c in zip(labels, counts[1:], strict=True) if c]
    else:
        # nulls are counted among the distinct values: dropna=True, or a separate isna, is one more
        # pass over the objects (an object column of 1M rows: 9 ms for the counts, 42 ms for isna)
        vc = None
        if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            try:
                vc = series.value_counts(dropna=False, sort=False)
            except TypeError:  # pragma: no cover - unhashable values
                vc = None
        if vc is None:  # mixed objects (1, 1.0, True, lists…): count their text form, as validation compares
            text = series.map(lambda v: None if C.json_scalar(v) is None else str(v))
            vc = text.value_counts(dropna=False, sort=False)
        counts = vc.to_numpy()
        is_null = np.asarray(pd.isna(vc.index), dtype=bool)
        col.null_count = int(counts[is_null].sum())
        pairs = [(str(k), int(c))
                 for k, c, null in zip(vc.index.tolist(), counts.tolist(), is_null.tolist(), strict=True) if not null]
    merged: dict[str, int] = {}
    for label, c in pairs:  # 1 and "1" in an object column are one category once written as text
        merged[label] = merged.get(label, 0) + c
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])  # stable: ties keep their order
    col.categories = dict(ranked[:top_k])
    col.other_count = int(sum(c for _, c in ranked[top_k:]))
    col.distinct_count = len(merged)


# --- distinct counts ---------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash64(values: np.ndarray, out: np.ndarray | None = None, tmp: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's finaliser over the 64-bit patterns of ``values`` (vectorised, in place on a copy).

    ``out`` and ``tmp``: uint64 buffers of at least ``len(values)`` to write into (``out`` may be
    ``values``' own memory) instead of allocating: a partition's summary hashes every numeric column
    with the same two buffers (under a Dask worker, whose nanny sets ``MALLOC_TRIM_THRESHOLD_``, each
    large temporary is a fresh ``mmap`` whose pages fault in: that had doubled the summary's time)."""
    if values.dtype.itemsize != 8:
        values = values.astype("float64" if values.dtype.kind == "f" else "int64")
    bits = values.view(np.uint64)
    if out is None:
        h = bits.copy()
    else:
        h = out[:len(bits)]
        if h.__array_interface__["data"][0] != bits.__array_interface__["data"][0] or h.strides != bits.strides:
            np.copyto(h, bits)
    t = np.empty_like(h) if tmp is None else tmp[:len(h)]
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        np.right_shift(h, np.uint64(shift), out=t)
        h ^= t
        if mult is not None:
            h *= mult
    return h


def _distinct(values: np.ndarray) -> int:
    """Distinct values of a non-null numeric array: exact when cheap, else a hash-sketch estimate."""
    n = len(values)
    if n <= _EXACT_DISTINCT:
        return int(len(pd.unique(values)))
    if values.dtype.kind == "f":
        values = values + 0.0  # -0.0 and 0.0 are one value
    h = _hash64(values)
    fraction = _SKETCH_SIZE / n
    threshold = np.uint64(int(fraction * 2.0**64))
    kept = np.unique(h[h < threshold])
    if len(kept) < _SKETCH_MIN:
        return int(len(pd.unique(values)))
    return int(round(len(kept) / fraction))


def _restore(column: pd.Series, col: ColumnProfile) -> pd.Series:
    """Turn a sampled JSON column back into the profiled dtype (best effort, never fails)."""
    try:
        if col.kind == "datetime":
            values = pd.to_datetime(column, utc=True, format="ISO8601")
            tz = col.dtype.split(",", 1)[1].rstrip("]").strip() if "," in col.dtype else None
            values = values.dt.tz_convert(tz) if tz else values.dt.tz_localize(None)
            return values.astype(col.dtype) if not tz else values
        if col.dtype in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool") \
                and column.isna().any():
            return column.astype({"bool": "boolean"}.get(col.dtype, col.dtype.capitalize().replace("Uint", "UInt")))
        return column.astype(col.dtype)
    except (TypeError, ValueError):
        return column.infer_objects()
