"""The prediction log: every answered row, every shadow answer and every failed request, in the state DB.

Why it is built this way:

- The server's hooks run on the event loop, so :class:`PredictionLog` only *appends a reference*
  to the request's arrays to a bounded in-memory buffer (no JSON, no SQL on the request path).
  One background thread drains the buffer every ``flush_s`` (or as soon as ``batch_rows`` rows
  wait), turns the arrays into rows and writes them with one ``executemany`` per batch.
- When the buffer holds ``max_pending_rows`` rows the new request's rows are dropped — never
  waited for — and counted in ``nbprod_dropped_log_rows_total`` (per row). A failing DB write is
  retried once, then its rows are dropped and counted too; a prediction never waits or fails
  because of the log.
- Error rate: every failed request is in the log. A server error (5xx) is ONE row with ``status``
  set and no prediction id. A refused request (4xx: a wrong token, bad input, a body too large)
  is *counted*, not logged one by one: the writer writes at most one row per status, version and
  endpoint per ``refused_every_s`` (1 s), whose ``n_rows`` says how many requests it stands for.
  A flood of refused requests therefore costs the log a bounded number of rows, and windows still
  count requests and errors exactly from the same table (``/metrics`` counts them too, per status).
- Shadow answers are rows with ``role='shadow'``, no prediction id and no inputs (they are the
  stable row's inputs: join on ``request_id`` + ``row_index``).
- Retention: the writer deletes rows older than ``max_age_s`` and keeps at most ``max_rows`` rows
  per deployment. It prunes after every ``prune_every_rows`` rows it writes (a twentieth of
  ``max_rows``, at least 100) and at least every ``prune_every_s``, so the log exceeds its cap
  by at most about ``prune_every_rows`` per worker. Over the cap it deletes error rows first,
  then the oldest predictions without a label, and labelled predictions last: a refused request
  never displaces a prediction, and an error never displaces a label. The feedback of every
  deleted prediction goes with it, and feedback older than ``max_age_s`` too. On SQLite the
  freed pages go back to the file system (``auto_vacuum=INCREMENTAL``, see :mod:`nbprod.state`).
  A server reads both limits from the options ``prediction_log_max_age`` /
  ``prediction_log_max_rows`` (``NBPROD_PREDICTION_LOG_MAX_AGE`` = ``30d``, ``12h`` or seconds;
  ``NBPROD_PREDICTION_LOG_MAX_ROWS``), default 30 days / 1,000,000.

``import nbprod`` does not load this module (SQLAlchemy, numpy).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import itertools
import json
import math
import os
import threading
import time
from json.encoder import encode_basestring_ascii as _escape  # what json.dumps uses
from typing import Any, Iterable, Iterator

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    select,
)

from .. import state
from ..config import settings
from ..errors import ConfigError

__all__ = ["predictions", "feedback_table", "PredictionLog", "server_log", "writer_lifespan", "ensure_tables",
           "write_rows", "log_rows", "retention", "DEFAULT_MAX_AGE_S", "DEFAULT_MAX_ROWS", "MAX_AGE_ENV",
           "MAX_ROWS_ENV"]

DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
DISABLE_ENV = "NBPROD_PREDICTION_LOG"  # "off" / "0": the server logs nothing (benchmarks, privacy)
DEFAULT_MAX_ROWS = 1_000_000
MAX_AGE_ENV = "NBPROD_PREDICTION_LOG_MAX_AGE"  # option prediction_log_max_age: "30d", "12h" or seconds
MAX_ROWS_ENV = "NBPROD_PREDICTION_LOG_MAX_ROWS"  # option prediction_log_max_rows: rows kept per deployment

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER PRIMARY KEY

predictions = Table(
    "predictions", state.metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("deployment", String(255), nullable=False),
    Column("ts", Float, nullable=False),  # unix time the answer was sent
    Column("request_id", String(64)),
    Column("row_index", Integer, nullable=False, default=0),  # position of the row in its request
    Column("prediction_id", String(80)),  # "<request_id>-<row_index>"; NULL for shadow and error rows
    Column("version", String(64)),
    Column("role", String(16), nullable=False),  # stable | canary | pinned | gate (latency-gate test) | shadow | error
    Column("status", Integer, nullable=False, default=200),
    Column("latency_ms", Float),  # server-side latency of the whole request (same on each of its rows)
    Column("n_rows", Integer, nullable=False, default=1),  # rows in the request; error rows: requests they stand for
    Column("inputs", Text),  # JSON object: column -> value
    Column("prediction", Text),  # JSON value (a label, a number or a list of class probabilities)
    Column("ood", Text),  # JSON list of reasons, NULL when the row was inside the training distribution
    Index("ix_predictions_deployment_ts", "deployment", "ts"),
    Index("ux_predictions_prediction_id", "prediction_id", unique=True),
)

feedback_table = Table(
    "feedback", state.metadata,
    Column("prediction_id", String(80), primary_key=True),
    Column("label", Text, nullable=False),  # JSON value
    Column("ts", Float, nullable=False),  # when the label first arrived
    Column("updated_at", Float, nullable=False),
)

_created: set = set()


def ensure_tables(db_url: str | None = None):
    """The state-DB engine with the prediction and feedback tables created (once per process)."""
    eng = state.engine(db_url)
    key = (str(eng.url), os.getpid())
    if key not in _created:
        with eng.connect() as conn:
            conn.execution_options(nbprod_write=True)
            with conn.begin():
                state.lock(conn, "nbprod.schema")
                predictions.create(conn, checkfirst=True)
                feedback_table.create(conn, checkfirst=True)
        _created.add(key)
    return eng


# --- turning a request's arrays into rows (in the writer thread) -------------------------------


def _plain_list(values: Any, n: int) -> list:
    """Column values as a list of JSON-able Python values (NaN → None)."""
    if hasattr(values, "tolist"):
        out = values.tolist()
        kind = getattr(getattr(values, "dtype", None), "kind", "")
        if kind == "f":
            out = [None if v != v else v for v in out]
    else:
        out = list(values)
    if len(out) != n:
        out = (out + [None] * n)[:n]
    return out


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "item") and not hasattr(v, "__len__"):
        return _jsonable(v.item())
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _prediction_list(pred: Any, n: int) -> list:
    """One prediction value per row, whatever the model returned."""
    mod = type(pred).__module__
    if mod.startswith("pandas"):
        if hasattr(pred, "columns"):
            records = pred.to_dict(orient="records")
            return [_jsonable(r if len(r) > 1 else next(iter(r.values()))) for r in records]
        pred = pred.to_numpy()
    if hasattr(pred, "ndim"):
        if pred.ndim == 1:
            return _plain_list(pred, n)
        return [_jsonable(r) for r in pred.reshape(len(pred), -1).tolist()]
    if isinstance(pred, dict):  # {output: array} → one object per row
        cols = {k: _prediction_list(v, n) for k, v in pred.items()}
        return [{k: cols[k][i] for k in cols} for i in range(n)]
    values = list(pred) if isinstance(pred, (list, tuple)) else [pred] * n
    return [_jsonable(v) for v in (values + [None] * n)[:n]]


#: One encoder for every row (``json.dumps`` with keywords builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str)
_dumps = _ENCODER.encode
_NONE = type(None)
_NUMBERS = frozenset((int, float, bool, _NONE))
_TEXTS = frozenset((str, _NONE))


def _fragments(values: list) -> list[str]:
    """Each value's JSON text, as ``_dumps(_jsonable(v))`` gives it, a column at a time: numbers in one
    encoder call split at the commas (no number's text holds one), strings through the C escaper."""
    types = set(map(type, values))
    if types <= _NUMBERS:
        return _dumps(values)[1:-1].split(",") if values else []  # NaN: already None; ±inf raise, as _dumps does
    if types <= _TEXTS:
        return ["null" if v is None else _escape(v) for v in values]
    if types == {list} and set(map(type, itertools.chain.from_iterable(values))) <= _NUMBERS and all(values):
        inner = _dumps(values)[2:-2].split("],[")  # class probabilities: [[0.2,0.8],[0.9,0.1]]
        return [f"[{x}]" for x in inner]
    return [_dumps(_jsonable(v)) for v in values]


def _row_objects(names: list[str], columns: list[list[str]], n: int) -> list[str]:
    """``{"name": value, ...}`` per row from the columns' JSON fragments (one C format per row)."""
    if not names:
        return ["{}"] * n
    template = "{" + ",".join(_escape(str(k)).replace("%", "%%") + ":%s" for k in names) + "}"
    return [template % row for row in zip(*columns, strict=True)]


def _rows_of(deployment: str, kind: str, ts: float, rec: dict) -> list[dict]:
    if kind == "error":
        return [{"deployment": deployment, "ts": ts, "request_id": rec.get("request_id"), "row_index": 0,
                 "prediction_id": None, "version": _s(rec.get("version")), "role": "error",
                 "status": int(rec.get("status") or 500), "latency_ms": rec.get("latency_ms"),
                 "n_rows": int(rec.get("count") or 1),
                 "inputs": None, "prediction": None, "ood": None}]
    pred = rec.get("predictions")
    n = _row_count(rec)
    preds = _prediction_list(pred, n)
    base = {"deployment": deployment, "ts": ts, "request_id": rec.get("request_id"), "version": _s(rec.get("version")),
            "status": 200, "latency_ms": rec.get("latency_ms"), "n_rows": n}
    if kind == "shadow":
        return [{**base, "row_index": i, "prediction_id": None, "role": "shadow", "inputs": None,
                 "prediction": _dumps(_jsonable(preds[i])), "ood": None} for i in range(n)]
    inputs = rec.get("inputs") or {}
    names = list(inputs)
    objects = _row_objects(names, [_fragments(_plain_list(inputs[k], n)) for k in names], n)
    shown = _fragments(preds[:n] + [None] * (n - len(preds)))
    ood = rec.get("ood")
    rid = rec.get("request_id")
    role = rec.get("role") or "stable"
    out = []
    for i in range(n):
        flags = ood[i] if ood is not None and i < len(ood) else None
        out.append({**base, "row_index": i, "prediction_id": f"{rid}-{i}", "role": role, "inputs": objects[i],
                    "prediction": shown[i], "ood": _dumps(list(flags)) if flags else None})
    return out


def _row_count(rec: dict) -> int:
    """A prediction record's rows: its ``n``, else as many as its predictions."""
    pred = rec.get("predictions")
    sized = hasattr(pred, "__len__") and not isinstance(pred, (str, dict))
    return int(rec.get("n") or 0) or (len(pred) if sized else 1)  # type: ignore[arg-type]


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def _converted(deployment: str, items: list) -> Iterator[list[tuple] | Exception]:
    """The rows of ``items``, a stretch at a time: a run of consecutive predictions with the same input
    columns is converted at once (:func:`_run_rows`), anything else (or a run that fails) one record at a
    time with :func:`_rows_of`; each yield is a list of row tuples, or the exception of one record."""
    i = 0
    while i < len(items):
        kind, ts, rec = items[i]
        j = i + 1
        if kind == "prediction":
            names = _names(rec)
            while j < len(items) and items[j][0] == "prediction" and _names(items[j][2]) == names:
                j += 1
        if j - i > 1:
            try:
                yield _run_rows(deployment, items[i:j])
                i = j
                continue
            except Exception:  # noqa: BLE001 - one odd record: convert the run one by one, it alone fails
                pass
        for kind, ts, rec in items[i:j]:
            try:
                yield [_as_tuple(r) for r in _rows_of(deployment, kind, ts, rec)]
            except Exception as exc:  # noqa: BLE001
                yield exc
        i = j


def _names(rec: dict) -> tuple:
    return tuple(rec.get("inputs") or ())


def _as_tuple(row: dict) -> tuple:
    return tuple(row[k] if k in row else _ROW_DEFAULTS[k] for k in _ROW_COLUMNS)


def _column_fragments(parts: list, ns: list[int]) -> list[str]:
    """The JSON text of one input column's values over several records, each exactly as
    ``_fragments(_plain_list(part, n))`` gives it for its record alone: numeric or text arrays of one
    dtype are joined in C and turned into text once; anything else a record at a time."""
    import numpy as np  # the server has it loaded; ``import nbprod`` does not import this module

    if set(map(type, parts)) == {np.ndarray} and list(map(len, parts)) == ns:
        dtypes = {p.dtype for p in parts}
        kinds = {d.kind for d in dtypes}
        if (len(dtypes) == 1 or kinds == {"U"}) and kinds <= set("biufUO") and all(p.ndim == 1 for p in parts):
            values = _plain_list(np.concatenate(parts), sum(ns))
            if "O" not in kinds or set(map(type, values)) <= _TEXTS:  # objects: only all-text ones take one path
                return _fragments(values)
    out: list[str] = []
    for values, n in zip(parts, ns, strict=True):
        out += _fragments(_plain_list(values, n))
    return out


def _prediction_fragments(preds: list, ns: list[int]) -> list[str]:
    """The JSON text of each row's prediction over several records, as ``_rows_of`` gives each record's."""
    import numpy as np

    first = preds[0]
    if (set(map(type, preds)) == {np.ndarray} and len({(p.dtype, p.shape[1:]) for p in preds}) == 1
            and first.dtype.kind in "biuf" and first.ndim >= 1 and list(map(len, preds)) == ns):
        return _fragments(_prediction_list(np.concatenate(preds), sum(ns)))
    out: list[str] = []
    for pred, n in zip(preds, ns, strict=True):
        values = _prediction_list(pred, n)
        out += _fragments(values[:n] + [None] * (n - len(values)))
    return out


def _run_rows(deployment: str, run: list) -> list[tuple]:
    """The rows of consecutive prediction records with the same input columns, byte for byte what
    :func:`_rows_of` gives each, but converted a column at a time across all of them: a one-row request
    costs the writer a row's work, not a request's worth of per-column calls."""
    recs = [rec for _, _, rec in run]
    ns = [_row_count(rec) for rec in recs]
    total = sum(ns)
    names = list(recs[0].get("inputs") or ())
    columns = [_column_fragments([rec["inputs"][k] for rec in recs], ns) for k in names]
    objects = _row_objects(names, columns, total)
    shown = _prediction_fragments([rec.get("predictions") for rec in recs], ns)
    out: list[tuple] = []
    at = 0
    for (_, ts, rec), n in zip(run, ns, strict=True):
        rid, version, latency = rec.get("request_id"), _s(rec.get("version")), rec.get("latency_ms")
        role = rec.get("role") or "stable"
        ood = rec.get("ood")
        for i in range(n):
            flags = ood[i] if ood is not None and i < len(ood) else None
            out.append((deployment, ts, rid, i, f"{rid}-{i}", version, role, 200, latency, n, objects[at + i],
                        shown[at + i], _dumps(list(flags)) if flags else None))
        at += n
    return out


def write_rows(rows: list[dict], db_url: str | None = None) -> int:
    """Insert prediction-log rows (one ``executemany``); the number written."""
    return _insert([_as_tuple(r) for r in rows], db_url)


def _insert(full: list[tuple], db_url: str | None) -> int:
    """Insert rows given as tuples in ``_ROW_COLUMNS`` order (one ``executemany``)."""
    if not full:
        return 0
    eng = ensure_tables(db_url)
    with eng.connect() as conn:
        conn.execution_options(nbprod_write=True)
        with conn.begin():
            conn.exec_driver_sql(_insert_sql(eng.dialect), full)  # the driver's executemany, no per-row Core work
    return len(full)


_ROW_COLUMNS = ("deployment", "ts", "request_id", "row_index", "prediction_id", "version", "role", "status",
                "latency_ms", "n_rows", "inputs", "prediction", "ood")
_ROW_DEFAULTS = {"request_id": None, "row_index": 0, "prediction_id": None, "version": None, "status": 200,
                 "latency_ms": None, "n_rows": 1, "inputs": None, "prediction": None, "ood": None}


def _insert_sql(dialect) -> str:
    """``INSERT INTO predictions (...) VALUES (?, ...)`` in the driver's positional parameter style."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"  # sqlite3: qmark; psycopg: format/pyformat
    quote = dialect.identifier_preparer.quote
    return (f"INSERT INTO {quote(predictions.name)} ({', '.join(quote(c) for c in _ROW_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_ROW_COLUMNS))})")


def log_rows(deployment: str, records: Iterable[tuple[str, float, dict]], db_url: str | None = None) -> int:
    """Write hook records directly — ``(kind, unix_ts, record)`` with kind prediction|shadow|error.

    The same conversion the server's writer does, synchronously: tests and back-fills use it to
    put traffic in the log fast.
    """
    rows: list[dict] = []
    for kind, ts, rec in records:
        rows.extend(_rows_of(deployment, kind, ts, rec))
    return write_rows(rows, db_url)


# --- the writer ---------------------------------------------------------------------------------


class PredictionLog:
    """A bounded buffer the server's hooks fill, and the thread that writes it to the state DB.

    ``hooks(base)`` returns :class:`~nbprod.serving.app.ServingHooks` with this log's
    ``on_prediction``/``on_shadow``/``on_error`` added to ``base``'s hooks. ``bind_counter`` gives
    it the app's ``nbprod_dropped_log_rows_total`` so drops are counted per row; without one, an
    overflow raises inside the hook and the app counts one drop per request.
    """

    def __init__(self, deployment: str, *, db_url: str | None = None, max_pending_rows: int = 50_000,
                 batch_rows: int = 2_000, flush_s: float = 0.25, max_age_s: float = DEFAULT_MAX_AGE_S,
                 max_rows: int = DEFAULT_MAX_ROWS, prune_every_s: float = 300.0,
                 prune_every_rows: int | None = None, refused_every_s: float = 1.0) -> None:
        self.deployment = deployment
        self.db_url = db_url
        self.max_pending_rows = max_pending_rows
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.max_age_s = max_age_s
        self.max_rows = max_rows
        self.prune_every_s = prune_every_s
        self.prune_every_rows = prune_every_rows or max(100, max_rows // 20)
        self.refused_every_s = refused_every_s
        self._refused: dict[tuple, list] = {}  # (status, version, endpoint) -> [requests, latency sum]
        self._last_refused = 0.0
        self._written_since_prune = 0
        self._flushing = False  # flush() asks for the refused counts now
        self._writing = False  # the writer holds taken records not yet written
        self._buffer: collections.deque = collections.deque()
        self._pending = 0  # rows waiting; only changed under _lock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counter = None
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self._last_prune = 0.0

    # -- the request path: append only -----------------------------------------------------------
    def bind_counter(self, counter) -> None:
        self._counter = counter

    def _put(self, kind: str, record: dict, rows: int) -> None:
        with self._lock:
            if self._pending + rows > self.max_pending_rows:
                full = True
            else:
                full = False
                self._pending += rows
                self._buffer.append((kind, time.time(), record))
        if full:
            self._drop(rows)
            return
        if self._thread is None:
            self.start()
        if self._pending >= self.batch_rows:
            self._wake.set()

    def _drop(self, rows: int) -> None:
        self.dropped += rows
        if self._counter is not None:
            self._counter.inc(rows)
        else:
            raise OverflowError("prediction log buffer full")  # the app counts it (one per request)

    def on_prediction(self, record: dict) -> None:
        self._put("prediction", record, int(record.get("n") or 1))

    def on_shadow(self, record: dict) -> None:
        preds = record.get("predictions")
        self._put("shadow", record, len(preds) if isinstance(preds, list) else 1)

    def on_error(self, record: dict) -> None:
        """A failed request: a 5xx is one log row; a 4xx (refused) is only counted, see the module doc."""
        status = int(record.get("status") or 500)
        if not 400 <= status < 500:
            self._put("error", record, 1)
            return
        key = (status, record.get("version"), record.get("endpoint"))
        with self._lock:
            agg = self._refused.get(key)
            if agg is None:
                self._refused[key] = [1, float(record.get("latency_ms") or 0.0)]
            else:
                agg[0] += 1
                agg[1] += float(record.get("latency_ms") or 0.0)
        if self._thread is None:
            self.start()

    def hooks(self, base: Any = None):
        """ServingHooks with this log's hooks added to ``base``'s (whose own hooks still run first)."""
        from ..serving.app import ServingHooks  # here: a server's supervisor reads retention() without the app

        def chain(first, second):
            if first is None:
                return second

            def both(record: dict) -> None:
                try:
                    first(record)
                finally:
                    second(record)
            return both

        base = base or ServingHooks()
        return ServingHooks(on_prediction=chain(base.on_prediction, self.on_prediction),
                            on_shadow=chain(base.on_shadow, self.on_shadow),
                            on_event=base.on_event,
                            on_error=chain(getattr(base, "on_error", None), self.on_error))

    # -- the writer thread ---------------------------------------------------------------------
    def start(self) -> "PredictionLog":
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=f"nbprod-predlog-{self.deployment}", daemon=True)
            self._thread.start()
        atexit.register(self.close)
        return self

    def _take(self, refused: bool = False) -> list:
        """The buffered records and, when ``refused``, one summary record per refused-request key."""
        with self._lock:
            items = list(self._buffer)
            self._buffer.clear()
            counts, self._refused = (self._refused, {}) if refused else ({}, self._refused)
            self._writing = bool(items or counts)
        now = time.time()
        for (status, version, endpoint), (n, latency) in counts.items():
            items.append(("error", now, {"status": status, "version": version, "endpoint": endpoint, "count": n,
                                         "latency_ms": latency / n}))
        return items

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            now = time.time()
            refused = self._stop.is_set() or self._flushing or now - self._last_refused >= self.refused_every_s
            if refused:
                self._last_refused = now
            items = self._take(refused)
            if items:
                self._write(items)
            self._writing = False
            if (self._written_since_prune >= self.prune_every_rows
                    or time.time() - self._last_prune > self.prune_every_s):
                self._last_prune = time.time()
                self._written_since_prune = 0
                try:
                    self.prune()
                except Exception as exc:  # noqa: BLE001 - pruning is retried next period
                    self.last_error = f"prune: {type(exc).__name__}: {exc}"
            if self._stop.is_set() and not self._buffer and not self._refused:
                return

    def _write(self, items: list) -> None:
        rows: list[tuple] = []
        for converted in _converted(self.deployment, items):
            if isinstance(converted, Exception):  # one odd record never stops the log
                self.last_error = f"convert: {type(converted).__name__}: {converted}"
                self._count_failed(1)
            else:
                rows.extend(converted)
        n_taken = sum(_rows_in(kind, rec) for kind, _, rec in items if "count" not in rec)
        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start:start + self.batch_rows]
            for attempt in (0, 1):
                try:
                    _insert(chunk, self.db_url)
                    self.written += len(chunk)
                    self._written_since_prune += len(chunk)
                    break
                except Exception as exc:  # noqa: BLE001 - the DB may be briefly locked or away
                    self.last_error = f"write: {type(exc).__name__}: {exc}"
                    if attempt:
                        self.failed_batches += 1
                        self._count_failed(len(chunk))
                    else:
                        time.sleep(0.2)
        with self._lock:
            self._pending = max(0, self._pending - n_taken)

    def _count_failed(self, rows: int) -> None:
        self.dropped += rows
        if self._counter is not None:
            self._counter.inc(rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything buffered so far is written (True) or ``timeout`` passes (False)."""
        if self._thread is None:
            return not self._buffer
        deadline = time.monotonic() + timeout
        self._flushing = True  # the writer writes the refused-request counts now, not at the next second
        try:
            self._wake.set()
            while time.monotonic() < deadline:
                if self._pending == 0 and not self._refused and not self._writing:
                    return True  # rows leave _pending only once written (or counted as dropped)
                time.sleep(0.01)  # never spin: the writer needs the GIL
                if self._buffer or self._refused:
                    self._wake.set()
            return self._pending == 0 and not self._refused
        finally:
            self._flushing = False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered and stop the thread (idempotent; also runs at interpreter exit)."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    # -- retention ----------------------------------------------------------------------------
    def prune(self, now: float | None = None) -> int:
        """Delete rows past the age limit, then rows beyond ``max_rows``; the number deleted.

        Beyond ``max_rows`` the oldest error rows go first, then the oldest predictions (and
        shadow answers) without a label, and labelled predictions only when nothing else is left.
        """
        now = time.time() if now is None else now
        cutoff = now - self.max_age_s
        eng = ensure_tables(self.db_url)
        t, f = predictions, feedback_table
        deleted = 0
        with eng.connect() as conn:
            conn.execution_options(nbprod_write=True)
            with conn.begin():
                mine = t.c.deployment == self.deployment
                deleted += self._delete(conn, mine, t.c.ts < cutoff)
                excess = conn.execute(select(func.count()).select_from(t).where(mine)).scalar_one() - self.max_rows
                labelled = exists().where(f.c.prediction_id == t.c.prediction_id)
                for kind in (t.c.role == "error", and_(t.c.role != "error", ~labelled), t.c.role != "error"):
                    if excess <= 0:
                        break
                    oldest = select(t.c.id).where(mine, kind).order_by(t.c.id).limit(excess).scalar_subquery()
                    gone = self._delete(conn, t.c.id.in_(oldest))
                    deleted += gone
                    excess -= gone
                conn.execute(delete(f).where(f.c.updated_at < cutoff))
        if deleted:
            state.reclaim(eng)
        return deleted

    @staticmethod
    def _delete(conn, *where) -> int:
        """Delete the prediction rows matching ``where`` and the feedback of their ids (no orphans)."""
        t, f = predictions, feedback_table
        conn.execute(delete(f).where(f.c.prediction_id.in_(select(t.c.prediction_id).where(*where))))
        return conn.execute(delete(t).where(*where)).rowcount or 0

    def stats(self) -> dict:
        return {"deployment": self.deployment, "written": self.written, "dropped": self.dropped,
                "pending": self._pending, "failed_batches": self.failed_batches, "last_error": self.last_error}


def _option(name: str) -> Any:
    """The nbprod option ``name`` (``%config``, ``NBPROD_<NAME>``, ``[tool.nbprod]``), None if empty."""
    value = getattr(settings, name)
    return None if value in (None, "") else value


def retention() -> dict:
    """``{"max_age_s", "max_rows"}`` of the prediction log from the settings; ConfigError if unusable."""
    from .windows import parse_duration

    age = _option("prediction_log_max_age")
    rows = _option("prediction_log_max_rows")
    out = {"max_age_s": DEFAULT_MAX_AGE_S, "max_rows": DEFAULT_MAX_ROWS}
    if age is not None:
        try:
            out["max_age_s"] = parse_duration(age)
        except ConfigError as exc:
            raise ConfigError(f"prediction_log_max_age ({MAX_AGE_ENV}): {exc.problem}",
                              "use a duration such as 30d or 12h, or a number of seconds") from None
    if rows is not None:
        try:
            number = float(rows)
            if not number.is_integer() or number < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"prediction_log_max_rows ({MAX_ROWS_ENV}) must be a whole number ≥ 1, got {rows!r}",
                              "use e.g. 1000000 (rows kept per deployment)") from None
        out["max_rows"] = int(number)
    return out


