"""``nbprod.score``: a registered model over a parquet file, a directory of parts, or a frame, in partitions.

Why it reuses the server's code rather than calling ``model.predict`` on a frame: a batch job must
answer what the server would answer for the same row. Each partition goes through the same steps
as a request — the model loaded (and sha256-verified) by :func:`nbprod.service.load_version`,
columns cast by :func:`nbprod.serving.codecs.coerce`, OOD reasons from the version's
:class:`~nbprod.data.ood.OodChecker`, the prediction from ``ServedVersion.predict`` (the compiled
fast path where the server has one) — and its rows are written to the prediction log with role
``batch`` (the mechanism the latency gate's ``gate`` rows use), so ``nbprod.monitor`` covers
batch jobs.

Bad rows: ``coerce`` refuses a whole request when one value cannot be cast. A partition it refuses
is bisected until each refused row stands alone, so the good rows are scored and every bad row
goes to the reject file with the reason the server would give (``on_bad_rows="reject"``), or the
job stops on the first one (``"fail"``). A column the input lacks altogether is not a bad row but
a wrong input: the job stops before anything runs.

Output: written under a temporary name and moved into place when every partition is done, so a
failed or killed job leaves no partial output.

Speed (issue #16: at least 0.9× a plain read + ``model.predict`` loop): a parquet batch stays in
Arrow — numeric columns as its own numpy arrays, text columns read dictionary-encoded and handed on
as codes (:mod:`.parts`) — so checks, OOD candidates and the compiled plan work on arrays; a pandas
frame is made only for a version without a plan, class probabilities or refused rows. The output
is the input's columns as read plus the new ones, written by pyarrow.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import _dask, _format
from .._display import Display, Facts, View
from .._files import scratch_path
from ..errors import DataError, ServingError
from .parts import Part, Read, arrow_columns, batches, columns_of, plain, plan

__all__ = ["score", "ScoreResult"]

ON_BAD_ROWS = ("reject", "fail")
DEFAULT_BATCH_ROWS = 100_000
ROW = "_row"  # reject file: the input row number
REASON = "_reason"  # reject file: why the row was refused


@dataclass(repr=False)
class ScoreResult(Display):
    """What a batch job did: counts, where the output and the rejects are, the model version."""

    model: str
    model_version: str
    rows: int
    scored: int
    rejected: int
    ood: int
    output: str | None
    rejects: str | None
    partitions: int
    ran_on: str
    seconds: float
    logged: int = 0
    frame: Any = field(default=None, repr=False)  # the scored rows when no output path was given

    def _view(self) -> View:
        head = (f"scored {_format.count(self.scored)} of {_format.rows(self.rows)} with {self.model} "
                f"v{self.model_version} in {_format.rows(self.partitions, 'partition')} on {self.ran_on} "
                f"({self.seconds:.1f} s)")
        facts = [("rejected", _format.count(self.rejected) + (f" → {self.rejects}" if self.rejects else "")),
                 ("out of distribution", _format.count(self.ood)),
                 ("prediction log", f"{_format.rows(self.logged)} as 'batch'")]
        if self.output:
            facts.append(("output", self.output))
        return View(head, [Facts(facts)], tone="warn" if self.rejected else None)


# --- per worker: the loaded model --------------------------------------------------------------

_loaded: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _served(path: str, name: str, version: str):
    """The model version as the server loads it (verified, cached on disk), once per worker process."""
    key = (path, version)
    with _lock:
        served = _loaded.get(key)
        if served is None:
            from ..service import load_version

            served = _loaded[key] = load_version(path, version, name=name)
    return served


# --- one partition -----------------------------------------------------------------------------

_gc_users = 0
_gc_was_on = True


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """A batch makes a few hundred thousand small lists (OOD reasons, text columns): each
    allocation burst sets off Python's cyclic collector, which then walks every one of them —
    2/3 of a 250,000-row batch's time. Nothing here makes reference cycles (refcounting frees it
    all), so the collector is paused while any task of this process scores a batch."""
    global _gc_users, _gc_was_on
    with _lock:
        if _gc_users == 0:  # the first one in remembers whether the collector was on
            _gc_was_on = gc.isenabled()
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_on:
                gc.enable()



@dataclass(frozen=True)
class _Job:
    """What every task needs: the model directory, options, where to write."""

    path: str
    name: str
    version: str
    job_id: str
    out_dir: str
    reject_dir: str
    batch_rows: int
    on_bad_rows: str
    probabilities: bool
    deployment: str | None  # prediction-log name; None: not logged
    db_url: str | None
    ipc: bool = False  # write Arrow IPC parts for the client to merge into one parquet file


def _take(cols: dict[str, Any], idx: Any) -> dict[str, Any]:
    import numpy as np

    from ..data.ood import Coded

    def take(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v[idx]
        if isinstance(v, Coded):
            return Coded(v.codes[idx], v.labels)
        return [v[i] for i in idx]

    return {k: take(v) for k, v in cols.items()}


def _split_bad(cols: dict[str, Any], idx: Any, signature) -> list[tuple[int, str]]:
    """The rows of ``idx`` that ``coerce`` refuses on their own, each with the server's reason."""
    from ..serving.codecs import Batch, coerce

    try:
        coerce(Batch(_take(cols, idx), len(idx)), signature)
        return []
    except ServingError as exc:
        if len(idx) == 1:
            return [(int(idx[0]), exc.problem)]
    half = len(idx) // 2
    return _split_bad(cols, idx[:half], signature) + _split_bad(cols, idx[half:], signature)


