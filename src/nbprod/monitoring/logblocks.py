"""Blocks: a run of a server's small answered requests stored as ONE record of the prediction log.

Why: at the log's row cap every record the writer inserts is a record a prune deletes, and each is
a row in four B-trees (the table and its three indexes), a commit's share and a conversion's fixed
cost. For one-row requests that was most of the log's cost (issue 13: insert 11–14, prune 4–8 and
conversion 10 µs per request in a loaded server); a block of up to :data:`MAX_REQUESTS` requests
pays each of them once. Requests of :data:`LARGE` rows or more are stored alone: their cost is per byte.

A block is a record (:mod:`.logrecords`) whose ``inputs``, ``predictions`` and ``ood`` hold every row
of its requests, one after the other, as one request of ``n_rows`` rows would; what tells the
requests apart is its ``requests`` text, ``{"p": prefix, "c": counters, "n": rows, "t": µs, "l": µs}``:

- ``p`` and ``c``: the request ids. A server's ids are a per-process prefix of 20 hex digits and a
  12-digit hex counter (``nbprod.serving.app``), so a block is only made of requests of one prefix and
  strictly increasing counters: ``c`` is the first counter, then each one's step from the one before.
- ``n``: each request's rows (one number when they are all alike, the usual case);
- ``t``: each request's time after the record's ``ts`` (the first request's), in whole µs;
- ``l``: each request's server-side latency in whole µs.

The record's own ``request_id`` and ``id_prefix`` are its first request's id, ``latency_ms`` its first
request's latency and ``n_requests`` how many it holds (``requests`` and ``n_requests`` are NULL on a
record of one request). Readers (:mod:`.logread`) expand a block into the rows each request's own record
would have given, with times and latencies to the microsecond.

How a prediction id ``<request id>-<i>`` finds its block (:mod:`.feedback`): a record whose ``id_prefix``
is the request id (a request stored alone, or a block's first), else the block of that prefix with the
greatest ``id_prefix`` below it. That is the right one because a writer starts a block only above the
highest id of its earlier blocks (``after`` below): the blocks of one process cover disjoint ranges of ids.
A request that comes later than a higher id (its prediction waited) is stored alone. (A second log object
in the same process starts without that knowledge; feedback then looks at the next blocks below too.)

A block spans at most :data:`SPAN_S` seconds, so a reader of ``[since, until)`` reads the records from
``since - SPAN_S`` and keeps each request by its own time.

``import nbprod`` does not load this module.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, NamedTuple

__all__ = ["LARGE", "MAX_REQUESTS", "MAX_ROWS", "SPAN_S", "Request", "blocks", "requests_of"]

#: A block holds at most this many requests and rows: its conversion is one stretch of about a millisecond
#: with the GIL held (the writer's unit of work, :meth:`~.predlog.PredictionLog._write`). Blocks of up to
#: 2,048 rows and 512 requests gave no more throughput and a worse, less steady p99 (BENCHMARKS.md, Serving).
MAX_REQUESTS = 256
MAX_ROWS = 512
#: A request of this many rows or more is stored alone: its cost is per byte, and joining its arrays into a
#: block costs about what the block saves in inserts and deletes (100-row requests in blocks: 0.549 against
#: 0.544 CPU-ms a request in a server, p99 18.6 against 15.9 ms: BENCHMARKS.md, Serving).
LARGE = 8
#: A block's requests were answered within this many seconds (readers widen their period by it).
SPAN_S = 1.0

_HEX = frozenset("0123456789abcdef")
_PREFIX = 20  # a server's request id: 20 hex digits of its process, 12 of its counter


class Request(NamedTuple):
    """One request of a block: its id, rows, unix time and latency."""

    request_id: str
    n: int
    ts: float
    latency_ms: float


class _Joined(dict):
    """A block's inputs: ``{column: values}`` with what :mod:`.logrecords` reads of the server's coerced inputs
    (``nbprod.serving.codecs.Coerced``): the numeric columns as one float64 matrix and the text columns'
    distinct values."""

    __slots__ = ("numeric", "matrix", "distinct")

    def __init__(self, columns: dict, numeric: tuple, matrix: Any, distinct: dict | None) -> None:
        super().__init__(columns)
        self.numeric = numeric
        self.matrix = matrix
        self.distinct = distinct


def _key(rec: dict) -> tuple | None:
    """What requests of one block share, or None when ``rec`` cannot join a block (not a server's answer
    as :mod:`nbprod.serving.app` hands it over: an id of 32 hex digits, coerced inputs, a numpy prediction;
    or a request of :data:`LARGE` rows or more)."""
    try:
        rid, inputs, pred, n = rec["request_id"], rec["inputs"], rec["predictions"], rec["n"]
        matrix, kind, ndim = inputs.matrix, pred.dtype.kind, pred.ndim
        if (len(rid) != 32 or type(rec["latency_ms"]) is not float or type(n) is not int or not 0 < n < LARGE
                or kind not in "biufU" or ndim not in (1, 2) or len(pred) != n
                or matrix.shape != (len(inputs.numeric), n) or type(pred).__module__ != "numpy"
                or not _HEX.issuperset(rid)):
            return None
    except (KeyError, AttributeError, TypeError):
        return None
    return (rid[:_PREFIX], rec.get("version"), rec.get("role"), inputs.numeric, inputs.keys(), pred.dtype,
            pred.shape[1:])  # keys(): compared as a set, in C (a request's columns are the signature's)


def blocks(items: list, after: str = "", max_rows: int = MAX_ROWS) -> tuple[list, str]:
    """``items`` (the writer's ``(kind, ts, hook record)``) with each run of at least two consecutive server
    answers that fit one block of at most ``max_rows`` rows replaced by one ``("block", ts, record)``; and the
    highest request id now in a block (the next call's ``after``: a block starts only above it, see the module
    docstring). The writer passes a bound below its prune step: a block never holds much of the log's cap."""
    out: list = []
    i = 0
    while i < len(items):
        kind, ts0, rec = items[i]
        key = _key(rec) if kind == "prediction" else None
        rid: Any = rec.get("request_id")
        if key is None or (after[:_PREFIX] == key[0] and rid <= after):
            out.append(items[i])
            i += 1
            continue
        last: Any = rid
        rows, j = rec["n"], i + 1
        while j < len(items) and j - i < MAX_REQUESTS:
            kind2, ts, rec2 = items[j]
            n = rec2.get("n")
            if (kind2 != "prediction" or type(n) is not int or rows + n > max_rows or not 0 <= ts - ts0 <= SPAN_S
                    or not str(rec2.get("request_id")) > last or _key(rec2) != key):
                break
            rows += n
            last = rec2["request_id"]
            j += 1
        if j - i > 1:
            try:
                merged = _merged(items[i:j])
            except Exception:  # noqa: BLE001 - inputs that do not join (odd shapes): each request stored alone
                merged = None
            if merged is not None:
                out.append(("block", ts0, merged))
                after = last
                i = j
                continue
        out.append(items[i])
        i += 1
    return out, after


def _merged(run: list) -> dict | None:
    """The hook record of a run of requests as one request of all their rows (the block's ``requests``
    text added), or None when their inputs cannot be joined."""
    import numpy as np

    recs = [rec for _, _, rec in run]
    first = recs[0]["inputs"]
    numeric = {k: j for j, k in enumerate(first.numeric)}
    matrix = np.concatenate([rec["inputs"].matrix for rec in recs], axis=1)
    columns: dict[str, Any] = {}
    distinct: dict[str, Any] = {}
    for k, values in first.items():
        at = numeric.get(k)
        if at is not None:  # every value of an integer column is exact in the float64 matrix (below 2**53)
            if type(values) is not np.ndarray:
                return None
            columns[k] = matrix[at] if values.dtype == np.float64 else matrix[at].astype(values.dtype)
            continue
        parts = [rec["inputs"][k] for rec in recs]
        if set(map(type, parts)) != {list}:
            return None
        columns[k] = list(itertools.chain.from_iterable(parts))
        seen: list[Any] = [(rec["inputs"].distinct or {}).get(k) for rec in recs]
        if all(s is not None for s in seen):  # else logrecords finds the column's distinct values itself
            distinct[k] = set().union(*seen)
    inputs = _Joined(columns, first.numeric, matrix, distinct)
    ns = [rec["n"] for rec in recs]
    oods = [rec.get("ood") for rec in recs]
    ood = None
    if any(o is not None for o in oods):
        ood = list(itertools.chain.from_iterable([None] * n if o is None else (list(o) + [None] * n)[:n]
                                                 for o, n in zip(oods, ns, strict=True)))
    ts0 = run[0][1]
    counters = [int(rec["request_id"][_PREFIX:], 16) for rec in recs]
    steps = [counters[0]] + [b - a for a, b in itertools.pairwise(counters)]
    layout = {"p": recs[0]["request_id"][:_PREFIX], "c": steps, "n": ns[0] if len(set(ns)) == 1 else ns,
              "t": [round((ts - ts0) * 1e6) for _, ts, _ in run],
              "l": [round(rec["latency_ms"] * 1000) for rec in recs]}
    return {"request_id": recs[0]["request_id"], "version": recs[0].get("version"), "role": recs[0].get("role"),
            "n": sum(ns), "inputs": inputs, "predictions": np.concatenate([rec["predictions"] for rec in recs]),
            "ood": ood, "latency_ms": recs[0]["latency_ms"], "requests": json.dumps(layout, separators=(",", ":")),
            "n_requests": len(recs)}


def requests_of(text: str, ts: float) -> list[Request]:
    """A block's requests from its ``requests`` text and its record's ``ts``."""
    layout = json.loads(text)
    prefix = layout["p"]
    counters = list(itertools.accumulate(layout["c"]))
    ns = layout["n"]
    if type(ns) is int:
        ns = [ns] * len(counters)
    return [Request("%s%012x" % (prefix, c), n, ts + t / 1e6, latency / 1000)
            for c, n, t, latency in zip(counters, ns, layout["t"], layout["l"], strict=True)]