def deployment_of(source: Any) -> str:
    """The name a server's rows are logged under: the deployment, or the served model's name."""
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return name
    spec = getattr(source, "spec", None)
    return getattr(spec, "name", None) or "model"


def server_log(source: Any, **options: Any) -> PredictionLog | None:
    """The prediction log of a server serving ``source``, or None when ``NBPROD_PREDICTION_LOG=off``.

    The server's wiring (:mod:`nbprod.service`) passes what it offers to ``create_app``:
    ``log.hooks(base)`` as the hooks and :func:`writer_lifespan` as a lifespan; the writer thread
    starts on the first answer. Retention comes from :func:`retention` unless ``options`` set
    ``max_age_s`` / ``max_rows`` (a bad setting raises ConfigError here, before the server starts).
    """
    if os.environ.get(DISABLE_ENV, "").lower() in ("0", "off", "false", "no"):
        return None
    return PredictionLog(deployment_of(source), **{**retention(), **options})


def writer_lifespan(log: PredictionLog):
    """The app lifespan of ``log``: it counts its dropped rows in the app's ``/metrics``
    (``nbprod_dropped_log_rows_total``), is ``app.state.prediction_log`` while the app runs, and
    writes what is buffered and stops its writer when the app stops (and at interpreter exit)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        log.bind_counter(app.state.serving.metrics.dropped_log_rows)
        app.state.prediction_log = log
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, log.close)

    return lifespan


def _rows_in(kind: str, rec: dict) -> int:
    if kind == "error":
        return 1
    if kind == "shadow":
        preds = rec.get("predictions")
        return len(preds) if isinstance(preds, list) else 1
    return int(rec.get("n") or 1)