def _trusted(frame: Any, signature) -> set[str]:
    """Signature ``string`` columns the frame holds as a pandas string dtype (read from a parquet string
    column): every value is a ``str`` or missing by construction, so ``coerce`` has nothing to refuse there
    and its value-by-value ``isinstance`` scan (a third of a batch's time with five text columns) is skipped.
    Every other column goes through ``coerce`` as a request's would."""
    import pandas as pd

    return {c.name for c in signature or [] if c.type == "string" and c.name in frame.columns
            and isinstance(frame[c.name].dtype, pd.StringDtype)}


def _check(cols: dict[str, Any], n: int, signature,
           trusted: set[str] = frozenset()) -> tuple[dict[str, Any], Any, list[tuple[int, str]]]:  # type: ignore[assignment]
    """The coerced good rows, their positions, and ``(position, reason)`` of each refused row."""
    import numpy as np

    from ..serving.codecs import Batch, coerce

    checked = [c for c in signature if c.name not in trusted] if signature is not None else None

    def cast(columns: dict[str, Any], rows: int) -> dict[str, Any]:
        out = coerce(Batch(columns, rows), checked)
        if signature is None or not trusted:
            return out
        return {c.name: columns[c.name] if c.name in trusted else out[c.name] for c in signature if
                c.name in trusted or c.name in out}

    everything = np.arange(n)
    try:
        return cast(cols, n), everything, []
    except ServingError:
        bad = _split_bad(cols, everything, checked)
    keep = np.setdiff1d(everything, np.fromiter((i for i, _ in bad), dtype=np.int64, count=len(bad)))
    return cast(_take(cols, keep), len(keep)), keep, bad


def _model_frame(cols: dict[str, Any], names: list[str], frame: Any = None):
    """The model's input DataFrame. ``frame`` (the batch as read, its refused rows already dropped) lends
    each column whose values ``coerce`` left as they were — same dtype, or a trusted text column — so a
    250,000-row batch is not rebuilt column by column from Python lists; the others come from ``cols``."""
    import numpy as np
    import pandas as pd

    if frame is None:
        return pd.DataFrame({k: cols[k] for k in names}, columns=names)
    same = [k for k in names if k in frame.columns and (
        isinstance(frame[k].dtype, pd.StringDtype) if not isinstance(cols[k], np.ndarray)
        else frame[k].dtype == cols[k].dtype)]
    if len(same) == len(names):
        return frame[names]
    return pd.DataFrame({k: frame[k] if k in same else cols[k] for k in names}, columns=names)


def _probabilities(served, cols: dict[str, Any], names: list[str], frame: Callable[[], Any]) -> dict[str, Any]:
    """Class probabilities from the version's own model, where it has ``predict_proba``."""
    if served.predict_fn != "predict":
        return {}
    try:
        raw = served.pyfunc.get_raw_model()
    except Exception:  # noqa: BLE001 - flavors without a raw model have no probabilities
        return {}
    if not hasattr(raw, "predict_proba") or not hasattr(raw, "classes_"):
        return {}
    proba = raw.predict_proba(_model_frame(cols, names, frame()))
    return {f"proba_{c}": proba[:, j] for j, c in enumerate(raw.classes_)}


