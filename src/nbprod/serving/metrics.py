"""Prometheus metrics of one app, in a registry of its own (two apps in one process never clash).

Exposed at ``GET /metrics`` in the Prometheus text format. Labels stay low-cardinality: model
version, HTTP status, endpoint, role — never a request id or a column value.

A server with several workers: one scrape lands on one worker, yet must show the whole server, or
counters go backwards between two scrapes that land on different workers. :func:`multiprocess_dir`
gives such a server a directory of its own (``PROMETHEUS_MULTIPROC_DIR``, set before the workers
start, removed when the server stops); each worker's counters and histograms live in memory-mapped
files there (prometheus-client's multiprocess mode), and every scrape sums the files of all
workers — also of workers that died, so a replaced worker's counts are not lost. The in-flight
gauge sums live workers only: a worker marks itself dead when its app stops, and a scrape marks
workers that were killed (pid gone). The route weights and spec generation are the answering
worker's own (every worker serves the same spec within a poll interval), computed at scrape time,
so a route that was removed never lingers in a file.

The request path does not write those values itself: :meth:`ServingMetrics.child` and
``in_flight`` hand out buffers (:mod:`._metricbuffer`) that keep a request's updates in memory;
a thread adds them to the values every 50 ms, a scrape before it collects, and the app's end
(:meth:`close`). So one worker's own figures are exact in its scrape, another worker's are at most ~50 ms behind
(a test that reads a multi-worker server's ``/metrics`` polls for the figure it expects), and a
worker killed outright loses its last ~50 ms of counts (docs/design-notes.md). The exposition is
the same: the same metrics, labels and buckets, with the same values once flushed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .._pids import alive
from . import _metricbuffer as buffer

__all__ = ["ServingMetrics", "CONTENT_TYPE_LATEST", "MULTIPROC_ENV", "multiprocess_dir", "observe_many"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_VALUE_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0)


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh metrics directory for one multi-worker server, in ``PROMETHEUS_MULTIPROC_DIR`` while it runs.

    Set it before the workers start (they inherit the environment and prometheus-client reads it
    at import); removed afterwards, so a restarted server never adds up an earlier one's counts.
    """
    path = tempfile.mkdtemp(prefix="nbprod-metrics-")  # 0700: counts are nobody else's business
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(path, ignore_errors=True)


def observe_many(hist: Any, values: np.ndarray) -> None:
    """``hist.observe(v)`` for every value of a float array, in one pass: one increment per bucket hit
    and one of the sum (a 1,000-row answer is 2 to 20 writes, not 2,000; in multiprocess mode each
    is a write to a memory-mapped file). Falls back to ``observe`` if prometheus-client's histogram
    child is not laid out as expected. A buffered child (:meth:`ServingMetrics.child`) keeps the
    values in memory until its flush."""
    if type(hist) is buffer.PendingHistogram:
        hist.observe_many(values)
        return
    bounds = getattr(hist, "_upper_bounds", None)
    buckets = getattr(hist, "_buckets", None)
    total = getattr(hist, "_sum", None)
    if len(values) <= 4 or bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for v in values.tolist():
            hist.observe(v)
        return
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left"),
                         minlength=len(bounds) + 1)  # first bound >= value, as observe(); NaN lands past +Inf
    total.inc(float(values.sum()))
    for i in np.flatnonzero(counts[:len(bounds)]).tolist():
        buckets[i].inc(int(counts[i]))


def _multiprocess_path() -> str | None:
    """The multiprocess directory this process writes to, if prometheus-client is in that mode."""
    from prometheus_client import values

    path = os.environ.get(MULTIPROC_ENV)
    if not path or values.ValueClass.__name__ == "MutexValue":  # imported before the variable was set
        return None
    return path


_PID = [os.getpid()]  # this process's id, kept up to date across forks
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
_pid_cached = False


def _pid() -> int:
    return _PID[0]


def _cache_the_pid() -> None:
    """In multiprocess mode, prometheus-client asks ``os.getpid()`` on every increment (to notice a fork):
    a system call, ten per prediction request (5.9 % of a worker's request time, py-spy). Its documented
    ``MultiProcessValue(process_identifier=...)`` takes the id from :data:`_PID` instead, which a fork
    updates — so a fork is noticed as before. Done once per process, and only while no value exists yet
    under the original class (two of them would keep two maps of the same file): else left as it is."""
    global _pid_cached
    from prometheus_client import values

    if _pid_cached:
        return
    _pid_cached = True
    cls = values.ValueClass
    init = getattr(cls, "__init__", None)
    names = getattr(getattr(init, "__code__", None), "co_freevars", ())
    cells = dict(zip(names, getattr(init, "__closure__", None) or (), strict=False))
    created = cells.get("values")
    if cls.__name__ != "MmapedValue" or created is None or not isinstance(created.cell_contents, list) \
            or created.cell_contents:
        return
    values.ValueClass = values.MultiProcessValue(process_identifier=_pid)


def _reap(path: str) -> None:
    """Mark workers that were killed (no exit handler ran) dead, so live gauges stop counting them."""
    from prometheus_client.multiprocess import mark_process_dead

    pids = set()
    for f in Path(path).glob("gauge_live*_*.db"):
        tail = f.stem.rsplit("_", 1)[-1]
        if tail.isdigit():
            pids.add(int(tail))
    for pid in pids:
        if pid != os.getpid() and not alive(pid):
            mark_process_dead(pid, path)


