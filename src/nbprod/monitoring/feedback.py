"""Ground truth that arrives late: ``nbprod.feedback(prediction_ids, labels)``, joined by prediction id.

Decisions, so callers can rely on them:

- An id the prediction log does not hold is **reported back** (``result.unknown``) and not stored:
  a typo or a label for another deployment never pollutes the realised metrics silently.
- Sending the same label again is a no-op (``result.unchanged``): retries are safe. Labels are
  normalised first — ``True``/``1``/``1.0`` are one label (stored as ``1``) — so a retry with
  another encoding is not reported as an update.
- Sending a *different* label for an id that has one **updates** it (labels get corrected in
  real life) and says so (``result.updated``, with the old label), so nothing changes silently.
- The whole call is one transaction: either every known id is stored or none is.
- An id is known when the log holds its row: a row of the per-row form an older nbprod wrote, or
  row ``i`` of the record of request ``<request_id>`` for ``<request_id>-<i>`` (:mod:`.predlog`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import select

from .. import state
from .._display import Display, Lines, View
from ..errors import DataError
from .logblocks import requests_of
from .predlog import ensure_tables, feedback_table, prediction_records, predictions

__all__ = ["feedback", "FeedbackResult"]

_CHUNK = 500
#: The longest prediction id: the log's column (a server's ids, ``<32 hex digits>-<row>``, are far shorter).
MAX_ID = 80


@dataclass(repr=False)
class FeedbackResult(Display):
    """What one feedback call did, id by id."""

    stored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    updated: list[dict] = field(default_factory=list)  # {"prediction_id", "old", "new"}
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when some ids were unknown (the CLI exits 1 so a pipeline notices)."""
        return not self.unknown

    def to_dict(self) -> dict:
        return {"stored": len(self.stored), "unchanged": len(self.unchanged), "updated": self.updated,
                "unknown": list(self.unknown), "ok": self.ok}

    def _line(self) -> str:
        return (f"feedback: {len(self.stored)} stored, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged, {len(self.unknown)} unknown id(s)")

    def _view(self) -> View:
        lines = [f"updated {u['prediction_id']}: {u['old']!r} → {u['new']!r}" for u in self.updated[:10]]
        if len(self.updated) > 10:
            lines.append(f"… {len(self.updated) - 10} more updated (to_dict() has them all)")
        if self.unknown:
            more = f" (+{len(self.unknown) - 10} more)" if len(self.unknown) > 10 else ""
            lines.append(f"unknown (not in the prediction log, not stored): {', '.join(self.unknown[:10])}{more}")
        return View(self._line(), [Lines(lines, style="list")] if lines else [], tone="ok" if self.ok else "bad")


def _label(value: Any) -> Any:
    """``value`` as the one stored form of its label, else a DataError saying what is wrong with it."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise DataError("is missing (None, NaN or an empty cell)",
                        "send a label for every prediction id (drop the missing ones)")
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError("is infinite", "send a real label for every prediction id")
    if not isinstance(value, (str, int, float, bool)):
        raise DataError(f"is a {type(value).__name__}, not a number, a string or a bool",
                        "send one scalar label per prediction id")
    if isinstance(value, bool):
        return int(value)  # True and 1 are one label (JSON true, a bool column, 1 from a CSV)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are one label
    return value


def _short(pid: str) -> str:
    """``pid`` as an error message quotes it: never a client's whole 10,000-character string."""
    return repr(pid) if len(pid) <= MAX_ID else repr(pid[:24] + "…")


def _as_list(values: Any, what: str) -> list:
    if isinstance(values, (str, bytes)):
        return [values]
    if hasattr(values, "tolist"):
        return list(values.tolist())
    try:
        return list(values)
    except TypeError:
        raise DataError(f"{what} must be a list (or array/Series), got {type(values).__name__}",
                        f"pass {what} as a list") from None