#: Above this many rows a text column the compiled model one-hot encodes is handed to it as codes
#: (:class:`~nbprod.data.ood.Coded`), not as a list: the plan then looks up each distinct value once
#: instead of stepping through every row in Python (3× slower than scikit-learn at 250,000 rows).
FASTPATH_ROWS = 2_000


def _plan_columns(plan, cols: dict[str, Any], n: int) -> dict[str, Any] | None:
    """``cols`` for the compiled model: its one-hot columns of a big batch as codes (a parquet text
    column arrives so already; a list — in-memory input — is factorised). None when one cannot be
    (unhashable values): the batch then goes to the version's MLflow model."""
    if n <= FASTPATH_ROWS:
        return cols
    import numpy as np

    from ..data.ood import Coded

    out = dict(cols)
    for block in plan.blocks:
        if block.kind != "ohe":
            continue
        for c in block.columns:
            values = out.get(c)
            if type(values) is list:
                import pandas as pd

                try:
                    codes, labels = pd.factorize(np.array(values, dtype=object), use_na_sentinel=True)
                except TypeError:
                    return None
                out[c] = Coded(codes, list(labels))
    return out


def _predict(served, cols: dict[str, Any], n: int, order: list[str], frame: Callable[[], Any]):
    """The version's prediction, as the server makes it: the compiled fast path where the version has
    one (the server checked it gives the model's own answers when it compiled it), else the MLflow
    model on the batch's DataFrame (``frame()``: made only then)."""
    given = _plan_columns(served.plan, cols, n) if served.plan is not None else None
    if given is not None:
        return served.predict(given, n, order=order)
    names = [c.name for c in served.signature] if served.signature else order
    return served.pyfunc.predict(_model_frame(cols, names, frame()))


def _candidates(checker, cols: dict[str, Any], m: int):
    """A mask of the rows the OOD checker may flag — every row it flags, and few others — or None when a
    column's form does not say (a list, a datetime range): then every row is checked. A numeric value
    outside its range (infinities included: the checker decides), a code whose label is not a seen
    category; missing values (NaN, code -1) never are, as in the checker."""
    import numpy as np

    from ..data.ood import Coded

    mask = np.zeros(m, dtype=bool)
    for chk in checker.ranges:
        values = cols.get(chk.name)
        if values is None:
            continue
        if chk.kind != "numeric" or not isinstance(values, np.ndarray) or values.dtype.kind not in "fiu":
            return None
        with np.errstate(invalid="ignore"):
            mask |= (values < chk.lo) | (values > chk.hi)
    for chk in checker.categories:
        values = cols.get(chk.name)
        if values is None:
            continue
        if not isinstance(values, Coded):
            return None
        lut = np.array([not (isinstance(v, str) and v in chk.seen) for v in values.labels] + [False], dtype=bool)
        if lut.any():
            mask |= lut[values.codes]
    return mask


def _ood_rows(served, cols: dict[str, Any], m: int) -> tuple[Any, list[list[str]]]:
    """The rows the version's OOD checker flags (ascending) and their reasons — exactly what
    ``served.ood_flags(cols, m)`` says of them, every other row having none — without a Python list per
    row: the checker runs on the candidate rows only (its reasons for a row depend on that row alone)."""
    import numpy as np

    none: tuple[Any, list[list[str]]] = (np.empty(0, dtype=np.int64), [])
    if served.ood is None or not m:
        return none
    mask = _candidates(served.ood, cols, m)
    if mask is None:
        rows, sub = np.arange(m), served.ood_flags(cols, m)
    else:
        rows = np.flatnonzero(mask)
        if not len(rows):
            return none
        sub = served.ood_flags(_take(cols, rows), len(rows))
    if sub is None:
        return none
    flagged = [i for i, why in enumerate(sub) if why]
    return rows[flagged], [sub[i] for i in flagged]


def _ood_array(rows: Any, reasons: list[list[str]], m: int):
    """The ``ood`` column as an Arrow ``list<string>`` built from offsets: the flagged rows' reasons, an
    empty list for every other row."""
    import numpy as np
    import pyarrow as pa

    lengths = np.zeros(m, dtype=np.int32)
    lengths[rows] = [len(r) for r in reasons]
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array([w for r in reasons for w in r], pa.string()))


