"""The prediction log: every answered request, every shadow answer and every failed request, in the state DB.

Why it is built this way:

- The server's hooks run on the event loop, so :class:`PredictionLog` only *appends a reference*
  to the request's arrays to a bounded in-memory buffer (no JSON, no SQL on the request path).
  One background thread drains the buffer every ``flush_s`` (or as soon as ``batch_rows`` rows
  wait), turns each request into ONE record (:mod:`.logrecords`: its inputs as one columnar JSON
  text, its predictions as one JSON list, its OOD flags as a sparse map) — a run of consecutive
  answers into one block record (:mod:`.logblocks`) — and writes a batch of records in one
  transaction (``executemany`` per at most 256 records). The log's cost is per request, not per
  predicted row, and for small requests per block (issue 13); readers expand records to rows
  (:mod:`.logread`), one per predicted row, as before. The writer shares the GIL with the server's
  event loop, so it works in stretches of about a millisecond and sleeps briefly between them
  (:meth:`PredictionLog._write`).
- Databases written by an older nbprod hold one row per predicted row in the table
  ``predictions``; it is kept, never written again except by :func:`write_rows`, and read,
  pruned and joined beside the records of ``prediction_records`` (docs/design-notes.md).
- When the buffer holds ``max_pending_rows`` rows the new request's rows are dropped — never
  waited for — and counted in ``nbprod_dropped_log_rows_total`` (per row). A failing DB write is
  retried once, then its rows are dropped and counted too; a prediction never waits or fails
  because of the log. A request's record is one row of one transaction: it is stored whole or
  not at all, also when the process is killed.
- Error rate: every failed request is in the log. A server error (5xx) is ONE record with
  ``status`` set and no prediction ids. A refused request (4xx: a wrong token, bad input, a body
  too large) is *counted*, not logged one by one: the writer writes at most one record per status,
  version and endpoint per ``refused_every_s`` (1 s), whose ``n_rows`` says how many requests it
  stands for. A flood of refused requests therefore costs the log a bounded number of records,
  and windows still count requests and errors exactly (``/metrics`` counts them too, per status).
- Shadow answers are records with ``role='shadow'``, no prediction ids and no inputs (they are
  the stable request's inputs: join on ``request_id`` + ``row_index``).
- What the log costs its server is counted: the writer's own CPU time per phase (``convert``, ``insert``,
  ``prune``) in ``nbprod_prediction_log_cpu_seconds_total{phase}`` and :meth:`PredictionLog.stats`. On
  requests of many rows the writer takes a fifth to a quarter of its server's CPU (issue 13, BENCHMARKS.md:
  Serving), and an operator deciding on retention or on ``NBPROD_PREDICTION_LOG=off`` should see that
  cost, not guess it.
- Feedback (:mod:`.feedback`) is keyed by prediction id ``<request_id>-<row>``; a label of a
  record's row also stores the record's ``request_key`` (its request id), so readers and
  retention join labels to records by equality, with an index.
- Retention: the writer deletes records older than ``max_age_s`` and keeps at most ``max_rows``
  rows per deployment (a record counts its ``n_rows``; an error record one). It prunes after
  every ``prune_every_rows`` rows it writes (a twentieth of ``max_rows``, at least 100) and at
  least every ``prune_every_s``, so the log exceeds its cap by at most about
  ``prune_every_rows`` per worker. A prune is a fixed handful of statements: the database finds
  the last record to go (a running sum of the rows) and deletes up to it in one statement. Over the
  cap it deletes whole records, oldest first: error
  records first, then predictions without a label, and labelled predictions last: a refused
  request never displaces a prediction, and an error never displaces a label. The feedback of
  every deleted prediction goes with it, and feedback older than ``max_age_s`` too. On SQLite the
  freed pages go back to the file system (``auto_vacuum=INCREMENTAL``, see :mod:`nbprod.state`),
  except those the next ``2 * prune_every_rows`` rows will fill again (a log at its cap keeps its size).
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
import functools
import math
import os
import threading
import time
from typing import Any, Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    inspect,
    select,
)

from .. import state
from ..config import settings
from ..errors import ConfigError
from .logblocks import MAX_ROWS as MAX_BLOCK_ROWS
from .logblocks import blocks
from .logrecords import RECORD_COLUMNS, records_of, rows_in

__all__ = ["predictions", "prediction_records", "feedback_table", "PredictionLog", "server_log", "writer_lifespan",
           "ensure_tables", "write_rows", "log_rows", "retention", "DEFAULT_MAX_AGE_S", "DEFAULT_MAX_ROWS",
           "MAX_AGE_ENV", "MAX_ROWS_ENV"]

DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
CPU_PHASES = ("convert", "insert", "prune")  # the writer's work, as nbprod_prediction_log_cpu_seconds_total counts it
DISABLE_ENV = "NBPROD_PREDICTION_LOG"  # "off" / "0": the server logs nothing (benchmarks, privacy)
DEFAULT_MAX_ROWS = 1_000_000
MAX_AGE_ENV = "NBPROD_PREDICTION_LOG_MAX_AGE"  # option prediction_log_max_age: "30d", "12h" or seconds
MAX_ROWS_ENV = "NBPROD_PREDICTION_LOG_MAX_ROWS"  # option prediction_log_max_rows: rows kept per deployment

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER PRIMARY KEY

#: The per-row form an older nbprod wrote (one row per predicted row): read, pruned and joined, not written
#: by the server any more (:func:`write_rows` still writes it: back-fills and the compatibility tests).
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

#: One record per request (:mod:`.logrecords`): what the writer writes.
prediction_records = Table(
    "prediction_records", state.metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("deployment", String(255), nullable=False),
    Column("ts", Float, nullable=False),  # unix time the answer was sent
    Column("request_id", String(64)),
    Column("id_prefix", String(64)),  # the rows' prediction ids are "<id_prefix>-<i>"; NULL: shadow, error
    Column("version", String(64)),
    Column("role", String(16), nullable=False),  # stable | canary | pinned | gate | batch | shadow | error
    Column("status", Integer, nullable=False, default=200),
    Column("latency_ms", Float),  # server-side latency of the whole request
    Column("n_rows", Integer, nullable=False, default=1),  # rows in the request; error records: requests counted
    Column("inputs", Text),  # columnar JSON {"column": [v0, ...]}; from 8 rows compact (logrecords: dtypes, codes)
    Column("predictions", Text),  # JSON list, one value per row; from 8 rows packed (logrecords)
    Column("ood", Text),  # JSON {"row": [reasons]} of the rows out of distribution; NULL when none is
    Column("requests", Text),  # a block's requests (logblocks: ids, rows, times, latencies); NULL: one request
    Column("n_requests", Integer),  # the requests a block holds; NULL: one request
    Index("ix_prediction_records_deployment_ts", "deployment", "ts"),
    Index("ux_prediction_records_id_prefix", "id_prefix", unique=True),  # a prediction id names one row
    # the prune's count of a deployment's rows reads this index alone, not every record's page (a compact
    # 100-row record fills a page of its own: the count read the whole log at each prune)
    Index("ix_prediction_records_deployment_role_rows", "deployment", "role", "n_rows"),
)

feedback_table = Table(
    "feedback", state.metadata,
    Column("prediction_id", String(80), primary_key=True),
    Column("label", Text, nullable=False),  # JSON value
    Column("ts", Float, nullable=False),  # when the label first arrived
    Column("updated_at", Float, nullable=False),
    Column("request_key", String(64)),  # the id_prefix of the record holding the row; NULL: a per-row-form row
    Index("ix_feedback_request_key", "request_key"),
    # every prune deletes the labels past the age limit: without it that read every label (13 ms at 300,000)
    Index("ix_feedback_updated_at", "updated_at"),
)

_created: set = set()


def ensure_tables(db_url: str | None = None):
    """The state-DB engine with the prediction-log and feedback tables created (once per process); tables
    an older nbprod created gain the columns and indexes added since (feedback's ``request_key``, the
    records' ``requests`` and ``n_requests``) here."""
    eng = state.engine(db_url)
    key = (str(eng.url), os.getpid())
    if key not in _created:
        with eng.connect() as conn:
            conn.execution_options(nbprod_write=True)
            with conn.begin():
                state.lock(conn, "nbprod.schema")
                predictions.create(conn, checkfirst=True)
                for table in (prediction_records, feedback_table):
                    table.create(conn, checkfirst=True)
                    _add_missing_columns(conn, table)
                    for index in table.indexes:  # an index added since an older nbprod made the table
                        index.create(conn, checkfirst=True)
        _created.add(key)
    return eng


def _add_missing_columns(conn, table: Table) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each nullable column of ``table`` the database's table lacks (one an
    older nbprod created)."""
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    quote = conn.dialect.identifier_preparer.quote
    for column in table.columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")


def write_rows(rows: list[dict], db_url: str | None = None) -> int:
    """Insert rows in the per-row form an older nbprod wrote (table ``predictions``); the number written.

    The server does not write this form any more; back-fills of old rows and the tests that check
    such databases still read right do."""
    return _insert(predictions, _ROW_COLUMNS, [_as_tuple(r) for r in rows], db_url)


def _insert(table: Table, columns: tuple, full: list[tuple], db: str | Engine | None, piece: int = 0,
            pause: Any = None) -> int:
    """Insert tuples in ``columns`` order into ``table`` in one transaction: one ``executemany``, or one per
    ``piece`` tuples with ``pause()`` between them (the writer's GIL hand-over, :meth:`PredictionLog._write`).
    ``db``: the state DB's URL (None: the settings'), or its engine (:meth:`PredictionLog._engine`)."""
    if not full:
        return 0
    eng = db if isinstance(db, Engine) else ensure_tables(db)
    sql = _insert_sql(eng.dialect, table, columns)
    step = piece or len(full)
    with eng.connect() as conn:
        conn.execution_options(nbprod_write=True)
        with conn.begin():
            for start in range(0, len(full), step):
                if start and pause is not None:
                    pause()
                conn.exec_driver_sql(sql, full[start:start + step])  # no per-row Core work
    return len(full)


_ROW_COLUMNS = ("deployment", "ts", "request_id", "row_index", "prediction_id", "version", "role", "status",
                "latency_ms", "n_rows", "inputs", "prediction", "ood")
_ROW_DEFAULTS = {"request_id": None, "row_index": 0, "prediction_id": None, "version": None, "status": 200,
                 "latency_ms": None, "n_rows": 1, "inputs": None, "prediction": None, "ood": None}


def _as_tuple(row: dict) -> tuple:
    return tuple(row[k] if k in row else _ROW_DEFAULTS[k] for k in _ROW_COLUMNS)


@functools.lru_cache(maxsize=64)
def _insert_sql(dialect, table: Table, columns: tuple) -> str:
    """``INSERT INTO table (...) VALUES (?, ...)`` in the driver's positional parameter style."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"  # sqlite3: qmark; psycopg: format/pyformat
    quote = dialect.identifier_preparer.quote
    return (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})")


