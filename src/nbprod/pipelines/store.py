"""What pipelines keep in the state DB: one row per run (its steps' states and outputs) and a lock
per pipeline name.

The lock is a row (``pipeline_locks``) claimed inside a transaction that holds ``state.lock`` on
the name, like deployments claim a name (:mod:`nbprod.deployments.store`): the holder's process
identity is recorded, a live holder makes a second runner refuse (:class:`PipelineConflict`), a
dead one (SIGKILL) is stale and the next runner takes over.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from .._lazytable import LazyTable
from ..errors import PipelineConflict, PipelineError

__all__ = ["ensure", "create_run", "update_run", "read_run", "resolve", "list_runs", "acquire", "release", "live",
           "holder", "TRIGGERS"]

_created: set = set()
QUEUED_GRACE_S = 60.0


def _run_columns() -> list:
    from sqlalchemy import Column, Float, String, Text

    return [Column("run_id", String(64), primary_key=True),
            Column("pipeline", String(255), nullable=False, index=True),
            Column("path", Text, nullable=False),
            Column("status", String(32), nullable=False),
            Column("params", Text, nullable=False),
            Column("steps", Text, nullable=False),  # JSON: step -> {status, outputs, child_run_id, reason, pending}
            Column("owner", Text),  # JSON process identity of the runner
            Column("reason", Text),
            Column("started_at", Float, nullable=False),
            Column("updated_at", Float, nullable=False)]


def _lock_columns() -> list:
    from sqlalchemy import Column, Float, String, Text

    return [Column("pipeline", String(255), primary_key=True),
            Column("owner", Text, nullable=False),
            Column("run_id", String(64)),
            Column("at", Float, nullable=False)]


def _trigger_columns() -> list:
    from sqlalchemy import Column, Float, String, Text

    return [Column("run_id", String(64), primary_key=True),
            Column("pipeline", String(255), nullable=False, index=True),
            Column("deployment", String(255), nullable=False),
            Column("rule", Text, nullable=False),
            Column("at", Float, nullable=False)]


RUNS = LazyTable("pipeline_runs", _run_columns)
LOCKS = LazyTable("pipeline_locks", _lock_columns)
TRIGGERS = LazyTable("pipeline_triggers", _trigger_columns)  # runs an alert started (nbprod.pipelines.trigger)


def ensure():
    from .. import state

    eng = state.engine()
    key = (str(eng.url), os.getpid())
    if key not in _created:
        with state.write_transaction() as conn:
            for t in (RUNS.table(), LOCKS.table(), TRIGGERS.table()):
                t.create(conn, checkfirst=True)
        _created.add(key)
    return eng


def live(owner: Any) -> bool:
    from ..deployments.process import same_process

    if isinstance(owner, str):
        owner = json.loads(owner) if owner else None
    return bool(owner) and same_process(owner)


def acquire(pipeline: str, run_id: str | None) -> dict:
    """Claim ``pipeline`` for this process, or raise :class:`PipelineConflict` if a live runner holds it."""
    from sqlalchemy import select

    from .. import state
    from ..deployments.process import identity

    ensure()
    me = identity()
    t = LOCKS.table()
    with state.write_transaction() as conn:
        state.lock(conn, f"pipeline:{pipeline}")
        row = conn.execute(select(t).where(t.c.pipeline == pipeline)).first()
        if row is not None and live(row.owner) and json.loads(row.owner) != me:
            holder = json.loads(row.owner)
            which = f" (run {row.run_id})" if row.run_id else ""  # None: that run is still being created
            raise PipelineConflict(f"pipeline {pipeline!r} is being run right now by process {holder.get('pid')}"
                                   f"{which}; nothing was run",
                                   "wait for it to finish (nbprod pipeline runs), then run it again")
        values = {"owner": json.dumps(me), "run_id": run_id, "at": time.time()}
        if row is None:
            conn.execute(t.insert().values(pipeline=pipeline, **values))
        else:
            conn.execute(t.update().where(t.c.pipeline == pipeline).values(**values))
    return me


def holder(conn, pipeline: str) -> dict | None:
    """The lock row of ``pipeline`` if a live runner holds it (``{"pid", "run_id"}``), else None."""
    from sqlalchemy import select

    t = LOCKS.table()
    row = conn.execute(select(t).where(t.c.pipeline == pipeline)).first()
    if row is None or not live(row.owner):
        return None
    return {"pid": json.loads(row.owner).get("pid"), "run_id": row.run_id}


def release(pipeline: str) -> None:
    from .. import state
    from ..deployments.process import identity

    t = LOCKS.table()
    with state.write_transaction() as conn:
        conn.execute(t.delete().where(t.c.pipeline == pipeline, t.c.owner == json.dumps(identity())))


def create_run(run_id: str, pipeline: str, path: str, params: dict, steps: dict, owner: dict | None, *,
               status: str = "RUNNING", connection=None) -> None:
    """The run's row; a runner's (``owner`` set) also names the run in the pipeline's lock row, in the
    same transaction. ``status="QUEUED"``: a run started in another process (:mod:`.trigger`)."""
    from .. import state

    ensure()
    now = time.time()
    with contextlib.ExitStack() as stack:
        conn = connection if connection is not None else stack.enter_context(state.write_transaction())
        conn.execute(RUNS.table().insert().values(
            run_id=run_id, pipeline=pipeline, path=path, status=status, params=json.dumps(params, default=str),
            steps=json.dumps(steps, default=str), owner=json.dumps(owner) if owner else None, started_at=now,
            updated_at=now))
        if owner:
            t = LOCKS.table()
            conn.execute(t.update().where(t.c.pipeline == pipeline, t.c.owner == json.dumps(owner))
                         .values(run_id=run_id))


def update_run(run_id: str, *, steps: dict | None = None, status: str | None = None, reason: str | None = None,
               owner: dict | None = None, connection=None) -> None:
    """``connection``: a transaction of the caller's (``state.write_transaction()``), to make this
    write and the caller's (the step's audit row) one commit."""
    from .. import state

    t = RUNS.table()
    values: dict[str, Any] = {"updated_at": time.time()}
    if steps is not None:
        values["steps"] = json.dumps(steps, default=str)
    if status is not None:
        values["status"] = status
        values["reason"] = reason
    if owner is not None:
        values["owner"] = json.dumps(owner)
    stmt = t.update().where(t.c.run_id == run_id).values(**values)
    if connection is not None:
        connection.execute(stmt)
        return
    with state.write_transaction() as conn:
        conn.execute(stmt)


def _row(r) -> dict:
    status = r.status
    # a runner that died (or a queued run whose process never got going) reads as interrupted
    if (status == "RUNNING" or (status == "QUEUED" and r.owner)) and not live(r.owner):
        status = "INTERRUPTED"
    elif status == "QUEUED" and not r.owner and time.time() - r.updated_at > QUEUED_GRACE_S:
        status = "INTERRUPTED"  # its starter died between recording it and starting its process
    return {"run_id": r.run_id, "pipeline": r.pipeline, "path": r.path, "status": status,
            "params": json.loads(r.params), "steps": json.loads(r.steps), "reason": r.reason,
            "started_at": r.started_at, "updated_at": r.updated_at}


def read_run(run_id: str, connection=None) -> dict:
    from sqlalchemy import select

    t = RUNS.table()
    with contextlib.ExitStack() as stack:
        conn = connection if connection is not None else stack.enter_context(ensure().connect())
        row = conn.execute(select(t).where(t.c.run_id == run_id)).first()
    if row is None:
        raise PipelineError(f"no pipeline run {run_id!r}", "list them with: nbprod pipeline runs")
    return _row(row)


def resolve(run_id: str) -> str:
    """The full id of the pipeline run ``run_id`` names: its id, or a unique prefix of
    :data:`~nbprod.jobs.records.MIN_PREFIX` or more characters, as job ids are taken."""
    from sqlalchemy import select

    from ..jobs.records import MIN_PREFIX

    rid = (run_id or "").strip()
    t = RUNS.table()
    with ensure().connect() as conn:
        if rid and conn.execute(select(t.c.run_id).where(t.c.run_id == rid)).first() is not None:
            return rid
        if len(rid) < MIN_PREFIX:
            raise PipelineError(f"no pipeline run {run_id!r}" + (" (too short to be a prefix)" if rid else ""),
                                f"pass its id, or at least {MIN_PREFIX} characters of it, as nbprod pipeline runs "
                                "shows it")
        q = select(t.c.run_id, t.c.pipeline).where(t.c.run_id.startswith(rid, autoescape=True))
        found = conn.execute(q.order_by(t.c.started_at.desc())).all()
    if not found:
        raise PipelineError(f"no pipeline run {run_id!r}", "list them with: nbprod pipeline runs")
    if len(found) > 1:
        some = ", ".join(f"{r.run_id[:12]} ({r.pipeline})" for r in found[:5]) + (", …" if len(found) > 5 else "")
        raise PipelineError(f"pipeline run id {run_id!r} is ambiguous: it starts {len(found)} runs ({some})",
                            "pass more characters of the id")
    return str(found[0].run_id)


def list_runs(pipeline: str | None = None, limit: int | None = None) -> list[dict]:
    from sqlalchemy import select

    t = RUNS.table()
    ensure()
    q = select(t).order_by(t.c.started_at.desc())
    if pipeline:
        q = q.where(t.c.pipeline == pipeline)
    if limit:
        q = q.limit(limit)
    with ensure().connect() as conn:
        return [_row(r) for r in conn.execute(q).all()]
