"""What nbprod.deployments keeps in the state DB beside the serving spec.

The serving engineer's ``deployments`` table holds the spec, its ``generation`` and the process
columns (host, port, pid, status). Deploy adds two tables of its own:

- ``deployment_meta``: per deployment, JSON the server never reads — worker count, auth, log path,
  the alert rules, interval and window (``alerts``; never the webhook URL, a credential),
  the previous stable route (what ``rollback`` returns to), the last change's timing;
- ``deployment_workers``: one row per serving worker process, written by the server itself
  (:mod:`nbprod.deployments.events`): which spec generation it has applied. ``deploy`` waits on these
  acknowledgements to know that *every* worker serves a change, and how long that took.

A traffic change, its meta update and its audit row are written in ONE transaction
(:func:`write_change`), so the spec and the audit log never disagree.

Races: every write takes the deployment's lock (``state.lock``: an advisory lock on PostgreSQL,
the database lock on SQLite) and checks, inside that transaction, what it depends on. Starting a
server — a first deploy (:func:`create`), a restart (:func:`claim_restart`) — records a *claim*
in the meta (``meta["claim"]``: the process identity of the caller) until the server is ready;
while a live process holds it, every other deploy, restore, traffic change or undeploy of the name
is refused with :class:`~nbprod.errors.DeploymentConflict` ("being deployed by someone else"), so
two callers never both start a server. A claim whose process died (or that is older than
``CLAIM_MAX_S``) is stale and ignored. A traffic change is refused inside its transaction once an
undeploy has begun (status ``draining`` or ``stopped``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sqlalchemy import Column, Float, Integer, String, Text, select

from .. import audit, state
from .._lazytable import LazyTable
from ..errors import DeploymentConflict, DeploymentError
from ..serving.spec import DeploymentSpec, deployments, write_spec
from . import process

__all__ = ["meta_table", "workers_table", "ensure", "write_change", "read", "names", "set_columns",
           "delete", "acks", "register_worker", "ack_generation", "record_server", "create", "claim_restart",
           "begin_undeploy", "release", "live_claim", "conflict", "stopped_error", "CLAIM", "CLAIM_MAX_S"]

_created: set = set()
CLAIM = "claim"
CLAIM_MAX_S = 600.0  # longer than any start (90 s) plus a latency gate on a side server (~120 s)
_STOPPING = ("draining", "stopped")


def deployments_table():
    """The serving spec's ``deployments`` Table itself (``spec.deployments`` is a lazy proxy)."""
    return deployments.table()


def _meta_columns() -> list:
    return [Column("name", String(255), primary_key=True),
            Column("meta", Text, nullable=False)]


def _worker_columns() -> list:
    return [Column("name", String(255), primary_key=True),
            Column("pid", Integer, primary_key=True, autoincrement=False),
            Column("parent", Integer),
            Column("generation", Integer),  # last applied generation (None: initial spec)
            Column("started_at", Float, nullable=False),
            Column("updated_at", Float, nullable=False)]


_META = LazyTable("deployment_meta", _meta_columns)
_WORKERS = LazyTable("deployment_workers", _worker_columns)


def meta_table():
    return _META.table()


def workers_table():
    return _WORKERS.table()


def ensure():
    """The state DB engine with the deployments, meta and workers tables created (once per process)."""
    eng = state.engine()
    key = (str(eng.url), os.getpid())
    if key not in _created:
        with state.write_transaction() as conn:
            for t in (deployments_table(), meta_table(), workers_table()):
                t.create(conn, checkfirst=True)
        _created.add(key)
    return eng


def _upsert_meta(conn, name: str, meta: dict) -> None:
    t = meta_table()
    body = json.dumps(meta, sort_keys=True)
    if conn.execute(select(t.c.name).where(t.c.name == name)).first() is None:
        conn.execute(t.insert().values(name=name, meta=body))
    else:
        conn.execute(t.update().where(t.c.name == name).values(meta=body))


def live_claim(meta: dict | None) -> dict | None:
    """The claim in ``meta`` if a live process holds it (a dead or too old one is stale: None)."""
    claim = (meta or {}).get(CLAIM)
    if not isinstance(claim, dict) or time.time() - float(claim.get("at", 0)) > CLAIM_MAX_S:
        return None
    return claim if process.same_process(claim) else None


def _claim(action: str) -> dict:
    return {**process.identity(), "at": time.time(), "action": action}


def conflict(name: str, claim: dict | None) -> DeploymentConflict:
    """The error for a caller that finds ``name`` claimed by another live process."""
    doing = {"restore": "restarting its server"}.get((claim or {}).get("action", ""), "starting its server")
    by = f" (process {claim['pid']} is {doing})" if claim and claim.get("pid") else ""
    return DeploymentConflict(f"deployment {name!r} is being deployed by someone else right now{by}; "
                              "nothing was changed",
                              f"wait for it to finish, then look at nbprod status {name} and run the command again")