#: The rows a stored record counts for in SQL (retention): an error record is one, whatever requests it counts.
_ROWS = case((prediction_records.c.role == "error", 1), else_=prediction_records.c.n_rows)


_ROLE, _N_ROWS = RECORD_COLUMNS.index("role"), RECORD_COLUMNS.index("n_rows")


def _record_rows(rec: tuple) -> int:
    """The rows a stored record counts for (written, retention): an error record is one."""
    return 1 if rec[_ROLE] == "error" else rec[_N_ROWS]


def _insert_records(recs: list[tuple], db: str | Engine | None, piece: int = 0, pause: Any = None) -> int:
    """Insert stored records (:data:`~.logrecords.RECORD_COLUMNS` tuples) in one transaction; rows written.
    ``db``: as :func:`_insert`'s."""
    _insert(prediction_records, RECORD_COLUMNS, recs, db, piece, pause)
    return sum(map(_record_rows, recs))


def log_rows(deployment: str, items: Iterable[tuple[str, float, dict]], db_url: str | None = None) -> int:
    """Write hook records directly — ``(kind, unix_ts, record)`` with kind prediction|shadow|error —;
    the number of rows written (a request's record counts its rows).

    The same conversion the server's writer does, synchronously, in one transaction: the batch scorer
    logs its batches with it, tests and back-fills put traffic in the log fast. A record that cannot be
    stored raises (nothing of the call is written).
    """
    recs: list[tuple] = []
    for rec in records_of(deployment, list(items)):
        if isinstance(rec, Exception):
            raise rec
        recs.append(rec)
    return _insert_records(recs, db_url)


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
        self.cpu_s = dict.fromkeys(CPU_PHASES, 0.0)  # the writer thread's CPU seconds per phase (stats(), metrics)
        self._cpu_counters: dict[str, Any] = {}
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self._last_prune = 0.0
        self._worked_since = 0.0
        self._after = ""  # the highest request id in a block so far (logblocks: a block starts above it)
        self._engine_of: tuple[int, Any] = (0, None)  # (pid, engine): see _engine()
        self._sql: _PruneSql | None = None  # the prune's statements, built at the first prune

    # -- the request path: append only -----------------------------------------------------------
    def bind_counter(self, counter) -> None:
        self._counter = counter

    def bind_cpu_counter(self, counter) -> None:
        """Count the writer's CPU seconds per phase in ``counter`` (a Counter labelled ``phase``) too."""
        self._cpu_counters = {phase: counter.labels(phase) for phase in CPU_PHASES}

    def _spent(self, phase: str, seconds: float) -> None:
        self.cpu_s[phase] += seconds
        child = self._cpu_counters.get(phase)
        if child is not None:
            child.inc(seconds)

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
        if self._pending >= self.batch_rows and not self._wake.is_set():  # set() takes a lock and notifies
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
                started = time.thread_time()
                try:
                    self.prune()
                except Exception as exc:  # noqa: BLE001 - pruning is retried next period
                    self.last_error = f"prune: {type(exc).__name__}: {exc}"
                self._spent("prune", time.thread_time() - started)
            if self._stop.is_set() and not self._buffer and not self._refused:
                return

    #: The writer converts this many rows and inserts at most this many records at a time (one
    #: ``executemany``; a transaction still holds ``batch_rows`` rows), and after a millisecond of such
    #: steps sleeps ``yield_s`` (see :meth:`_write`).
    slice_rows = 256
    piece_records = 256
    yield_s = 0.0001
    _yield_every_s = 0.001

    def _write(self, items: list) -> None:
        """Convert and insert ``items``, giving the GIL away between stretches of work.

        The writer shares its process's GIL with the server's event loop. A thread that wants the GIL
        waits up to the switch interval (5 ms) before it may force a switch, and a holder that
        releases it briefly (sqlite3 does per row of an ``executemany``) and takes it back at once
        restarts that wait: a batch converted and inserted in one go stalled the event loop for
        milliseconds (issue 13: wrk's p99). So the batch is converted ``slice_rows`` rows at a time and
        inserted ``piece_records`` records per ``executemany`` (a transaction still holds about
        ``batch_rows`` rows: a commit per piece cost the writer a fifth more CPU on one-row requests; a
        record is whole or not at all, as before), and every millisecond of such steps is followed by
        a real sleep (0.1 ms), short enough that the writer keeps up, long enough that a waiting thread
        gets the GIL.
        """
        recs: list[tuple] = []
        self._worked_since = time.perf_counter()
        started = time.thread_time()  # this thread's CPU: the sleeps between stretches are not counted
        n_taken = sum(rows_in(kind, rec) for kind, _, rec in items if "count" not in rec)
        items, self._after = blocks(items, self._after, min(MAX_BLOCK_ROWS, self.prune_every_rows))
        for part in _slices(items, self.slice_rows):
            for converted in records_of(self.deployment, part):
                if isinstance(converted, Exception):  # one odd record never stops the log
                    self.last_error = f"convert: {type(converted).__name__}: {converted}"
                    self._count_failed(1)
                else:
                    recs.append(converted)
            self._yield()
        converted_at = time.thread_time()
        self._spent("convert", converted_at - started)
        for chunk in _chunks(recs, self.batch_rows):
            self._yield()
            for attempt in (0, 1):
                try:
                    rows = _insert_records(chunk, self._engine(), self.piece_records, self._yield)
                    self.written += rows
                    self._written_since_prune += rows
                    break
                except Exception as exc:  # noqa: BLE001 - the DB may be briefly locked or away
                    self.last_error = f"write: {type(exc).__name__}: {exc}"
                    if attempt:
                        self.failed_batches += 1
                        self._count_failed(sum(map(_record_rows, chunk)))
                    else:
                        time.sleep(0.2)
        self._spent("insert", time.thread_time() - converted_at)
        with self._lock:
            self._pending = max(0, self._pending - n_taken)

    def _engine(self) -> Engine:
        """The state DB's engine, tables ensured, resolved once per process: resolving the settings' URL
        and looking the engine up cost the writer ~0.1 ms per call (issue 13: a transaction of 100-row
        requests holds about 20 of them, so that was several µs per request)."""
        pid = os.getpid()
        if self._engine_of[0] != pid:  # a forked worker never uses its parent's pooled connections
            self._engine_of = (pid, ensure_tables(self.db_url))
        return self._engine_of[1]

    def _yield(self) -> None:
        """Sleep ``yield_s`` (the GIL is free meanwhile) once a millisecond of work has passed since the last
        time: a sleep of 0 would not do, the sleeper takes the GIL back before a waiting thread wakes."""
        now = time.perf_counter()
        if self.yield_s > 0 and now - self._worked_since >= self._yield_every_s:
            time.sleep(self.yield_s)
            self._worked_since = time.perf_counter()

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
        """Delete what is past the age limit, then the oldest beyond ``max_rows``; the rows deleted.

        Whole records go (a request is kept or deleted with all its rows), and the per-row form an
        older nbprod wrote goes before the records (it is older). Beyond ``max_rows`` the oldest
        error records go first, then the oldest predictions (and shadow answers) without a label,
        and labelled predictions only when nothing else is left.

        The statements are built once per log (:class:`_PruneSql`) and the per-row form's only when the
        deployment has rows there: building them each time was most of a prune that deletes little
        (issue 13: a prune every few hundred 100-row requests).
        """
        now = time.time() if now is None else now
        cutoff = {"cutoff": now - self.max_age_s}
        eng = self._engine()
        if self._sql is None:
            self._sql = _PruneSql(self.deployment)
        q = self._sql
        deleted = 0
        sqlite = eng.dialect.name == "sqlite"
        with eng.connect() as conn:
            conn.execution_options(nbprod_write=True)
            with conn.begin():
                free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0) if sqlite else 0
                legacy = conn.execute(q.has_legacy).first() is not None
                if legacy:
                    conn.execute(q.legacy_aged_feedback, cutoff)
                    deleted += conn.execute(q.legacy_aged, cutoff).rowcount or 0
                aged = int(conn.execute(q.aged_rows, cutoff).scalar() or 0)
                if aged:
                    conn.execute(q.aged_feedback, cutoff)
                    conn.execute(q.aged, cutoff)
                    deleted += aged
                records, errors, count = conn.execute(q.totals).one()
                held = int(records or 0) + (int(conn.execute(q.legacy_count).scalar_one()) if legacy else 0)
                excess = held - self.max_rows
                per_record = int(records or 0) / max(1, count or 0)
                for kind in q.kinds:  # errors, then unlabelled predictions, then labelled ones
                    if excess > 0 and legacy:
                        conn.execute(kind.legacy_feedback, {"n": excess})
                        gone = conn.execute(kind.legacy_delete, {"n": excess}).rowcount or 0
                        deleted += gone
                        excess -= gone
                    if excess > 0 and (errors or not kind.errors):  # no error record: nothing to look for
                        gone = self._delete_oldest_records(conn, kind, excess, per_record)
                        deleted += gone
                        excess -= gone
                conn.execute(q.feedback_aged, cutoff)
                freed = (int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0) - free
                         if sqlite and deleted else 0)
        if deleted:
            # a log at its cap writes about ``prune_every_rows`` rows before its next prune (twice that: the other
            # workers write too): the pages those rows held stay free for them; beyond that (an age cut, a lowered
            # cap) the file shrinks
            state.reclaim(eng, keep=int(freed * min(1.0, 2 * self.prune_every_rows / deleted)))
        return deleted

    @staticmethod
    def _delete_oldest_records(conn, kind: "_Kind", excess: int, per_record: float) -> int:
        """Delete the oldest records of ``kind`` until they held ``excess`` rows; the rows deleted.

        The database finds the last record to go (a running sum of the rows, oldest first) and deletes
        up to it in one statement: no id crosses into Python. Fetching the ids and deleting them 500 at a
        time held the writer thread's GIL for most of a prune (issue 13: half the log's cost in a worker
        once the log is at its cap, and the event loop waits for the GIL meanwhile).

        The running sum reads about twice the records that ``excess`` rows take at ``per_record`` rows a
        record (the deployment's average), not ``excess`` records: with 100-row requests that was every
        record of the log at each prune (issue 13: the biggest statement of a prune). When those records
        hold fewer than ``excess`` rows they all go and the next stretch, twice as long, is read: the
        records deleted are the same as with one unbounded running sum.
        """
        scan = 2 * math.ceil(excess / max(1.0, per_record)) + 16
        deleted = 0
        while excess > 0:
            # each record holds a row at least: the oldest ``excess`` records are always enough
            last, held = conn.execute(kind.last, {"scan": min(scan, excess), "excess": excess}).one()
            if last is None or not held:
                break
            if kind.feedback is not None:  # labelled records: their rows' feedback goes with them (no orphans)
                conn.execute(kind.feedback, {"last": last})
            conn.execute(kind.delete, {"last": last})
            deleted += int(held)
            excess -= int(held)
            scan *= 2
        return deleted

    def stats(self) -> dict:
        return {"deployment": self.deployment, "written": self.written, "dropped": self.dropped,
                "pending": self._pending, "failed_batches": self.failed_batches, "last_error": self.last_error,
                "cpu_s": dict(self.cpu_s)}