class _RouteCollector:
    """``nbprod_route_weight`` and ``nbprod_spec_generation`` from this process's routing table."""

    def __init__(self) -> None:
        self.table = None

    def collect(self):
        weight = GaugeMetricFamily("nbprod_route_weight", "Traffic weight per served version; path = fastpath|pyfunc.",
                                   labels=["version", "role", "path"])
        generation = GaugeMetricFamily("nbprod_spec_generation", "Generation of the deployment spec being served.")
        table = self.table
        if table is not None:
            for route, served in table.routes:
                if served is not None:
                    weight.add_metric([str(served.version), str(route.role), str(served.path_kind)], route.weight)
            generation.add_metric([], table.generation)
        else:
            generation.add_metric([], 0)
        return [weight, generation]


class ServingMetrics:
    """Every metric the server exports; one instance per app."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_path = _multiprocess_path()
        if self.multiprocess_path is not None:
            _cache_the_pid()
        self.requests = Counter("nbprod_requests_total", "Prediction requests answered.",
                                ["version", "status", "endpoint"], registry=r)
        self.latency = Histogram("nbprod_request_latency_seconds", "Prediction request latency (server side).",
                                 ["version", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.predictions = Histogram("nbprod_prediction_value", "Numeric prediction values (one per row).",
                                     ["version"], buckets=_VALUE_BUCKETS, registry=r)
        self.rows = Counter("nbprod_predicted_rows_total", "Rows predicted.", ["version", "role"], registry=r)
        self.ood_rows = Counter("nbprod_ood_rows_total", "Rows flagged out of the training distribution.",
                                ["version"], registry=r)
        self.ood_rejected = Counter("nbprod_ood_rejected_total", "Requests refused by ood='reject'.",
                                    ["version"], registry=r)
        self.in_flight = buffer.PendingGauge(Gauge("nbprod_in_flight_requests", "Requests being handled now.",
                                                   registry=r, multiprocess_mode="livesum"))
        self.model_errors = Counter("nbprod_model_errors_total", "Exceptions raised by a model's predict.",
                                    ["version", "role"], registry=r)
        self.fallbacks = Counter("nbprod_canary_fallbacks_total",
                                 "Canary requests answered by the stable version after a canary failure.",
                                 ["version", "reason"], registry=r)
        self.load_failures = Counter("nbprod_version_load_failures_total", "Model versions that failed to load.",
                                     ["version", "role"], registry=r)
        self.dropped_log_rows = Counter("nbprod_dropped_log_rows_total",
                                        "Prediction-log rows dropped because the log could not keep up.", registry=r)
        self.log_cpu = Counter("nbprod_prediction_log_cpu_seconds_total",
                               "CPU seconds the prediction log's writer spent, by phase (convert, insert, prune).",
                               ["phase"], registry=r)
        self.batch_rows = Histogram("nbprod_batch_rows", "Rows per model call after micro-batching.",
                                    ["version"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                                    registry=r)
        self._children: dict[tuple, Any] = {}
        self._buffers: list[buffer.Pending] = [self.in_flight]
        self._routes = _RouteCollector()
        r.register(self._routes)
        buffer.watch(self)
        if self.multiprocess_path is not None:
            atexit.register(self._at_exit, os.getpid(), self.multiprocess_path)

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, looked up once (prometheus-client validates and locks on every
        ``labels()`` call, and the request path asks for the same few children all the time), as a
        buffer with the child's ``inc``/``observe``/``dec``: the request only appends to a deque, the
        value is written by :meth:`flush` (module docstring)."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            if len(self._children) > 4096:  # labels are low-cardinality; never grow without bound anyway
                self.flush()
                self._children.clear()
                self._buffers = [self.in_flight]
            found = self._children[key] = self._buffered(metric.labels(*labels))
        return found

    def _buffered(self, raw: Any) -> Any:
        if isinstance(raw, Counter):
            found: Any = buffer.PendingCounter(raw)
        elif isinstance(raw, Gauge):
            found = buffer.PendingGauge(raw)
        elif isinstance(raw, Histogram) and buffer.histogram_layout(raw) is not None:
            found = buffer.PendingHistogram(raw)
        else:
            return raw  # written to directly, as before
        self._buffers.append(found)
        return found

    def pending(self) -> list[buffer.Pending]:
        """The buffers :meth:`flush` empties."""
        return self._buffers

    def flush(self) -> None:
        """Write every update the request path buffered into the metric values (the scrape, the exit
        and a thread every 50 ms call it; a test may too)."""
        buffer.flush(self)

    def close(self) -> None:
        """The app stops (its lifespan's end): write what is buffered, and in multiprocess mode stop
        counting this worker's in-flight gauge. A uvicorn worker stopped by SIGTERM ends by re-raising
        the signal once the lifespan is over, so its :mod:`atexit` handlers never run: this is where a
        clean stop keeps every count."""
        self.flush()
        if self.multiprocess_path is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), self.multiprocess_path)

    def _at_exit(self, pid: int, path: str) -> None:
        """An exit that runs its handlers (no lifespan end before it, or a spawned process): as :meth:`close`."""
        from prometheus_client.multiprocess import mark_process_dead

        buffer.unwatch(self)
        try:
            self.flush()
        finally:
            mark_process_dead(pid, path)

    def set_routes(self, table) -> None:
        self._routes.table = table

    def render(self) -> bytes:
        self.flush()  # this process's own figures exact; other workers' at most one flush interval behind
        path = self.multiprocess_path
        if path is None or not os.path.isdir(path):
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        _reap(path)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=path)  # every worker's files, summed
        scrape.register(self._routes)
        return generate_latest(scrape)
