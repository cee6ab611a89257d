"""Reading the prediction log as rows — one per predicted row — whichever form they were written in.

The writer stores one record per request (:mod:`.logrecords`; :func:`.logrecords.columns` and
:func:`.logrecords.unpack` read each form a record was ever written in); a database an older nbprod wrote
holds one row per predicted row (table ``predictions``). Every reader (the monitor, the canary
figures, the alert pipelines' window data, the tests) reads through :func:`load`, which expands
records to rows in Python and puts the per-row form beside them, so each reader sees the rows it
saw when the log was written row by row: the same row order (time, then as written), the same
values (a record's values are the per-row texts' values, :mod:`.logrecords`), the same labels.

A record's row ``i`` has the prediction id ``<id_prefix>-<i>``; its label is the feedback row of
that id, found through ``feedback.request_key`` (an index), never by parsing every id of the log. A
block (:mod:`.logblocks`: a server's run of requests in one record) is expanded request by request,
each with its own id, time and latency; a period reads the blocks that began up to
:data:`~.logblocks.SPAN_S` before it and keeps each request by its own time.

``import nbprod`` does not load this module (pandas).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from .logblocks import SPAN_S, Request, requests_of
from .logrecords import columns, unpack
from .predlog import ensure_tables, feedback_table, prediction_records, predictions

__all__ = ["LogRows", "load", "count_requests", "rows"]

_NAN = float("nan")
_loads = json.loads


@dataclass
class LogRows:
    """The rows of a period: ``frame`` (one row per predicted row, error row or shadow answer: ``ts``,
    ``request_id``, ``row_index``, ``version``, ``role``, ``status``, ``latency_ms``, ``n_rows``,
    ``prediction``, ``ood``, ``label`` as Python values, ``prediction_id`` when asked for) and ``inputs``
    (one row per row of ``frame`` that is neither an error nor a shadow answer, in the same order)."""

    frame: Any
    inputs: Any


class _Rows:
    """Column lists filled row by row (per-row form) or a record at a time."""

    def __init__(self, ids: bool) -> None:
        self.ts: list = []
        self.request_id: list = []
        self.row_index: list = []
        self.version: list = []
        self.role: list = []
        self.status: list = []
        self.latency_ms: list = []
        self.n_rows: list = []
        self.prediction: list = []
        self.ood: list = []
        self.label: list = []
        self.prediction_id: list | None = [] if ids else None
        self.answered: list[bool] = []
        self.columns: dict[str, list] = {}  # the inputs of the answered rows
        self.n_inputs = 0

    def add_inputs(self, values: dict[str, list], n: int) -> None:
        cols = self.columns
        for k, v in values.items():
            col = cols.get(k)
            if col is None:
                cols[k] = col = [_NAN] * self.n_inputs  # a column the earlier rows lacked: missing there
            col.extend(v)
        self.n_inputs += n
        if len(values) != len(cols):
            for col in cols.values():
                if len(col) < self.n_inputs:
                    col.extend([_NAN] * (self.n_inputs - len(col)))

    def frame(self):
        import pandas as pd

        data: dict[str, Any] = {"ts": pd.Series(self.ts, dtype=float), "request_id": self.request_id,
                                "row_index": self.row_index, "version": self.version, "role": self.role,
                                "status": self.status, "latency_ms": pd.Series(self.latency_ms, dtype=float),
                                "n_rows": self.n_rows}
        for k in ("prediction", "ood", "label"):  # values as JSON gave them: a list, a number, None — never coerced
            data[k] = pd.Series(getattr(self, k), dtype=object)
        if self.prediction_id is not None:
            data["prediction_id"] = self.prediction_id
        frame = pd.DataFrame(data)
        if self.columns:
            inputs = pd.DataFrame(self.columns)
        else:
            inputs = pd.DataFrame(index=range(self.n_inputs)) if self.n_inputs else pd.DataFrame()
        return frame, inputs


def _where(table, deployment: str, since: float | None, until: float | None, until_inclusive: bool,
           version: str | None, roles_out: tuple) -> list:
    c = table.c
    out = [c.deployment == deployment]
    if since is not None:
        out.append(c.ts >= since)
    if until is not None:
        out.append(c.ts <= until if until_inclusive else c.ts < until)
    if version is not None:
        out.append(c.version == version)
    if roles_out:
        out.append(c.role.notin_(list(roles_out)))
    return out


def _read_rows(conn, acc: _Rows, where: list, labels: bool, inputs: bool) -> None:
    """The per-row form (an older nbprod's rows), parsed, into ``acc``."""
    t, f = predictions, feedback_table
    cols = [t.c.ts, t.c.request_id, t.c.row_index, t.c.prediction_id, t.c.version, t.c.role, t.c.status,
            t.c.latency_ms, t.c.n_rows, t.c.inputs if inputs else t.c.id, t.c.prediction, t.c.ood]
    stmt = select(*cols, f.c.label if labels else t.c.id)
    stmt = stmt.select_from(t.outerjoin(f, f.c.prediction_id == t.c.prediction_id) if labels else t)
    for (ts, rid, i, pid, version, role, status, latency, n, text, pred, ood, label) in conn.execute(
            stmt.where(*where).order_by(t.c.ts, t.c.id)):
        acc.ts.append(ts)
        acc.request_id.append(rid)
        acc.row_index.append(i)
        if acc.prediction_id is not None:
            acc.prediction_id.append(pid)
        acc.version.append(version)
        acc.role.append(role)
        acc.status.append(status)
        acc.latency_ms.append(latency)
        acc.n_rows.append(n)
        acc.prediction.append(_loads(pred) if pred else None)
        acc.ood.append(_loads(ood) if ood else None)
        acc.label.append(_loads(label) if labels and isinstance(label, str) else None)
        answered = role not in ("error", "shadow")
        acc.answered.append(answered)
        if answered and inputs:
            acc.add_inputs({k: [v] for k, v in (_loads(text) if text else {}).items()}, 1)


def _read_records(conn, acc: _Rows, where: list, labels: bool, inputs: bool, period) -> bool:
    """The records (one per request, or a block of requests: :mod:`.logblocks`), expanded to rows, into
    ``acc``: only the requests whose time ``period`` accepts (``where`` reads blocks that began up to
    :data:`~.logblocks.SPAN_S` before the period). True when a block was read (its rows then need sorting by time)."""
    r, f = prediction_records, feedback_table
    found: dict[Any, list] = {}
    if labels:
        stmt = (select(r.c.id, f.c.prediction_id, f.c.label)
                .select_from(r.join(f, f.c.request_key == r.c.id_prefix)).where(*where))
        for rec_id, pid, label in conn.execute(stmt):
            found.setdefault(rec_id, []).append((pid, label))
    stmt = select(r.c.id, r.c.ts, r.c.request_id, r.c.id_prefix, r.c.version, r.c.role, r.c.status, r.c.latency_ms,
                  r.c.n_rows, r.c.inputs if inputs else r.c.id, r.c.predictions, r.c.ood, r.c.requests)
    any_block = False
    for (rec_id, ts, rid, prefix, version, role, status, latency, n, text, preds, ood, block) in conn.execute(
            stmt.where(*where).order_by(r.c.ts, r.c.id)):
        rows = 1 if role == "error" else n
        starts: dict[str, tuple[int, int]] = {}  # request id -> (its first row in the record, its rows)
        if block is None:
            if not period(ts):
                continue
            units = [(rid, prefix, ts, latency, n, 0, rows)]
            if prefix is not None:
                starts[prefix] = (0, rows)
        else:
            units, at = [], 0
            for q in requests_of(block, ts):
                if period(q.ts):
                    units.append((q.request_id, q.request_id, q.ts, q.latency_ms, q.n, at, q.n))
                starts[q.request_id] = (at, q.n)
                at += q.n
            if not units:
                continue
            any_block = True
        kept_rows = sum(u[6] for u in units)
        kept = _all if kept_rows == rows else _kept(units)
        for urid, upfx, uts, ulat, un, _, count in units:
            acc.ts += [uts] * count
            acc.request_id += [urid] * count
            acc.row_index += range(count)
            acc.latency_ms += [ulat] * count
            acc.n_rows += [un] * count
            if acc.prediction_id is not None:
                acc.prediction_id += [f"{upfx}-{i}" for i in range(count)] if upfx is not None else [None] * count
        acc.version += [version] * kept_rows
        acc.role += [role] * kept_rows
        acc.status += [status] * kept_rows
        if preds is None:
            acc.prediction += [None] * kept_rows
        else:
            values = unpack(_loads(preds))
            acc.prediction += kept(values if len(values) == rows else (values + [None] * rows)[:rows])
        if ood is None:
            acc.ood += [None] * kept_rows
        else:
            flags: list = [None] * rows
            for i, reasons in _loads(ood).items():
                if int(i) < rows:
                    flags[int(i)] = reasons
            acc.ood += kept(flags)
        marks: list = [None] * rows
        for pid, label in found.get(rec_id, ()):
            req, _, index = pid.rpartition("-")
            where_ = starts.get(req)
            if where_ is not None and index.isdigit() and int(index) < where_[1]:
                marks[where_[0] + int(index)] = _loads(label)
        acc.label += kept(marks)
        answered = role not in ("error", "shadow")
        acc.answered += [answered] * kept_rows
        if answered and inputs:
            values_of = columns(_loads(text)) if text else {}
            acc.add_inputs(values_of if kept is _all else {k: kept(v) for k, v in values_of.items()}, kept_rows)
    return any_block


def _all(values: list) -> list:
    return values


def _kept(units: list):
    """A record's values (one per row) → the rows of ``units`` (``(…, first row, rows)``), in order."""
    def kept(values: list) -> list:
        return [v for u in units for v in values[u[5]:u[5] + u[6]]]
    return kept


def _period(since: float | None, until: float | None, until_inclusive: bool):
    """A request time → whether it lies in ``[since, until)`` (``until`` included when asked)."""
    lo = -math.inf if since is None else since
    hi = math.inf if until is None else until
    if until_inclusive:
        return lambda ts: lo <= ts <= hi
    return lambda ts: lo <= ts < hi


def load(deployment: str, *, since: float | None = None, until: float | None = None, until_inclusive: bool = False,
         version: str | None = None, roles_out: tuple = ("shadow",), labels: bool = True, inputs: bool = True,
         ids: bool = False, db_url: str | None = None) -> LogRows:
    """The rows of ``deployment`` logged in ``[since, until)`` (``until`` included when asked), oldest first,
    without the roles in ``roles_out``; ``labels``: join the feedback; ``inputs``: parse the inputs;
    ``ids``: add the prediction ids."""
    eng = ensure_tables(db_url)
    old, new = _Rows(ids), _Rows(ids)
    with eng.connect() as conn:
        _read_rows(conn, old, _where(predictions, deployment, since, until, until_inclusive, version, roles_out),
                   labels, inputs)
        blocks = _read_records(conn, new, _where(prediction_records, deployment, None if since is None else
                                                 since - SPAN_S, until, until_inclusive, version, roles_out),
                               labels, inputs, _period(since, until, until_inclusive))
    if old.ts and new.ts:  # both forms in the period (a database an older nbprod wrote to): one order, by time
        import pandas as pd

        f_old, i_old = old.frame()
        f_new, i_new = new.frame()
        frame, inputs_frame = _by_time(pd.concat([f_old, f_new], ignore_index=True),
                                       pd.concat([i_old, i_new], ignore_index=True) if inputs else None,
                                       old.answered + new.answered)
    elif old.ts:
        frame, inputs_frame = old.frame()
    else:
        frame, inputs_frame = new.frame()
        if blocks and any(b < a for a, b in itertools.pairwise(new.ts)):  # blocks of two workers overlap in time
            frame, inputs_frame = _by_time(frame, inputs_frame if inputs else None, new.answered)
    return LogRows(frame, inputs_frame)


def _by_time(frame, inputs_frame, answered: list[bool]):
    """``frame`` in time order (stably: rows of one time keep their order) and ``inputs_frame`` (one row per
    answered row of ``frame``; None: no inputs read) in the same order."""
    import numpy as np
    import pandas as pd

    order = np.argsort(frame["ts"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    if inputs_frame is None:
        return frame, pd.DataFrame()
    mask = np.asarray(answered, dtype=bool)
    position = np.cumsum(mask) - 1
    return frame, inputs_frame.iloc[position[order][mask[order]]].reset_index(drop=True)


def count_requests(deployment: str, since: float, db_url: str | None = None) -> int:
    """Requests logged since ``since`` — every record, and the first row of each request in the per-row
    form (as the pipelines' ``wait`` step has always counted them: answers, shadow answers, errors)."""
    t, r = predictions, prediction_records
    with ensure_tables(db_url).connect() as conn:
        old = conn.execute(select(func.count()).where(t.c.deployment == deployment, t.c.ts >= since,
                                                      t.c.row_index == 0)).scalar()
        new = conn.execute(select(func.sum(func.coalesce(r.c.n_requests, 1)))
                           .where(r.c.deployment == deployment, r.c.ts >= since)).scalar()
        # a block that began before ``since`` holds requests after it (logblocks.SPAN_S)
        for ts, block in conn.execute(select(r.c.ts, r.c.requests).where(
                r.c.deployment == deployment, r.c.ts >= since - SPAN_S, r.c.ts < since, r.c.requests.is_not(None))):
            new = int(new or 0) + sum(q.ts >= since for q in requests_of(block, ts))
    return int(old or 0) + int(new or 0)


def rows(deployment: str | None = None, db_url: str | None = None) -> list:
    """Every row of the log (of ``deployment``) in the per-row form an older nbprod wrote — ``deployment``,
    ``ts``, ``request_id``, ``row_index``, ``prediction_id``, ``version``, ``role``, ``status``, ``latency_ms``,
    ``n_rows`` and the JSON texts ``inputs``, ``prediction``, ``ood`` —, per-row rows first, then the records'
    rows in the order they were written: what tests and a person debugging a log compare against."""
    from .logrecords import _dumps

    t, r = predictions, prediction_records
    out: list = []
    with ensure_tables(db_url).connect() as conn:
        stmt = select(t).order_by(t.c.id)
        if deployment is not None:
            stmt = stmt.where(t.c.deployment == deployment)
        out += [SimpleNamespace(**row._asdict()) for row in conn.execute(stmt)]
        stmt = select(r).order_by(r.c.id)
        if deployment is not None:
            stmt = stmt.where(r.c.deployment == deployment)
        for rec in conn.execute(stmt):
            n = 1 if rec.role == "error" else rec.n_rows
            values = columns(_loads(rec.inputs)) if rec.inputs is not None else None
            preds = unpack(_loads(rec.predictions)) if rec.predictions is not None else [None] * n
            flags = _loads(rec.ood) if rec.ood else {}
            requests = (requests_of(rec.requests, rec.ts) if rec.requests is not None else
                        [Request(rec.request_id, rec.n_rows, rec.ts, rec.latency_ms)])
            at = 0
            for q in requests:
                for i in range(1 if rec.role == "error" else q.n):
                    out.append(SimpleNamespace(
                        deployment=rec.deployment, ts=q.ts, request_id=q.request_id, row_index=i,
                        prediction_id=None if rec.id_prefix is None else
                        f"{rec.id_prefix if rec.requests is None else q.request_id}-{i}", version=rec.version,
                        role=rec.role, status=rec.status, latency_ms=q.latency_ms, n_rows=q.n,
                        inputs=None if values is None else _dumps({k: v[at] for k, v in values.items()}),
                        prediction=None if rec.role == "error" else _dumps(preds[at]),
                        ood=_dumps(flags[str(at)]) if str(at) in flags else None))
                    at += 1
    return out
