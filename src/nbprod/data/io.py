"""Reading a frame from a data file: the one reader the CLI, the magics and drift share.

In a CSV file only an empty field is a missing value. pandas also reads ``NA``, ``None``,
``null``, ``N/A``, ``NaN`` and a dozen other words as missing, so a country column holding ``NA``
(Namibia) or a name ``None`` would lose those values; nbprod keeps them as text. The one
exception is a column whose other values are all numbers (or all booleans): there those words are
what a writer put for a missing number (R writes ``NA``, numpy ``nan``), and they are missing
values, as pandas reads them — the column stays numeric. A column of nothing but such words stays
text.

pandas is imported on the first read, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["read_frame", "read_csv", "NA_WORDS"]

#: The words pandas reads as missing by default; in nbprod's CSV reads they are missing values
#: only in a column that is otherwise numeric or boolean (see the module docstring).
NA_WORDS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def read_frame(path: str | Path) -> Any:
    """The DataFrame in the .parquet/.csv/.json/.feather file ``path``; a DataError says what was
    looked for (no such file, an unknown type, a file pandas cannot read)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"no file called {str(path)!r}",
                        "pass the path of an existing .parquet/.csv/.json/.feather file")
    readers = {".parquet": pd.read_parquet, ".pq": pd.read_parquet, ".csv": read_csv,
               ".json": pd.read_json, ".feather": pd.read_feather}
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read {str(path)!r}: unknown file type {p.suffix!r}",
                        "use .parquet, .csv, .json or .feather")
    try:
        return reader(p)
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}",
                        "check that the file is a valid " + p.suffix.lstrip(".") + " file") from exc


def read_csv(path: str | Path, **options: Any) -> pd.DataFrame:
    """``pd.read_csv(path)`` where only empty fields are missing, except in numeric and boolean
    columns, where :data:`NA_WORDS` are missing too (see the module docstring).

    The file is read once with only ``""`` as missing; a text column holding one of the words is
    read again (those columns alone) the way pandas reads it by default, and that reading is kept
    when it makes the column numbers or booleans with at least one value present."""
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], **options)
    suspects = [i for i in range(df.shape[1]) if _is_text(df.iloc[:, i]) and df.iloc[:, i].isin(NA_WORDS).any()]
    if not suspects:
        return df
    again = pd.read_csv(path, usecols=suspects, **options)
    for i, name in zip(suspects, again.columns, strict=True):
        column = again[name]
        if column.notna().any() and (pd.api.types.is_numeric_dtype(column.dtype) or _booleans(column)):
            df.isetitem(i, column.set_axis(df.index))
    return df


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series.dtype) or isinstance(series.dtype, pd.StringDtype)


def _booleans(series: pd.Series) -> bool:
    """An object column of booleans and missing values (what pandas makes of True/False/NA)."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return False
    present = series[series.notna()]
    return bool(len(present)) and all(isinstance(v, (bool, np.bool_)) for v in present)