def _in_records(conn, ids: list[str]) -> dict[str, str]:
    """The ids of ``ids`` that name a row of a record (``<request id>-<i>``, ``i`` < the request's rows, written
    as the server writes it: no sign, no leading zero) → that record's ``id_prefix``: the record of that
    request alone, or the block holding it (:mod:`.logblocks`: the block of its prefix that begins
    closest below it)."""
    wanted: dict[str, list[tuple[str, int]]] = {}
    for pid in ids:
        prefix, dash, index = pid.rpartition("-")
        if dash and index.isdigit() and index.isascii() and str(int(index)) == index:
            wanted.setdefault(prefix, []).append((pid, int(index)))
    if not wanted:
        return {}
    r = prediction_records
    out: dict[str, str] = {}
    found = conn.execute(select(r.c.id_prefix, r.c.n_rows, r.c.ts, r.c.requests)
                         .where(r.c.id_prefix.in_(list(wanted)))).all()
    for prefix, n, ts, block in found:
        if block is not None:
            n = requests_of(block, ts)[0].n
        out.update((pid, prefix) for pid, i in wanted.pop(prefix) if i < n)
    for request in wanted:
        if len(request) != 32:  # not an id a server made: never in a block
            continue
        # the block beginning closest below it holds it; a few more are looked at, should a writer's later
        # block have begun inside an earlier one's range (a second log object in one process: logblocks)
        for candidate in conn.execute(select(r.c.id_prefix, r.c.ts, r.c.requests).where(
                r.c.id_prefix < request, r.c.id_prefix >= request[:20], r.c.requests.is_not(None))
                .order_by(r.c.id_prefix.desc()).limit(4)):
            rows = {q.request_id: q.n for q in requests_of(candidate.requests, candidate.ts)}.get(request)
            if rows is not None:
                out.update((pid, candidate.id_prefix) for pid, i in wanted[request] if i < rows)
                break
    return out


def feedback(prediction_ids: Iterable[str] | str, labels: Any) -> FeedbackResult:
    """Store the true ``labels`` of earlier predictions (ids from the server's ``prediction_ids``)."""

    ids = [str(i) for i in _as_list(prediction_ids, "prediction_ids")]
    for n, pid in enumerate(ids, 1):
        if len(pid) > MAX_ID:
            raise DataError(f"prediction id {n} ({_short(pid)}) is {len(pid):,} characters long: no prediction has "
                            f"an id over {MAX_ID}", "send the ids from a server's answer (its 'prediction_ids')")
    values = _as_list(labels, "labels") if not isinstance(labels, (int, float, bool)) else [labels]
    if len(ids) != len(values):
        raise DataError(f"{len(ids)} prediction id(s) but {len(values)} label(s)",
                        "pass one label per prediction id, in the same order")
    pairs: dict[str, str] = {}
    for n, (pid, value) in enumerate(zip(ids, values, strict=True), 1):  # lengths checked above
        try:
            text = json.dumps(_label(value))
        except DataError as exc:
            raise DataError(f"label {n} (for prediction id {_short(pid)}) {exc.problem}", exc.fix) from None
        if pid in pairs and pairs[pid] != text:
            raise DataError(f"prediction id {_short(pid)} appears twice with different labels",
                            "send each prediction id once")
        pairs[pid] = text
    result = FeedbackResult()
    if not pairs:
        return result
    ensure_tables()
    now = time.time()
    f, p = feedback_table, predictions
    keys = list(pairs)
    with state.write_transaction() as conn:
        known: dict[str, str | None] = {}  # id -> the request_key of its record (None: a per-row-form row)
        existing: dict[str, str] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            known.update((r[0], None) for r in conn.execute(select(p.c.prediction_id)
                                                            .where(p.c.prediction_id.in_(chunk))))
            known.update(_in_records(conn, [pid for pid in chunk if pid not in known]))
            existing.update((r[0], r[1]) for r in conn.execute(select(f.c.prediction_id, f.c.label)
                                                                .where(f.c.prediction_id.in_(chunk))))
        new_rows = []
        for pid in keys:
            text = pairs[pid]
            if pid not in known:
                result.unknown.append(pid)
            elif pid not in existing:
                new_rows.append({"prediction_id": pid, "label": text, "ts": now, "updated_at": now,
                                 "request_key": known[pid]})
                result.stored.append(pid)
            elif existing[pid] == text:
                result.unchanged.append(pid)
            else:
                conn.execute(f.update().where(f.c.prediction_id == pid).values(label=text, updated_at=now))
                result.updated.append({"prediction_id": pid, "old": json.loads(existing[pid]), "new": json.loads(text)})
        if new_rows:
            conn.execute(f.insert(), new_rows)
    return result
