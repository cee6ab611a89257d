"""Registrations whose process died (SIGKILL, power cut, a killed kernel) are found and rolled back.

``register`` cannot clean up after itself when it is killed: a kill between creating the model
version and writing its audit row would leave a version nobody audited (its run stuck RUNNING,
maybe ``@champion`` moved to it) and a ``nbprod-register-*`` temp folder. So ``register`` leaves
a trail on its MLflow run before it creates anything visible — tag ``nbprod.pid`` /
``nbprod.host`` (who is registering), ``nbprod.alias_previous`` (where the alias pointed before it
moved it), ``nbprod.created_model`` — and ends the run only after the audit row is written. Then:

- :func:`leftovers` lists the register runs still RUNNING whose process is gone (same host: the
  pid is not alive; another host: the run is older than :data:`STALE_S`), with their versions and
  whether an audit row exists; a registration still running elsewhere is never touched;
- :func:`repair` rolls each back: the alias goes back where it was, the version, a model the
  run created and the run's artefacts are removed, the run is deleted, and the audit log records
  ``register_rolled_back`` (a version number was used and withdrawn). A run whose audit row was
  written (killed just after it) is only marked finished. It also deletes leaked temp folders of
  dead processes. Every ``register`` calls it first (best effort); ``nbprod audit --verify``
  reports leftovers and ``nbprod audit --verify --repair`` repairs them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._pids import alive

__all__ = ["Leftover", "leftovers", "repair", "problems", "clean_temp_folders", "TEMP_PREFIX", "STALE_S"]

TEMP_PREFIX = "nbprod-register-"
STALE_S = 24 * 3600.0  # a register run of another host older than this is taken as dead
_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"(?P<pid>\d+)-")


@dataclass
class Leftover:
    """One registration whose process died before it finished."""

    run_id: str
    name: str | None
    version: str | None
    audited: bool
    pid: int | None
    host: str | None

    def describe(self) -> str:
        what = f"models:/{self.name}/{self.version}" if self.version else f"run {self.run_id} (no version yet)"
        owner = f"pid {self.pid} on {self.host}" if self.pid else "an unknown process"
        if self.audited:
            return f"{what}: registered and audited, but its run {self.run_id} was never ended ({owner} died)"
        return f"{what}: its registering process ({owner}) died before the audit row was written"


def temp_folder() -> Path:
    """A fresh temp folder for one registration, named after this process so a leak can be cleaned."""
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))


def clean_temp_folders(older_than_s: float = 3600.0) -> int:
    """Delete ``nbprod-register-*`` temp folders left by dead processes; the number deleted."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        m = _TEMP.match(path.name)
        try:
            if m is not None:
                dead = int(m.group("pid")) != os.getpid() and not alive(int(m.group("pid")))
            else:  # a folder of an nbprod that did not name its pid: only when clearly old
                dead = time.time() - path.stat().st_mtime > older_than_s
        except OSError:
            continue
        if dead and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed += not path.exists()
    return removed


def _audited(uris: set[str]) -> set[str]:
    """The subset of ``uris`` (models:/name/version) that have a ``register`` audit row."""
    if not uris:
        return set()
    from sqlalchemy import select

    from .. import state

    t = state.audit_log
    with state.connect() as conn:
        rows = conn.execute(select(t.c.model_uri).where(t.c.action == "register", t.c.model_uri.in_(sorted(uris))))
        return {r[0] for r in rows}


def leftovers(c=None) -> list[Leftover]:
    """Register runs still RUNNING whose process is gone, with their versions (see the module doc)."""
    from .store import client, experiment_id
    from .versions import TAG, _mlflow_call

    c = c or client()
    runs = _mlflow_call(c.search_runs, [experiment_id(c)],
                        filter_string=f"tags.`{TAG}action` = 'register' and attributes.status = 'RUNNING'",
                        max_results=1000)
    here = socket.gethostname()
    found = []
    for run in runs:
        tags = run.data.tags
        pid = int(tags[TAG + "pid"]) if tags.get(TAG + "pid", "").isdigit() else None
        host = tags.get(TAG + "host")
        if pid is not None and host == here:
            if alive(pid):
                continue  # still registering: never touch another process's work
        elif time.time() - run.info.start_time / 1000 < STALE_S:
            continue
        versions = _mlflow_call(c.search_model_versions, f"run_id='{run.info.run_id}'")
        if not versions:
            found.append(Leftover(run.info.run_id, None, None, False, pid, host))
        for v in versions:
            found.append(Leftover(run.info.run_id, v.name, str(v.version), False, pid, host))
    audited = _audited({f"models:/{x.name}/{x.version}" for x in found if x.version})
    for x in found:
        x.audited = f"models:/{x.name}/{x.version}" in audited
    return found


def problems(c=None) -> list[str]:
    """Leftovers as text, for ``nbprod audit --verify`` (none without a model store yet)."""
    from .._files import sqlite_path
    from ..config import settings

    path = sqlite_path(settings.tracking_uri)
    if c is None and path is not None and not path.exists():
        return []  # nothing was ever registered here; do not create a store to find that out
    return [x.describe() for x in leftovers(c)]


def repair(c=None) -> list[Leftover]:
    """Roll back every leftover registration (see the module doc); the ones handled."""
    from .. import audit, state
    from .register import _alias_target, _rollback
    from .store import client
    from .versions import TAG, _mlflow_call

    c = c or client()
    clean_temp_folders()
    found = leftovers(c)
    done = []
    for x in found:
        with state.write_transaction() as conn:
            state.lock(conn, "nbprod.register.repair")  # two repairs at once: one does it
            run = _mlflow_call(c.get_run, x.run_id)
            if run.info.status != "RUNNING" or run.info.lifecycle_stage == "deleted":
                continue  # repaired meanwhile
            if x.audited:
                _mlflow_call(c.set_terminated, x.run_id)
                done.append(x)
                continue
            tags = run.data.tags
            alias = tags.get(TAG + "alias") or None
            previous = tags.get(TAG + "alias_previous") or None
            if alias and x.name and _alias_target(c, x.name, alias) != x.version:
                previous = None  # moved again since: leave it where it is now
            _rollback(c, x.name or "", x.version, bool(x.name) and tags.get(TAG + "created_model") == "true",
                      x.run_id, alias, previous)
            if x.version is not None:
                audit.record("register_rolled_back", model_uri=f"models:/{x.name}/{x.version}",
                             details={"version": x.version, "run_id": x.run_id, "pid": x.pid, "host": x.host,
                                      "alias": alias, "alias_restored_to": previous,
                                      "reason": "the registering process died before its audit row was written"},
                             connection=conn)
            done.append(x)
    return done
