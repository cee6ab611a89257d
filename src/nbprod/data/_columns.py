"""How nbprod sees one pandas column: its kind, its values as numpy, and JSON-safe scalars.

Profiling and validation both go through these helpers so that a column is read the same way
when it is profiled (training) and when it is checked (validation, serving). Everything here is
vectorised and avoids copies where pandas allows it: a float64 column is used in place, a
nullable column (``Int64``, ``Float64``, ``boolean``) is read as its data array plus its mask,
a categorical column as its integer codes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as t

from ..errors import DataError

__all__ = [
    "KINDS",
    "kind_of",
    "dtype_name",
    "check_frame",
    "numeric_view",
    "datetime_view",
    "json_scalar",
    "json_list",
    "to_timestamp",
    "iso",
]

KINDS = ("numeric", "boolean", "categorical", "datetime")
_NUMPY_KINDS = {"b": "boolean", "i": "numeric", "u": "numeric", "f": "numeric", "m": "numeric", "M": "datetime"}


def dtype_name(dtype: Any) -> str:
    """The pandas dtype name as stored in profiles (``"float64"``, ``"Int64"``, ``"str"``…)."""
    return str(dtype)


def kind_of(dtype: Any) -> str:
    """One of :data:`KINDS`. Strings, objects, categories and anything unusual are categorical."""
    if isinstance(dtype, np.dtype):  # the common case, by numpy's kind letter (validate asks per column)
        return _NUMPY_KINDS.get(dtype.kind, "categorical")

    if t.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if t.is_datetime64_any_dtype(dtype):
        return "datetime"
    if t.is_timedelta64_dtype(dtype):
        return "numeric"
    if t.is_numeric_dtype(dtype) and not t.is_complex_dtype(dtype):
        return "numeric"
    return "categorical"


def check_frame(df: Any, what: str = "data") -> pd.DataFrame:
    """``df`` if it is a DataFrame with unique column names, else a :class:`DataError`."""
    if not isinstance(df, pd.DataFrame):
        if isinstance(df, pd.Series):
            raise DataError(f"{what} is a pandas Series, not a DataFrame", "pass series.to_frame() or a DataFrame")
        raise DataError(f"{what} is a {type(df).__name__}, not a pandas DataFrame",
                        "pass a pandas DataFrame (e.g. pd.read_parquet(path) or pd.DataFrame(records))")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{what} has duplicate column names: {', '.join(map(repr, dupes))}",
                        "rename the columns so that every name is unique")
    return df


def numeric_view(series: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """``(values, null_mask)`` of a numeric or boolean column, without copying when possible.

    ``values`` is a numpy array (float, int, uint or bool); ``null_mask`` is a boolean array of
    missing values, or ``None`` when the dtype cannot hold a missing value. For float data, NaN
    counts as missing; callers that need the mask of a float array compute it lazily
    (``np.isnan``) so that clean columns never pay for it. Timedeltas become float seconds.
    """
    arr = series.array
    mask = getattr(arr, "_mask", None)
    data = getattr(arr, "_data", None)
    if isinstance(mask, np.ndarray) and isinstance(data, np.ndarray):  # Int64, Float64, boolean
        if data.dtype.kind == "f":
            nan = np.isnan(data)
            if nan.any():
                mask = mask | nan
        return data, mask
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        values = series.to_numpy()
        nat = np.isnat(values)
        return values.astype("m8[ns]").view("i8") / 1e9, (nat if nat.any() else None)
    values = series.to_numpy() if isinstance(series.dtype, np.dtype) else None
    if values is None or values.dtype == object:
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    return values, None


def datetime_view(series: pd.Series) -> np.ndarray:
    """The column as naive UTC ``datetime64`` (NaT for missing), without copying when possible."""
    s = series
    if getattr(s.dtype, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    values = s.to_numpy()
    if values.dtype.kind != "M":
        values = pd.to_datetime(s, errors="coerce").to_numpy()
    return values


def to_timestamp(value: Any) -> np.datetime64:
    """An ISO string or timestamp as naive UTC ``datetime64[ns]`` (what :func:`datetime_view` compares with)."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_datetime64()


def iso(value: Any) -> str | None:
    """A timestamp-like value as an ISO 8601 string (``None`` for NaT)."""
    if value is None or value is pd.NaT:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    return None if pd.isna(ts) else ts.isoformat()


def json_scalar(value: Any) -> Any:
    """A value as something ``json.dumps`` writes faithfully (and strictly): None for any missing
    value, Python numbers, ``"inf"``/``"-inf"`` for infinities (strict JSON has none; pandas and
    ``float()`` read them back), ISO strings for times, ``str()`` for anything else exotic."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isfinite(f):
            return f
        return None if math.isnan(f) else ("inf" if f > 0 else "-inf")
    if isinstance(value, str):
        return value
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        return value.isoformat() if hasattr(value, "isoformat") else iso(value)
    if isinstance(value, (pd.Timedelta, np.timedelta64)):
        return None if pd.isna(value) else pd.Timedelta(value).isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # lists, arrays: ambiguous truth value
        pass
    return str(value)


def json_list(series: pd.Series) -> list:
    """A (small) column as a list of JSON-safe values, vectorised for the common dtypes."""
    kind = kind_of(series.dtype)
    if kind == "datetime":
        return [iso(v) for v in series.tolist()]
    if kind in ("numeric", "boolean") and isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiub":
        values = series.to_numpy().tolist()
        if series.dtype.kind == "f":
            return [v if v - v == 0 else json_scalar(v) for v in values]  # NaN → None, ±inf → "±inf"
        return values
    return [json_scalar(v) for v in series.astype(object).tolist()]