def _not_text(served) -> set[str]:
    """Columns the version wants as something other than text: its signature's non-string columns and the
    OOD checker's ranges. A text column read as codes goes to ``coerce`` and the checker as a list there."""
    names = {c.name for c in served.signature or [] if c.type != "string"}
    return names | {r.name for r in served.ood.ranges} if served.ood is not None else names


def _score_batch(job: _Job, served, read: Read, first_row: int | None, part: int, seq: int):
    """Score one batch (an Arrow record batch as read, or a pandas frame) → (scored Arrow table, rejects
    frame or None, n ood, log record or None). The pandas frame of an Arrow batch is made only when
    something needs it: the MLflow model (no compiled fast path), class probabilities, refused rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..data.ood import Coded

    batch = read.batch
    arrow = batch if isinstance(batch, (pa.RecordBatch, pa.Table)) else None
    n = len(batch)
    made: list[Any] = [] if arrow is not None else [batch]

    def frame():
        if not made:
            made.append(batch.to_pandas())  # an Arrow batch: a frame is in ``made`` from the start
        return made[0]

    if arrow is not None:
        read_cols = arrow_columns(read, frame)
        for name in _not_text(served):  # text where a number is wanted: checked (and refused) as a request's
            if isinstance(read_cols.get(name), Coded):
                read_cols[name] = plain(read_cols[name])
        trusted = {c.name for c in served.signature or [] if c.type == "string" and
                   isinstance(read_cols.get(c.name), Coded)}
        order = [str(c) for c in arrow.schema.names]
    else:
        read_cols, trusted, order = columns_of(batch), _trusted(batch, served.signature), list(batch.columns)
    cols, keep, bad = _check(read_cols, n, served.signature, trusted)
    if bad and job.on_bad_rows == "fail":
        where = f"row {first_row + bad[0][0]}" if first_row is not None else f"partition {part}, row {bad[0][0]}"
        raise DataError(f"{len(bad)} bad row(s) in the input; {where}: {bad[0][1]}",
                        "fix the input, or run with on_bad_rows='reject' (--on-bad-rows reject) to write "
                        "bad rows to a reject file and score the rest")
    m = len(keep)
    kept_made: list[Any] = []

    def kept():  # the model's rows as pandas, refused rows dropped
        if not kept_made:
            kept_made.append(frame().iloc[keep].reset_index(drop=True) if len(bad) else frame().reset_index(drop=True))
        return kept_made[0]

    ood_rows, ood_reasons = _ood_rows(served, cols, m)
    pred = _predict(served, cols, m, order, kept) if m else np.empty(0)
    request_id = f"{job.job_id}-{part}.{seq}"
    if arrow is None:
        table = pa.Table.from_pandas(kept(), preserve_index=False)
    else:  # the input columns as read: no round trip through pandas
        table = pa.Table.from_batches([arrow]) if isinstance(arrow, pa.RecordBatch) else arrow
        table = table.take(pa.array(keep)) if len(bad) else table
    table = table.replace_schema_metadata(None)
    arr = np.asarray(pred)
    table = table.append_column("prediction", pa.array(arr) if arr.ndim == 1 else pa.array(list(arr.reshape(m, -1))))
    if job.probabilities and m:
        names = [c.name for c in served.signature] if served.signature else order
        for key, values in _probabilities(served, cols, names, kept).items():
            table = table.append_column(key, pa.array(values))
    ids = pc.binary_join_element_wise(f"{request_id}-", pc.cast(pa.array(np.arange(m)), pa.string()), "")
    table = table.append_column("prediction_id", ids.cast(pa.string()))
    table = table.append_column("model_version", pa.repeat(pa.scalar(str(served.version), pa.string()), m))
    table = table.append_column("ood", _ood_array(ood_rows, ood_reasons, m))
    rejects = None
    if bad:
        rows = np.fromiter((i for i, _ in bad), dtype=np.int64, count=len(bad))
        rejects = frame().iloc[rows].reset_index(drop=True)
        for c in rejects.columns:  # a refused value may not fit its column's type in parquet: keep its text
            if rejects[c].dtype == object:
                rejects[c] = [None if v is None else str(v) for v in rejects[c]]
        rejects[ROW] = rows + first_row if first_row is not None else rows
        rejects[REASON] = [why for _, why in bad]
    record = None
    if job.deployment is not None and m:
        ood: list[list[str]] | None = None
        if len(ood_rows):  # the checker's form: a list per row
            ood = [[] for _ in range(m)]
            for i, why in zip(ood_rows.tolist(), ood_reasons, strict=True):
                ood[i] = why
        record = {"request_id": request_id, "version": served.version, "role": "batch", "n": m,
                  "inputs": {k: plain(v) for k, v in cols.items()}, "predictions": pred, "ood": ood}
    return table, rejects, len(ood_rows), record


def _dictionary_columns(schema) -> list[str]:
    """The columns worth parquet's dictionary encoding: text, integers, lists (few distinct values,
    typically). Not floats nor ``prediction_id`` — every value distinct: parquet would build a dictionary
    until it overflows and start again plain, 4× the time of writing the batch (measured: 8.2 s vs
    2.1 s for 250,000 rows × 29 columns) for a larger file."""
    import pyarrow as pa

    t = pa.types
    return [f.name for f in schema if f.name != "prediction_id" and (
        t.is_string(f.type) or t.is_large_string(f.type) or t.is_integer(f.type) or t.is_boolean(f.type)
        or t.is_dictionary(f.type) or t.is_list(f.type))]


def _parquet_writer(path: str | Path, schema):
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, schema, use_dictionary=_dictionary_columns(schema))


class _PartWriter:
    """A task's output file: parquet (the job's final part) or Arrow IPC (a part the client merges into
    one parquet file: written and read back at memory speed, encoded to parquet once, on the client)."""

    def __init__(self, path: str, ipc: bool):
        self.path, self.ipc = path, ipc
        self._w: Any = None
        self.schema: Any = None

    def write(self, table) -> None:
        import pyarrow as pa

        if self._w is None:
            self._w = (pa.ipc.new_file(self.path, table.schema) if self.ipc
                       else _parquet_writer(self.path, table.schema))
            self.schema = table.schema
        self._w.write_table(table.cast(self.schema) if table.schema != self.schema else table)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()


def _score_part(job: _Job, part: Part, frame: Any = None) -> dict:
    """One task: read the part in batches, score, write its output (and rejects) part file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    served = _served(job.path, job.name, job.version)
    name = f"part-{part.index:05d}"
    writer = _PartWriter(os.path.join(job.out_dir, name + (".arrow" if job.ipc else ".parquet")), job.ipc)
    reject_writer = None
    counts = {"rows": 0, "scored": 0, "rejected": 0, "ood": 0, "logged": 0}
    first = part.first_row
    try:
        for seq, batch in enumerate(batches(part, job.batch_rows, frame)):
            with _without_cyclic_gc():
                table, rejects, n_ood, record = _score_batch(job, served, batch, first, part.index, seq)
            writer.write(table)
            if rejects is not None:
                rt = pa.Table.from_pandas(rejects, preserve_index=False)
                if reject_writer is None:
                    reject_writer = pq.ParquetWriter(os.path.join(job.reject_dir, name + ".parquet"), rt.schema)
                reject_writer.write_table(rt.cast(reject_writer.schema))
            if record is not None and job.deployment is not None:
                from ..monitoring.predlog import log_rows

                counts["logged"] += log_rows(job.deployment, [("prediction", time.time(), record)], job.db_url)
            counts["rows"] += len(batch)
            counts["scored"] += table.num_rows
            counts["rejected"] += 0 if rejects is None else len(rejects)
            counts["ood"] += n_ood
            if first is not None:
                first += len(batch)
    finally:
        writer.close()
        if reject_writer is not None:
            reject_writer.close()
    return counts