def stopped_error(name: str, status: str, spec_json: str | None = None) -> DeploymentError:
    """A stopped (or stopping) deployment refuses traffic changes: the error, with the deploy that restarts it."""
    try:
        routes = json.loads(spec_json or "{}").get("routes", [])
        uri = next((r["uri"] for r in routes if r.get("role") == "stable"), None)
    except (ValueError, TypeError, KeyError):
        uri = None
    state = "is being stopped (undeploy)" if status == "draining" else "is stopped (undeployed)"
    return DeploymentError(f"deployment {name!r} {state}; its traffic cannot be changed",
                           f"deploy it again: nbprod.deploy({uri or 'URI'!r}, name={name!r})")


def _locked(conn, name: str) -> tuple[Any, dict]:
    """Inside a write transaction: take ``name``'s lock, then read its row and meta (None, {} if absent)."""
    state.lock(conn, f"deployment:{name}")
    t, m = deployments_table(), meta_table()
    row = conn.execute(select(t).where(t.c.name == name)).first()
    meta_row = conn.execute(select(m.c.meta).where(m.c.name == name)).first()
    return (row._mapping if row is not None else None), (json.loads(meta_row.meta) if meta_row else {})


def _locked_running(conn, name: str) -> tuple[Any, dict]:
    """:func:`_locked`, for a verb that acts on a running deployment: row None if absent or stopped;
    DeploymentConflict if a live process claims it (it is starting a server for ``name`` right now)."""
    row, meta = _locked(conn, name)
    if row is None or row["status"] == "stopped":
        return None, meta
    claim = live_claim(meta)
    if claim is not None:
        raise conflict(name, claim)
    return row, meta


def create(name: str, spec, *, meta: dict, action: str, model_uri: str | None, details: dict,
           replacing: int | None, **columns: Any) -> int:
    """Record a deployment about to start, claimed by this process; the new generation.

    ``replacing``: None for a new name, else the generation of the stopped deployment being
    deployed again. Anything else found under the lock — the name created meanwhile, restarted,
    or claimed by a live process — is a DeploymentConflict and nothing is written.
    """
    ensure()
    with state.write_transaction() as conn:
        row, current = _locked(conn, name)
        if row is not None and (replacing is None or row["generation"] != replacing or row["status"] != "stopped"
                                or live_claim(current)):
            raise conflict(name, live_claim(current))
        generation = write_spec(conn, name, spec, expected_generation=replacing, **columns)
        _upsert_meta(conn, name, {**meta, CLAIM: _claim("deploy")})
        audit.record(action, model_uri=model_uri, details={"deployment": name, "generation": generation, **details},
                     connection=conn)
    return generation


def claim_restart(name: str) -> bool:
    """Claim ``name`` to restart its server: True if this process should start one now.

    False: nothing to restart (stopped, or its server runs). DeploymentConflict: a live process
    holds a claim (another restore or deploy is starting a server for it right now).
    """
    ensure()
    t = deployments_table()
    with state.write_transaction() as conn:
        row, meta = _locked_running(conn, name)
        if row is None or process.is_server_of(row["pid"], name):
            return False
        conn.execute(t.update().where(t.c.name == name).values(status="starting"))
        _upsert_meta(conn, name, {**meta, CLAIM: _claim("restore")})
    return True


def release(name: str) -> None:
    """Drop this process's claim on ``name`` (nothing if another process holds it, or none)."""
    ensure()
    me = process.identity()
    with state.write_transaction() as conn:
        row, meta = _locked(conn, name)
        claim = meta.get(CLAIM)
        if row is not None and isinstance(claim, dict) and (claim.get("pid"), claim.get("start")) == (
                me["pid"], me["start"]):
            _upsert_meta(conn, name, {k: v for k, v in meta.items() if k != CLAIM})


def begin_undeploy(name: str) -> dict | None:
    """Mark ``name`` draining (no traffic change after this commits); its columns, None if stopped."""
    ensure()
    t = deployments_table()
    with state.write_transaction() as conn:
        row, _ = _locked_running(conn, name)
        if row is None:
            return None
        conn.execute(t.update().where(t.c.name == name).values(status="draining"))
        return {k: row[k] for k in ("host", "port", "pid", "status", "updated_at", "generation")}


