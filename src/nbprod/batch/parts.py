"""The partitions of a batch job's input, and how a task reads and writes one.

Why partitions are planned on the client from parquet metadata: the client then knows every
partition's first row number (reject files and errors name the input row) and the job's total,
without reading any data. A task reads its row groups in record batches of ``batch_rows`` rows,
so a worker holds one batch at a time, whatever the size of a row group or of the data. Text
columns are read dictionary-encoded and handed on as codes (see :func:`arrow_columns`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import DataError

__all__ = ["Part", "Read", "plan", "batches", "parquet_files", "columns_of", "arrow_columns", "plain"]


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


@dataclass
class Read:
    """One batch of a task's input as read: a pyarrow ``RecordBatch`` with the input's own column types
    (the scored output reuses its columns as they are), or a slice of an in-memory frame.

    ``coded``: the batch's text columns as the codes and labels of their parquet dictionaries (read
    dictionary-encoded: cheaper than decoding every string, and what checks and the compiled model
    want). ``dtypes``: the pandas dtype ``batch.to_pandas()`` gives each column (from an empty slice,
    once per part), so :func:`arrow_columns` knows where Arrow's own arrays are the same values.
    """

    batch: Any
    coded: dict[str, Any] = field(default_factory=dict)
    dtypes: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.batch)


def _text_columns(schema) -> list[str]:
    import pyarrow as pa

    names = schema.names
    return [f.name for f in schema if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
            and names.count(f.name) == 1]


def batches(part: Part, batch_rows: int, frame: Any = None) -> Iterator[Read]:
    """The part's rows in order, at most ``batch_rows`` at a time: record batches of a parquet part,
    slices of an in-memory frame."""
    if frame is not None:
        for lo in range(0, len(frame), batch_rows):
            yield Read(frame.iloc[lo:lo + batch_rows])
        return
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(part.file).schema_arrow
    text = _text_columns(schema)
    pf = pq.ParquetFile(part.file, read_dictionary=text) if text else pq.ParquetFile(part.file)
    pieces = pf.iter_batches(batch_size=batch_rows, row_groups=list(part.row_groups))
    dtypes = None
    for b, coded in _exactly(map(functools.partial(_restored, schema), pieces) if text else
                             ((b, {}) for b in pieces), batch_rows):
        if dtypes is None:
            dtypes = list(b.slice(0, 0).to_pandas().dtypes)
        yield Read(b, coded, dtypes)


def _restored(schema, b) -> tuple[Any, dict[str, Any]]:
    """A record batch read with text columns dictionary-encoded → the batch with the input's own column
    types, and those columns' codes and labels (a dictionary holding a null is not handed on)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..data.ood import Coded

    arrays, coded = [], {}
    for f, col in zip(schema, b.columns, strict=True):
        if pa.types.is_dictionary(col.type) and not pa.types.is_dictionary(f.type):
            if col.dictionary.null_count == 0:
                coded[f.name] = Coded(pc.fill_null(col.indices, -1).to_numpy(), col.dictionary.to_pylist())
            col = col.cast(f.type)  # the input's own type again: the output keeps it
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema), coded


def _exactly(pieces: Iterable[tuple[Any, dict[str, Any]]], rows: int) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The pieces as batches of exactly ``rows`` rows (the last one fewer), as a plain ``iter_batches``
    cuts them: a dictionary-encoded read also ends a batch at each row group, and a batch's number is
    part of its prediction ids."""
    import pyarrow as pa

    buf: list[tuple[Any, dict[str, Any]]] = []
    have = 0
    for b, coded in pieces:
        while b is not None:
            need = rows - have
            if len(b) <= need:
                buf.append((b, coded))
                have += len(b)
                b = None
            else:
                buf.append((b.slice(0, need), {k: _sliced(v, 0, need) for k, v in coded.items()}))
                b, coded = b.slice(need), {k: _sliced(v, need, None) for k, v in coded.items()}
                have = rows
            if have == rows:
                yield buf[0] if len(buf) == 1 else (pa.concat_batches([x for x, _ in buf]), _joined(buf))
                buf, have = [], 0
    if buf:
        yield buf[0] if len(buf) == 1 else (pa.concat_batches([x for x, _ in buf]), _joined(buf))


def _sliced(v: Any, lo: int, hi: int | None) -> Any:
    from ..data.ood import Coded

    return Coded(v.codes[lo:hi], v.labels)


def _joined(buf: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """The codes of consecutive pieces as one column per name, over the union of their labels (a column
    coded in only some pieces is left out)."""
    import numpy as np

    from ..data.ood import Coded

    out: dict[str, Any] = {}
    for name in buf[0][1]:
        if not all(name in coded for _, coded in buf):
            continue
        index: dict[Any, int] = {}
        parts = []
        for _, coded in buf:
            v = coded[name]
            remap = np.array([index.setdefault(label, len(index)) for label in v.labels] + [-1], dtype=np.int64)
            parts.append(remap[v.codes])
        out[name] = Coded(np.concatenate(parts), list(index))
    return out


def arrow_columns(read: Read, frame: Callable[[], Any]) -> dict[str, Any]:
    """:func:`columns_of` ``(read.batch.to_pandas())`` without converting what Arrow already holds as
    the same values: numeric columns as numpy arrays (no copy), text columns as
    :class:`~nbprod.data.ood.Coded` (``codes`` into ``labels``, -1 missing: the checks, the OOD
    checker and the compiled model take them as they are, where a list of 250,000 strings costs a
    Python step per row each). Any other column comes from ``frame()`` (the batch as pandas) as
    :func:`columns_of` makes it."""
    import numpy as np
    import pandas as pd

    batch, dtypes = read.batch, read.dtypes or []
    out: dict[str, Any] = {}
    for j, (name, dtype) in enumerate(zip(batch.schema.names, dtypes, strict=True)):
        col = batch.column(j)
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu" and (dtype.kind == "f" or not col.null_count):
            values = col.to_numpy(zero_copy_only=False)
            if values.dtype == dtype:
                out[str(name)] = values
                continue
        elif isinstance(dtype, pd.StringDtype) and name in read.coded:
            out[str(name)] = read.coded[name]
            continue
        out[str(name)] = _column_of(frame().iloc[:, j])
    return out


def plain(values: Any) -> Any:
    """A column of :func:`arrow_columns` as :func:`columns_of` gives it (a ``Coded`` column as a list)."""
    import numpy as np

    from ..data.ood import Coded

    if isinstance(values, Coded):
        return np.array(list(values.labels) + [None], dtype=object)[values.codes].tolist()
    return values


def columns_of(frame: Any) -> dict[str, Any]:
    """A pandas frame as the columns a request decodes to: numeric columns as numpy arrays, every
    other column as a list with ``None`` for a missing value (as JSON ``null`` arrives)."""
    return {str(name): _column_of(frame.iloc[:, j]) for j, name in enumerate(frame.columns)}


def _column_of(s: Any) -> Any:
    import numpy as np

    kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else ""
    if kind in "fiu" and kind:
        return s.to_numpy()
    if kind == "b":
        return s.tolist()
    values = s.astype(object).to_numpy(copy=True)
    missing = s.isna().to_numpy()
    if missing.any():
        values[missing] = None
    return values.tolist()