# --- the verb ----------------------------------------------------------------------------------


def _model(uri: str) -> tuple[str, str, str]:
    """A registered URI or model directory → (local directory, name, version), resolved on the client."""
    p = Path(uri).expanduser()
    if p.is_dir():
        return str(p.resolve()), p.name, ""
    from ..service import model_store

    path, name, version = model_store().locate(uri)
    return str(Path(path).resolve()), name, version


def _check_columns(columns: list[str], served) -> None:
    missing = [c.name for c in served.signature or [] if c.required and c.name not in columns]
    if missing:
        raise DataError(f"the input has no column {', '.join(map(repr, missing))}, which the model needs",
                        f"add {', '.join(map(repr, missing))} to the input (it has: {', '.join(columns[:20])})")


class _Merger:
    """One parquet file from the tasks' Arrow IPC parts, appended in part order *while the job runs*:
    a thread takes part ``i`` as soon as parts ``0..i`` are done, so the single encode of the output
    overlaps the scoring instead of following it as a second pass over everything (what made a
    one-file output 2–4× slower than a directory of parts). One part is in memory at a time."""

    def __init__(self, parts_dir: Path, target: Path, total: int):
        import queue

        self.parts_dir, self.target, self.total = parts_dir, target, total
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nbprod-score-merge", daemon=True)
        self._thread.start()

    def done(self, index: int) -> None:
        self._done.put(index)

    def _run(self) -> None:
        import pyarrow as pa

        writer = None
        ready: set[int] = set()
        nxt = 0
        try:
            while nxt < self.total:
                index = self._done.get()
                if index is None:
                    return
                ready.add(index)
                while nxt in ready:
                    f = self.parts_dir / f"part-{nxt:05d}.arrow"
                    if f.exists():
                        with pa.memory_map(str(f)) as source:
                            reader = pa.ipc.open_file(source)
                            for b in range(reader.num_record_batches):
                                table = pa.Table.from_batches([reader.get_batch(b)])
                                if writer is None:
                                    writer = _parquet_writer(self.target, table.schema)
                                writer.write_table(table if table.schema == writer.schema
                                                   else table.cast(writer.schema))
                        f.unlink()
                    ready.discard(nxt)
                    nxt += 1
        except BaseException as exc:  # noqa: BLE001 - reported by finish(), in the caller's thread
            self._error = exc
        finally:
            if writer is not None:
                writer.close()

    def finish(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._done.put(None)
        self._thread.join()


def _merge(parts_dir: Path, target: Path) -> None:
    """The parquet part files of a directory, in order, as one parquet file (one row group in memory)."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for f in sorted(parts_dir.glob("part-*.parquet")):
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                table = pf.read_row_group(g)
                if writer is None:
                    writer = pq.ParquetWriter(target, table.schema)
                writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _publish(staged: Path, target: Path) -> None:
    """Move a finished job's directory of parts into place."""
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(staged, target)


def _empty_output(path: Path, columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in columns}), path)