def write_change(name: str, spec, *, meta: dict | None, action: str, model_uri: str | None,
                 details: dict, expected_generation: int | None = None, **columns: Any) -> int:
    """Write ``spec`` (generation + 1), ``meta`` and the audit row in one transaction; the new generation.

    ``expected_generation``: the generation the change was computed from; if another call changed
    the deployment in between, nothing is written (no lost update) and DeploymentError says retry.
    Checked under the same lock: a deployment being stopped (or stopped) refuses the change, and
    one claimed by a live process (being deployed or restarted) is a DeploymentConflict.
    """
    ensure()
    with state.write_transaction() as conn:
        row, current = _locked(conn, name)
        if row is not None and row["status"] in _STOPPING:
            raise stopped_error(name, row["status"], row["spec"])
        claim = live_claim(current)
        if claim is not None:
            raise conflict(name, claim)
        if meta is not None:
            meta = {k: v for k, v in meta.items() if k != CLAIM}
        generation = write_spec(conn, name, spec, expected_generation=expected_generation, **columns)
        if meta is not None:
            _upsert_meta(conn, name, meta)
        audit.record(action, model_uri=model_uri, details={"deployment": name, "generation": generation, **details},
                     connection=conn)
    return generation


def read(name: str) -> tuple[Any, dict, dict] | None:
    """(spec, process columns, meta) of ``name``, or None."""
    t = deployments_table()

    eng = ensure()
    m = meta_table()
    with eng.connect() as conn:
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            return None
        meta_row = conn.execute(select(m.c.meta).where(m.c.name == name)).first()
    r = row._mapping
    spec = DeploymentSpec.from_dict(json.loads(r["spec"]), generation=int(r["generation"]))
    cols = {k: r[k] for k in ("host", "port", "pid", "status", "updated_at", "generation")}
    return spec, cols, (json.loads(meta_row.meta) if meta_row else {})


def names() -> list[str]:
    t = deployments_table()

    with ensure().connect() as conn:
        return [r.name for r in conn.execute(select(t.c.name).order_by(t.c.name))]


def set_columns(name: str, *, meta: dict | None = None, audit_action: str | None = None,
                model_uri: str | None = None, details: dict | None = None, **columns: Any) -> None:
    """Update process columns (no generation bump: workers do not reload) and optionally meta + audit."""
    t = deployments_table()

    ensure()
    with state.write_transaction() as conn:
        state.lock(conn, f"deployment:{name}")
        if columns:
            conn.execute(t.update().where(t.c.name == name).values(**columns))
        if meta is not None:
            _upsert_meta(conn, name, meta)
        if audit_action is not None:
            audit.record(audit_action, model_uri=model_uri, details={"deployment": name, **(details or {})},
                         connection=conn)


def delete(name: str, *, audit_action: str, model_uri: str | None, details: dict) -> None:
    """Remove a deployment that never started (a failed first deploy), with its audit row."""
    t = deployments_table()

    ensure()
    with state.write_transaction() as conn:
        state.lock(conn, f"deployment:{name}")
        conn.execute(t.delete().where(t.c.name == name))
        conn.execute(meta_table().delete().where(meta_table().c.name == name))
        conn.execute(workers_table().delete().where(workers_table().c.name == name))
        audit.record(audit_action, model_uri=model_uri, details={"deployment": name, **details}, connection=conn)


def acks(name: str) -> dict[int, dict]:
    """pid -> {parent, generation, started_at, updated_at} of every worker that registered for ``name``."""
    w = workers_table()
    with ensure().connect() as conn:
        rows = conn.execute(select(w).where(w.c.name == name)).all()
    return {r.pid: {"parent": r.parent, "generation": r.generation, "started_at": r.started_at,
                    "updated_at": r.updated_at} for r in rows}


def register_worker(name: str, pid: int, parent: int) -> None:
    w = workers_table()
    ensure()
    now = time.time()
    with state.write_transaction() as conn:
        conn.execute(w.delete().where((w.c.name == name) & (w.c.pid == pid)))
        conn.execute(w.insert().values(name=name, pid=pid, parent=parent, generation=None, started_at=now,
                                       updated_at=now))


def ack_generation(name: str, pid: int, generation: int) -> None:
    w = workers_table()
    ensure()
    with state.write_transaction() as conn:
        conn.execute(w.update().where((w.c.name == name) & (w.c.pid == pid))
                     .values(generation=int(generation), updated_at=time.time()))


def record_server(name: str, host: str, port: int, pid: int) -> None:
    """Called by ``nbprod serve --deployment NAME`` on start: the row says where it serves now."""
    t = deployments_table()

    ensure()

    with state.write_transaction() as conn:
        conn.execute(t.update().where(t.c.name == name).values(host=host, port=int(port), pid=int(pid),
                                                               status="running"))
        # workers of an earlier process for this deployment are gone
        w = workers_table()
        conn.execute(w.delete().where((w.c.name == name) & (w.c.pid != pid) & (w.c.parent != pid)))
