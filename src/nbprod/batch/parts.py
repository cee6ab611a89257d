"""The partitions of a batch job's input, and how a task reads and writes one.

Why partitions are planned on the client from parquet metadata: the client then knows every
partition's first row number (reject files and errors name the input row) and the job's total,
without reading any data. A task reads its row groups in record batches of ``batch_rows`` rows,
so a worker holds one batch at a time, whatever the size of a row group or of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError

__all__ = ["Part", "plan", "batches", "parquet_files", "columns_of"]


@dataclass(frozen=True)
class Part:
    """One task's share of the input: row groups of one parquet file, or an in-memory frame."""

    index: int
    first_row: int | None  # the input row number of its first row (None: unknown for a dask partition)
    rows: int | None
    file: str | None = None
    row_groups: tuple[int, ...] = ()


def parquet_files(path: Path) -> list[Path]:
    """A parquet file, or the parquet parts of a directory in name order (part order is row order)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))
        if files:
            return files
        raise DataError(f"{str(path)!r} holds no .parquet files", "pass a parquet file or a directory of parquet parts")
    raise DataError(f"no file or directory called {str(path)!r}", "pass a parquet file or a directory of parquet parts")


def plan(path: Path, batch_rows: int) -> tuple[list[Part], list[str]]:
    """The parts of a parquet file or directory (about ``batch_rows`` rows each, whole row groups)
    and the input's column names."""
    import pyarrow.parquet as pq

    parts: list[Part] = []
    columns: list[str] | None = None
    start = 0
    for file in parquet_files(path):
        try:
            meta = pq.ParquetFile(file).metadata
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"cannot read {str(file)!r} as parquet: {exc}", "check that it is a parquet file") from exc
        names = meta.schema.to_arrow_schema().names
        if columns is None:
            columns = names
        group: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= batch_rows:
                parts.append(Part(len(parts), start, rows, str(file), tuple(group)))
                start += rows
                group, rows = [], 0
        if group:
            parts.append(Part(len(parts), start, rows, str(file), tuple(group)))
            start += rows
    return parts, columns or []


def batches(part: Part, batch_rows: int, frame: Any = None) -> Iterator[Any]:
    """The part's rows in order, at most ``batch_rows`` at a time: Arrow record batches of a parquet
    part (the scored output reuses their columns as read), slices of an in-memory frame."""
    if frame is not None:
        for lo in range(0, len(frame), batch_rows):
            yield frame.iloc[lo:lo + batch_rows]
        return
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part.file)
    yield from pf.iter_batches(batch_size=batch_rows, row_groups=list(part.row_groups))


def columns_of(frame: Any) -> dict[str, Any]:
    """A pandas frame as the columns a request decodes to: numeric columns as numpy arrays, every
    other column as a list with ``None`` for a missing value (as JSON ``null`` arrives)."""
    import numpy as np

    out: dict[str, Any] = {}
    for name in frame.columns:
        s = frame[name]
        kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else ""
        if kind in "fiu" and kind:
            out[str(name)] = s.to_numpy()
        elif kind == "b":
            out[str(name)] = s.tolist()
        else:
            values = s.astype(object).to_numpy(copy=True)
            missing = s.isna().to_numpy()
            if missing.any():
                values[missing] = None
            out[str(name)] = values.tolist()
    return out