class _Kind:
    """The statements that delete the oldest records (and per-row-form rows) of one kind: errors, unlabelled
    predictions or labelled ones (:meth:`PredictionLog.prune`). Parameters: ``n``, ``scan``, ``excess``, ``last``."""

    def __init__(self, deployment: str, old_kind: Any, new_kind: Any, errors: bool, labelled: bool) -> None:
        t, r, f = predictions, prediction_records, feedback_table
        self.errors = errors
        n = bindparam("n", type_=Integer())
        oldest = select(t.c.id).where(t.c.deployment == deployment, old_kind).order_by(t.c.id).limit(n) \
            .scalar_subquery()
        self.legacy_feedback = delete(f).where(f.c.prediction_id.in_(select(t.c.prediction_id)
                                                                     .where(t.c.id.in_(oldest))))
        self.legacy_delete = delete(t).where(t.c.id.in_(oldest))
        # oldest first: the planner walks the primary key and stops early, where the indexed
        # ``deployment = ?`` made it read and sort every record of the deployment (SQLite)
        mine = and_(r.c.deployment.concat("") == deployment, new_kind)
        upto = func.sum(_ROWS).over(order_by=r.c.id, rows=(None, 0))  # rows held by this record and the older ones
        window = select(r.c.id, _ROWS.label("held"), upto.label("upto")).where(mine).order_by(r.c.id) \
            .limit(bindparam("scan", type_=Integer())).subquery()
        self.last = select(func.max(window.c.id), func.max(window.c.upto)) \
            .where(window.c.upto - window.c.held < bindparam("excess", type_=Integer()))
        upto_last = and_(mine, r.c.id <= bindparam("last", type_=Integer()))
        self.feedback = (delete(f).where(f.c.request_key.in_(select(r.c.id_prefix).where(upto_last)))
                         if labelled else None)
        self.delete = delete(r).where(upto_last)


