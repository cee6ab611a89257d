"""Reading a frame from a data file: the one reader the CLI, the magics and drift share.

pandas is imported on the first read, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError

__all__ = ["read_frame"]


def read_frame(path: str | Path) -> Any:
    """The DataFrame in the .parquet/.csv/.json/.feather file ``path``; a DataError says what was
    looked for (no such file, an unknown type, a file pandas cannot read)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"no file called {str(path)!r}",
                        "pass the path of an existing .parquet/.csv/.json/.feather file")
    readers = {".parquet": pd.read_parquet, ".pq": pd.read_parquet, ".csv": pd.read_csv,
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
