"""The audit trail: an append-only, hash-chained log of who did what to which model.

Every registry and deployment action calls :func:`record`, which appends one row to the
``audit_log`` table of nbprod's state DB: UTC timestamp, user, host, action, model URI, details
(JSON), notebook, git commit and dirty flag — plus ``prev_hash`` (the previous row's hash) and
``hash`` = sha256 of the canonical JSON of the row's fields *including* ``prev_hash`` and its
position ``seq``. A separate one-row table ``audit_head`` holds the last ``seq`` and ``hash``.

What :func:`verify` guarantees
------------------------------
It recomputes every hash and walks the chain 1, 2, … N, then compares the end with the head row.
Any change made to the log without recomputing the chain is reported with the first bad row:

- an **edited** row (any field, including its hash) no longer matches its hash or its
  successor's ``prev_hash``;
- an **inserted** row breaks its successor's ``prev_hash``, or needs a renumbering of ``seq``
  that changes every later hash;
- a **deleted** row leaves a gap in ``seq`` and a ``prev_hash`` that matches nothing; deleting
  the **newest** rows leaves a chain shorter than the head says; deleting the head row with the
  log non-empty is reported too.

What it cannot see: someone with write access to the database who rewrites the whole chain
consistently (recomputing every hash and the head), or who deletes the log *and* its head
(that looks like a fresh, empty log). The chain has no secret key — it makes tampering evident,
not impossible. To close that gap, keep the head elsewhere (``verify().head`` is ``"<seq>:<hash>"``:
put it in a ticket, a git tag, an MLflow tag) and check it later with ``verify(anchor=...)``:
a rewritten or truncated chain no longer contains the anchor.

Concurrency: :func:`record` reads the head and appends under the state DB's write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``), so concurrent writers — two notebooks
registering at once — queue up; none is lost and the chain stays linear.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

from . import _context, _format, state
from ._display import Cell, Display, Lines, Table, View
from .errors import AuditChainBroken, AuditError

__all__ = ["record", "history", "verify", "AuditEntry", "AuditTable", "AuditVerification", "GENESIS",
           "model_name"]

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""

_HASHED = ("seq", "timestamp", "user", "host", "action", "model", "model_uri", "details", "notebook",
           "git_commit", "git_dirty", "prev_hash")
_LOCK = "nbprod.audit"


def model_name(uri: str | None) -> str | None:
    """The registered model name in ``models:/name/3``, ``models:/name@alias``, ``name@alias``, ``name``."""
    if not uri:
        return None
    rest = uri[len("models:/"):] if uri.startswith("models:/") else uri
    rest = rest.split("@", 1)[0]
    match = re.match(r"^(.*?)(?:/(\d+|latest))?/?$", rest)
    name = match.group(1) if match else rest
    return name or None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: fields[k] for k in _HASHED}).encode("utf-8")).hexdigest()


def _details_text(details: dict | None) -> str:
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise AuditError(f"audit details must be a dict, got {type(details).__name__}",
                         "pass details as a dict of JSON values, e.g. {'alias': 'champion'}")
    try:
        return _canonical(details)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON-serialisable: {exc}",
                         "pass only str, int, float (finite), bool, None, lists and dicts with str keys; "
                         "convert numpy values with float()/int() and paths with str()") from exc


# --- result objects ---------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class AuditEntry(Display):
    """One row of the audit log."""

    seq: int
    timestamp: str
    user: str
    host: str | None
    action: str
    model: str | None
    model_uri: str | None
    details: dict[str, Any]
    notebook: str | None
    git_commit: str | None
    git_dirty: bool | None
    prev_hash: str
    hash: str

    @classmethod
    def _from_row(cls, row) -> AuditEntry:
        m = row._mapping
        try:
            details = json.loads(m["details"])
        except (TypeError, ValueError):
            details = {"_unparseable": str(m["details"])}
        return cls(seq=m["seq"], timestamp=m["timestamp"], user=m["user"], host=m["host"], action=m["action"],
                   model=m["model"], model_uri=m["model_uri"], details=details, notebook=m["notebook"],
                   git_commit=m["git_commit"], git_dirty=m["git_dirty"], prev_hash=m["prev_hash"], hash=m["hash"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _view(self) -> View:
        what = f" {self.model_uri}" if self.model_uri else ""
        return View(f"#{self.seq} {self.timestamp} {self.user} {self.action}{what} {_short(self.details)}".rstrip())


def _short(details: dict, width: int = 60) -> str:
    if not details:
        return ""
    s = ", ".join(f"{k}={v if not isinstance(v, (dict, list)) else _canonical(v)}" for k, v in details.items())
    return s if len(s) <= width else s[: width - 1] + "…"


_COLUMNS = ("seq", "timestamp", "user", "action", "model_uri", "details", "notebook", "git_commit")


@dataclass(repr=False)
class AuditTable(Display):
    """Audit entries, newest first; a table in a notebook and in a terminal."""

    entries: list[AuditEntry]
    model: str | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, i: int) -> AuditEntry:
        return self.entries[i]

    def _cells(self, e: AuditEntry) -> list[Any]:
        """A row; the long cells (details, notebook) keep their whole text in the HTML's title (on
        hover), and the details wrap inside a bounded width instead of pushing the table off the page."""
        commit = (e.git_commit or "")[:8] + ("*" if e.git_dirty else "")
        full = ", ".join(f"{k}={v if not isinstance(v, (dict, list)) else _canonical(v)}" for k, v in e.details.items())
        details = Cell(_short(e.details), title=full or None, html_text=full,
                       style="max-width:32em;white-space:normal;overflow-wrap:anywhere") if e.details else ""
        notebook = Cell(Path(e.notebook).name, title=e.notebook) if e.notebook else ""
        return [str(e.seq), e.timestamp[:19].replace("T", " "), e.user, e.action, e.model_uri or "",
                details, notebook, commit]

    def _title(self) -> str:
        scope = f" for {self.model}" if self.model else ""
        n = len(self.entries)
        return f"audit log{scope}: {_format.count(n)} entr{'y' if n == 1 else 'ies'}"

    def _view(self) -> View:
        table = Table(_COLUMNS, [self._cells(e) for e in self.entries], all_in_text=True,
                      more="older entries (to_frame() has them all)")
        return View(self._title(), [table] if self.entries else [])

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "entries": [e.to_dict() for e in self.entries]}

    def to_frame(self):
        import pandas as pd  # here: heavy, and only this export needs it

        frame = pd.DataFrame([e.to_dict() for e in self.entries],
                             columns=list(AuditEntry.__dataclass_fields__))
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame


@dataclass(repr=False)
class AuditVerification(Display):
    """The result of :func:`verify`: ``ok``, how many rows, and the first bad row and why."""

    ok: bool
    n_rows: int
    head: str | None = None  # "<seq>:<hash>" of the last row: keep it elsewhere as an anchor
    bad_seq: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)
    registry: list[str] = field(default_factory=list)  # registrations left without an audit row
    repaired: list[str] = field(default_factory=list)

    def flag_registry(self, problems: list[str], repaired: list[str] | None = None) -> AuditVerification:
        """Add what the model registry check found (nbprod.registry.recovery): the result is not ok
        while a version exists that its killed registration never audited."""
        self.registry = list(problems)
        self.repaired = list(repaired or [])
        if self.registry:
            self.ok = False
        return self

    def raise_for_errors(self) -> AuditVerification:
        if self.registry and not self.problems:
            raise AuditError(f"{len(self.registry)} model version(s) without an audit row: {self.registry[0]}",
                             "run `nbprod audit --verify --repair` (or register again): it rolls them back")
        if not self.ok:
            where = f" at row #{self.bad_seq}" if self.bad_seq is not None else ""
            raise AuditChainBroken(f"the audit log's hash chain is broken{where}: {self.reason}",
                                   "the log was edited, truncated or rows were inserted/deleted outside nbprod: "
                                   "restore the state DB from a backup and investigate who had write access")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _view(self) -> View:
        if not self.problems:
            head = f"audit log OK: {_format.rows(self.n_rows)}, hash chain intact (head {self.head or 'empty'})"
        else:
            head = (f"audit log BROKEN: {_format.rows(self.n_rows)}; first bad row #{self.bad_seq}: {self.reason}")
        more = [f"… {len(self.problems) - 6} more problems"] if len(self.problems) > 6 else []
        parts: list[Any] = [Lines([*self.problems[1:6], *more], style="list")]
        if self.registry:
            parts += [Lines(self.registry[:10], style="list",
                            title=f"model registry: {len(self.registry)} registration(s) left by a process that died:"),
                      Lines(["fix: `nbprod audit --verify --repair` (or the next `nbprod register`) rolls them back"],
                            style="plain")]
        parts.append(Lines([f"repaired: {r}" for r in self.repaired], style="plain"))
        return View(head, [p for p in parts if p.lines], tone="ok" if self.ok else "bad")


# --- API --------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _append(conn, fields: dict[str, Any]) -> AuditEntry:
    state.lock(conn, _LOCK)
    head = conn.execute(select(state.audit_head.c.seq, state.audit_head.c.hash)
                        .where(state.audit_head.c.id == 1)).first()
    if head is None:
        any_row = conn.execute(select(state.audit_log.c.seq).limit(1)).first()
        if any_row is not None:
            raise AuditChainBroken("the audit log has rows but its head row is missing (deleted?)",
                                   "run `nbprod audit --verify`, restore the state DB from a backup")
        last_seq, last_hash = 0, GENESIS
        conn.execute(state.audit_head.insert().values(id=1, seq=0, hash=GENESIS))
    else:
        last_seq, last_hash = head.seq, head.hash
    fields = {**fields, "seq": last_seq + 1, "prev_hash": last_hash}
    fields["hash"] = _hash(fields)
    conn.execute(state.audit_log.insert().values(**fields))
    updated = conn.execute(state.audit_head.update()
                           .where(state.audit_head.c.id == 1, state.audit_head.c.seq == last_seq)
                           .values(seq=fields["seq"], hash=fields["hash"]))
    if updated.rowcount != 1:  # someone moved the head under us: the lock was not held
        raise AuditError("the audit head moved during an append (no write lock held)",
                         "pass a connection from nbprod.state.write_transaction() to record()")
    return AuditEntry(**{**fields, "details": json.loads(fields["details"])})


def record(action: str, *, model_uri: str | None = None, details: dict | None = None,
           connection=None, context=None) -> AuditEntry:
    """Append one row to the audit log and return it.

    ``action`` is free text (``register``, ``alias``, ``package``, ``deploy``…); ``details`` a dict
    of JSON values. Who, when, from which notebook and git commit are filled in. Pass
    ``connection`` (from :func:`nbprod.state.write_transaction`) to make your own write and this
    row one transaction; otherwise the row is written in a transaction of its own. ``context``: a
    :class:`nbprod._context.RunContext` taken once by a caller writing many rows for one call (a
    pipeline's steps), instead of asking git again for each row.
    """
    if not isinstance(action, str) or not action.strip():
        raise AuditError(f"audit action must be a non-empty string, got {action!r}",
                         "name the action, e.g. 'register' or 'alias'")
    if model_uri is not None and not isinstance(model_uri, str):
        raise AuditError(f"model_uri must be a string, got {type(model_uri).__name__}",
                         "pass the model URI as text, e.g. 'models:/credit-risk/3'")
    ctx = context if context is not None else _context.current()
    fields = {
        "timestamp": _now(), "user": ctx.user, "host": ctx.host, "action": action.strip(),
        "model": model_name(model_uri), "model_uri": model_uri, "details": _details_text(details),
        "notebook": ctx.notebook_path, "git_commit": ctx.git_commit, "git_dirty": ctx.git_dirty,
    }
    if connection is not None:
        return _append(connection, fields)

    with state.write_transaction() as conn:
        return _append(conn, fields)


def history(model: str | None = None, limit: int | None = None) -> AuditTable:
    """The audit log, newest first; ``model`` (a name or any model URI) keeps that model's rows."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise AuditError(f"limit must be a positive integer, got {limit!r}", "pass e.g. limit=20, or None for all")
    name = model_name(model) if model else None
    query = select(state.audit_log).order_by(state.audit_log.c.seq.desc())
    if name:
        query = query.where(state.audit_log.c.model == name)
    if limit:
        query = query.limit(limit)
    with state.connect() as conn:
        rows = conn.execute(query).all()
    return AuditTable([AuditEntry._from_row(r) for r in rows], model=name)


def verify(anchor: str | None = None) -> AuditVerification:
    """Walk the whole chain and report the first bad row (see the module docstring for the guarantee).

    ``anchor`` — a ``"<seq>:<hash>"`` from an earlier ``verify().head`` kept outside the database —
    must still be in the chain; that also catches a chain rewritten or truncated wholesale.
    """
    problems: list[tuple[int | None, str]] = []
    anchor_seq = anchor_hash = None
    if anchor is not None:
        seq_text, _, anchor_hash = anchor.partition(":")
        if not seq_text.isdigit() or len(anchor_hash) != 64:
            raise AuditError(f"anchor {anchor!r} is not '<seq>:<sha256 hex>'", "pass the `head` of an earlier verify()")
        anchor_seq = int(seq_text)
    n = 0
    prev_hash, expected_seq = GENESIS, 1
    last_hash = None
    anchor_seen = False
    with state.connect() as conn:
        head = conn.execute(select(state.audit_head.c.seq, state.audit_head.c.hash)
                            .where(state.audit_head.c.id == 1)).first()
        extra_heads = conn.execute(select(state.audit_head.c.id).where(state.audit_head.c.id != 1)).first()
        result = conn.execute(select(state.audit_log).order_by(state.audit_log.c.seq).execution_options(yield_per=1000))
        for row in result:
            n += 1
            m = dict(row._mapping)
            seq = m["seq"]
            if seq > expected_seq:
                missing = f"#{expected_seq}" + (f"–#{seq - 1}" if seq - 1 > expected_seq else "")
                problems.append((expected_seq, f"row {missing} is missing (deleted): the log jumps to #{seq}"))
            elif seq != expected_seq:
                problems.append((seq, f"expected row #{expected_seq} next, found #{seq} (rows renumbered)"))
            if m["prev_hash"] != prev_hash:
                problems.append((seq, "prev_hash does not match the previous row's hash "
                                      "(a row before it was edited, inserted or deleted)"))
            if _hash(m) != m["hash"]:
                problems.append((seq, "the row's content does not match its hash (the row was edited)"))
            if anchor_seq == seq:
                anchor_seen = m["hash"] == anchor_hash
            prev_hash, expected_seq, last_hash = m["hash"], seq + 1, m["hash"]
    last_seq = expected_seq - 1
    if head is None:
        if n:
            problems.append((None, "the head row is missing (deleted?) while the log has rows"))
    else:
        if head.seq != last_seq:
            what = ("the newest rows were deleted" if head.seq > last_seq else "rows were appended outside nbprod")
            problems.append((min(head.seq, last_seq) + 1,
                             f"the head says the chain ends at #{head.seq}, the log ends at #{last_seq}: {what}"))
        elif (last_hash or GENESIS) != head.hash:
            problems.append((last_seq or None, "the last row's hash differs from the head's (last row or head edited)"))
    if extra_heads is not None:
        problems.append((None, "unexpected extra rows in audit_head"))
    if anchor is not None and not anchor_seen:
        problems.append((anchor_seq, f"the anchor {anchor} is not in the chain (rewritten or truncated)"))
    first = problems[0] if problems else (None, None)
    return AuditVerification(ok=not problems, n_rows=n, head=f"{last_seq}:{last_hash}" if last_hash else None,
                             bad_seq=first[0], reason=first[1], problems=[p for _, p in problems])