class _PruneSql:
    """A deployment's prune statements, built once (:meth:`PredictionLog.prune`); parameter ``cutoff``."""

    def __init__(self, deployment: str) -> None:
        t, r, f = predictions, prediction_records, feedback_table
        cutoff = bindparam("cutoff", type_=Float())
        old, new = t.c.deployment == deployment, r.c.deployment == deployment
        self.has_legacy = select(t.c.id).where(old).limit(1)
        self.legacy_aged_feedback = delete(f).where(f.c.prediction_id.in_(select(t.c.prediction_id)
                                                                          .where(old, t.c.ts < cutoff)))
        self.legacy_aged = delete(t).where(old, t.c.ts < cutoff)
        self.legacy_count = select(func.count()).select_from(t).where(old)
        self.aged_rows = select(func.sum(_ROWS)).where(new, r.c.ts < cutoff)
        self.aged_feedback = delete(f).where(f.c.request_key.in_(select(r.c.id_prefix).where(new, r.c.ts < cutoff)))
        self.aged = delete(r).where(new, r.c.ts < cutoff)
        self.totals = select(func.sum(_ROWS), func.sum(case((r.c.role == "error", 1), else_=0)), func.count()) \
            .where(new)
        self.feedback_aged = delete(f).where(f.c.updated_at < cutoff)
        unlabelled_old = and_(t.c.role != "error", ~exists().where(f.c.prediction_id == t.c.prediction_id))
        unlabelled_new = and_(r.c.role != "error", ~exists().where(f.c.request_key == r.c.id_prefix))
        self.kinds = (_Kind(deployment, t.c.role == "error", r.c.role == "error", errors=True, labelled=False),
                      _Kind(deployment, unlabelled_old, unlabelled_new, errors=False, labelled=False),
                      _Kind(deployment, t.c.role != "error", r.c.role != "error", errors=False, labelled=True))


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
    """The app lifespan of ``log``: it counts its dropped rows and its writer's CPU in the app's
    ``/metrics`` (``nbprod_dropped_log_rows_total``, ``nbprod_prediction_log_cpu_seconds_total``), is
    ``app.state.prediction_log`` while the app runs, and writes what is buffered and stops its writer when
    the app stops (and at interpreter exit)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        log.bind_counter(app.state.serving.metrics.dropped_log_rows)
        log.bind_cpu_counter(app.state.serving.metrics.log_cpu)
        app.state.prediction_log = log
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, log.close)

    return lifespan


def _chunks(recs: list[tuple], rows: int) -> Iterable[list[tuple]]:
    """``recs`` in consecutive chunks of about ``rows`` rows (a record is never split: it is one row)."""
    chunk: list[tuple] = []
    held = 0
    for rec in recs:
        chunk.append(rec)
        held += _record_rows(rec)
        if held >= rows:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _slices(items: list, rows: int) -> Iterable[list]:
    """The hook records ``items`` in consecutive slices of about ``rows`` rows each."""
    start, held = 0, 0
    for i, (kind, _, rec) in enumerate(items):
        held += rows_in(kind, rec)
        if held >= rows:
            yield items[start:i + 1]
            start, held = i + 1, 0
    if start < len(items):
        yield items[start:]
