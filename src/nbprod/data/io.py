"""Reading a frame from a data file: the one reader the CLI, the magics and drift share.

In a CSV file only an empty field is a missing value. pandas also reads ``NA``, ``None``,
``null``, ``N/A``, ``NaN`` and a dozen other words as missing, so a country column holding ``NA``
(Namibia) or a name ``None`` would lose those values; nbprod keeps them as text. The one
exception is a column whose other values are all numbers (or all booleans): there those words are
what a writer put for a missing number (R writes ``NA``, numpy ``nan``), and they are missing
values, as pandas reads them — the column stays numeric. A column of nothing but such words stays
text.

This module imports pandas: the front ends import it when they read a file, not before.
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
    if p.is_dir():
        raise DataError(f"{str(path)!r} is a folder, not a data file",
                        "pass the path of a .parquet/.csv/.json/.feather file in it")
    readers = {".parquet": pd.read_parquet, ".pq": pd.read_parquet, ".csv": read_csv,
               ".json": pd.read_json, ".feather": pd.read_feather}
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read {str(path)!r}: unknown file type {p.suffix!r}",
                        "use .parquet, .csv, .json or .feather")
    try:
        return reader(p)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read {str(path)!r}: it is not UTF-8 text ({exc.reason} at byte {exc.start:,})",
                        "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`, or your editor's "
                        "'save with encoding')") from exc
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
    _check_header(path, df, options)
    suspects = [i for i in range(df.shape[1]) if _is_text(df.iloc[:, i]) and df.iloc[:, i].isin(NA_WORDS).any()]
    if not suspects:
        return df
    again = pd.read_csv(path, usecols=suspects, **options)
    for i, name in zip(suspects, again.columns, strict=True):
        column = again[name]
        if column.notna().any() and (pd.api.types.is_numeric_dtype(column.dtype) or _booleans(column)):
            df.isetitem(i, column.set_axis(df.index))
    return df


def _check_header(path: str | Path, df: pd.DataFrame, options: dict) -> None:
    """Refuse what pandas reads without a word: a header naming a column twice (pandas renames the second
    ``a.1``, where a frame with duplicate names is refused), and a file of another separator (``;``, a tab,
    ``|``), read as one column whose name holds the whole header line."""
    import csv

    if options:
        return
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    dupes = sorted({n for n in header if header.count(n) > 1})
    if dupes:
        raise DataError(f"{str(path)!r} names column(s) {', '.join(map(repr, dupes))} more than once",
                        "rename the columns in the file's header so that every name is unique")
    if df.shape[1] == 1 and (sep := next((c for c in ";\t|" if c in header[0]), None)):
        raise DataError(f"{str(path)!r} is read as one column {header[0]!r}: its values are separated by "
                        f"{'a tab' if sep == chr(9) else repr(sep)}, not commas",
                        "save it with commas as separators (or as .parquet)")


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series.dtype) or isinstance(series.dtype, pd.StringDtype)


def _booleans(series: pd.Series) -> bool:
    """An object column of booleans and missing values (what pandas makes of True/False/NA)."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return False
    present = series[series.notna()]
    return bool(len(present)) and all(isinstance(v, (bool, np.bool_)) for v in present)