def _inputs(data: Any, batch_rows: int) -> tuple[list[tuple[Part, Any]], list[str]]:
    """(part, frame or delayed partition or None) for every task, and the input's columns."""
    if isinstance(data, (str, os.PathLike)):
        parts, columns = plan(Path(data).expanduser(), batch_rows)
        return [(p, None) for p in parts], columns
    module = type(data).__module__
    if module.startswith("dask"):
        delayed = data.to_delayed()
        return [(Part(i, None, None), d) for i, d in enumerate(delayed)], [str(c) for c in data.columns]
    if hasattr(data, "iloc") and hasattr(data, "columns"):
        rows = len(data)
        chunks = [(Part(i, lo, min(batch_rows, rows - lo)), data.iloc[lo:lo + batch_rows])
                  for i, lo in enumerate(range(0, rows, batch_rows))] or [(Part(0, 0, 0), data)]
        return chunks, [str(c) for c in data.columns]
    raise DataError(f"cannot score a {type(data).__name__}",
                    "pass a parquet file or directory, a pandas DataFrame or a dask.dataframe.DataFrame")


def score(uri: str, data: Any, output: str | os.PathLike | None = None, *, dask: Any = None,
          on_bad_rows: str = "reject", rejects: str | os.PathLike | None = None,
          batch_rows: int = DEFAULT_BATCH_ROWS, probabilities: bool = True, log: bool = True,
          progress: bool = True, overwrite: bool = False) -> ScoreResult:
    """Score ``data`` with the model ``uri`` (``credit@champion``, ``models:/credit/3`` or a model
    directory) exactly as its server would, partition by partition.

    ``data``: a parquet file, a directory of parquet parts, a pandas DataFrame or a
    ``dask.dataframe.DataFrame``. ``output``: a ``.parquet`` file, or a directory of parts (any
    other path); None returns the scored rows in ``result.frame`` (for data that fits in memory).
    The output keeps the input's rows in order and adds ``prediction``, ``proba_<class>`` (where
    the model has ``predict_proba`` and ``probabilities``), ``prediction_id``, ``model_version``
    and ``ood`` (the server's reasons per row; empty = inside the training distribution).
    ``dask``: None (Dask's local scheduler, in this process), a scheduler address
    (``tcp://host:8786``), a ``distributed.Client`` or a cluster; on a remote cluster the model
    directory and the paths must be readable by the workers. ``on_bad_rows``: ``"reject"`` writes
    refused rows with ``_row`` and ``_reason`` to ``rejects`` (default ``<output>.rejects.parquet``),
    ``"fail"`` stops at the first. ``batch_rows``: rows a worker holds at a time. ``log``: feed the
    prediction log (role ``batch``; ``NBPROD_PREDICTION_LOG=off`` turns it off too).
    """
    if on_bad_rows not in ON_BAD_ROWS:
        raise DataError(f"on_bad_rows={on_bad_rows!r} is not an option", "use 'reject' or 'fail'")
    if batch_rows < 1:
        raise DataError(f"batch_rows={batch_rows} must be a positive number of rows", "use e.g. 100000")
    target = Path(output).expanduser() if output is not None else None
    if target is not None and target.exists() and not overwrite:
        raise DataError(f"{str(target)!r} exists", "pass another output path, or overwrite=True (--overwrite)")
    started = time.perf_counter()
    path, name, version = _model(uri)
    served = _served(path, name, version)  # loads and verifies here first: a bad model fails before any task
    tasks_in, columns = _inputs(data, batch_rows)
    _check_columns(columns, served)

    from ..config import settings

    logging_on = log and os.environ.get("NBPROD_PREDICTION_LOG", "").lower() not in ("off", "0", "false")
    deployment = None
    if logging_on:
        from ..monitoring.monitor import resolve_name

        deployment = resolve_name(name if Path(uri).expanduser().is_dir() else uri)
    base = target if target is not None else Path(settings.home) / "cache" / "score"
    job_id = uuid.uuid4().hex[:12]
    staging = scratch_path(base, "score")
    out_dir, reject_dir = staging / "out", staging / "rejects"
    try:
        out_dir.mkdir(parents=True)
        reject_dir.mkdir()
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"cannot write the output beside {base}: {exc.strerror or exc}",
                        "pass an output path in a directory you can write to") from exc
    single_file = target is not None and target.suffix.lower() in (".parquet", ".pq")
    job = _Job(path, name, served.version, job_id, str(out_dir), str(reject_dir), batch_rows, on_bad_rows,
               probabilities, deployment, settings.db_url if logging_on else None, ipc=single_file)
    merger = None
    try:
        import dask as dask_

        task = dask_.delayed(_score_part, pure=False)
        tasks = [task(job, part, frame) for part, frame in tasks_in]
        staged_file = staging / "output.parquet"
        if single_file:
            merger = _Merger(out_dir, staged_file, len(tasks))
        with _dask.connect(dask) as client:
            ran_on = _dask.describe(client)
            counts = _dask.run(tasks, client, desc=f"score {name} v{served.version}", progress=progress,
                               on_result=merger.done if merger is not None else None)
        if merger is not None:
            merger.finish()
            merger = None
        total = {k: sum(c[k] for c in counts) for k in ("rows", "scored", "rejected", "ood", "logged")}
        reject_path = None
        if total["rejected"]:
            reject_path = Path(rejects).expanduser() if rejects is not None else _reject_path(target, base, job_id)
            reject_path.parent.mkdir(parents=True, exist_ok=True)
            staged_rejects = staging / "rejects.parquet"
            _merge(reject_dir, staged_rejects)
            os.replace(staged_rejects, reject_path)
        frame = None
        if target is None:
            import pandas as pd

            files = sorted(out_dir.glob("part-*.parquet"))
            frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
        elif single_file:
            if not staged_file.exists():  # no rows at all: an empty file with the input's columns
                _empty_output(staged_file, columns)
            os.replace(staged_file, target)
        else:
            _publish(out_dir, target)
    finally:
        if merger is not None:
            merger.abort()
        shutil.rmtree(staging, ignore_errors=True)
    return ScoreResult(name, str(served.version), total["rows"], total["scored"], total["rejected"], total["ood"],
                       str(target) if target is not None else None, str(reject_path) if reject_path else None,
                       len(tasks), ran_on, time.perf_counter() - started, total["logged"], frame)


def _reject_path(target: Path | None, base: Path, job_id: str) -> Path:
    if target is None:
        return base / f"rejects-{job_id}.parquet"
    stem = target.name[: -len(target.suffix)] if target.suffix else target.name
    return target.with_name(f"{stem}.rejects.parquet")
