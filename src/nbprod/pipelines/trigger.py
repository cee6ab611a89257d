"""Retraining that closes the loop from an alert: a rule names a pipeline file, its firing starts it.

``nbprod serve … --on-alert 'drift_share > 0.3' pipeline.yaml`` (the server's alert loop, wired in
:mod:`nbprod.service`) and ``nbprod monitor NAME --check --on-alert RULE FILE`` (cron) hand
:func:`on_fire` to :func:`nbprod.monitoring.alerts.check`, which calls it once per new incident —
from the one check that claimed it — and knows nothing of pipelines. :func:`start` then:

1. reads the file (a bad one starts nothing; the alert's message says why);
2. gives the pipeline the alert's window as parameters — the ones it declares under ``params:``
   among ``deployment``, ``alert_rule``, ``alert_value``, ``window_start`` and ``window_end`` (ISO,
   UTC) and ``data``: the window's logged inputs, written to a parquet file under
   ``NBPROD_HOME/pipelines/alerts/`` (a window without logged inputs leaves ``data`` as it is);
3. under a state-DB lock on the pipeline's name, starts nothing while a runner holds the
   pipeline's lock or a run an alert started is still queued or running (never two at once), nor
   within the cooldown after the last one (default 1 h; ``cooldown=``, else
   ``NBPROD_ALERT_PIPELINE_COOLDOWN``); otherwise records a QUEUED run, its parent MLflow run
   made now so that its id is known, and an ``alert.pipeline`` audit row naming it, in one
   transaction;
4. starts ``nbprod pipeline resume RUN_ID`` detached, in the pipeline file's folder (the file's
   relative paths, e.g. a labelled ``holdout``, are read beside it as in every run: :mod:`.paths`);
   it outlives a server that stops; its output goes to ``NBPROD_HOME/pipelines/RUN_ID.log``;
5. returns the line the alert's message carries: the run id and the command to follow it.

The rule → file pairs reach a server's process in ``NBPROD_ALERT_PIPELINES``, JSON:
``[["drift_share > 0.3", "/abs/pipeline.yaml"]]``. A deployment records them with its alert
settings (``nbprod deploy … --on-alert RULE FILE``, :mod:`nbprod.deployments.alerting`) and its
server gets them from that record, never from the shell that deploys or restores it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, NbprodError, PipelineError
from ..monitoring.loop import PIPELINES_ENV

__all__ = ["parse", "from_env", "to_env", "on_fire", "start", "Triggered", "PIPELINES_ENV", "COOLDOWN_ENV",
           "DEFAULT_COOLDOWN_S", "ALERT_PARAMS"]

COOLDOWN_ENV = "NBPROD_ALERT_PIPELINE_COOLDOWN"
DEFAULT_COOLDOWN_S = 3600.0
ALERT_PARAMS = ("deployment", "alert_rule", "alert_value", "window_start", "window_end", "data")


def parse(pairs: Any, *, check_files: bool = True) -> list[tuple[str, str]]:
    """``[(rule, pipeline file), …]`` (or a mapping, or the JSON of :data:`PIPELINES_ENV`) checked:
    each rule parses, each file is a valid pipeline (unless not ``check_files``: a deployment's
    recorded files, checked when deployed, are read again when their rule fires). Returns canonical
    rule texts and absolute paths."""
    from ..monitoring.alerts import parse_rule
    from .spec import load

    if pairs is None:
        return []
    if isinstance(pairs, str):
        try:
            pairs = json.loads(pairs)
        except ValueError:
            raise ConfigError(f"${PIPELINES_ENV} is not JSON",
                              'write it as [["drift_share > 0.3", "/path/pipeline.yaml"]]') from None
    if isinstance(pairs, Mapping):
        pairs = list(pairs.items())
    out: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"an on-alert action must be a rule and a pipeline file, got {pair!r}",
                              "pass e.g. --on-alert 'drift_share > 0.3' pipeline.yaml")
        rule = parse_rule(pair[0])
        path = Path(str(pair[1])).expanduser().resolve()
        if check_files:
            load(path)  # a bad pipeline file fails here, before a server starts, naming its line
        out[rule.text] = str(path)
    return list(out.items())


def from_env(*, check_files: bool = True) -> list[tuple[str, str]]:
    return parse(os.environ.get(PIPELINES_ENV) or None, check_files=check_files)


def to_env(pairs: list[tuple[str, str]]) -> str:
    return json.dumps([list(p) for p in pairs])


def _cooldown(value: Any) -> float:
    from ..monitoring.windows import parse_duration

    if value is None:
        value = os.environ.get(COOLDOWN_ENV) or DEFAULT_COOLDOWN_S
    if value in (0, "0"):
        return 0.0
    return parse_duration(value)


@dataclass
class Triggered:
    """What one firing did: ``run_id`` of the run it started, or None and ``reason`` why not."""

    pipeline: str
    run_id: str | None
    reason: str | None = None

    @property
    def started(self) -> bool:
        return self.run_id is not None

    def line(self) -> str:
        if self.run_id:
            return (f"Retraining: pipeline {self.pipeline} run {self.run_id} started "
                    f"(follow it: nbprod pipeline show {self.run_id})")
        return f"Retraining: pipeline {self.pipeline} not started: {self.reason}"

    def __str__(self) -> str:
        return self.line()


def _window_data(deployment: str, start: float, end: float) -> str | None:
    """The window's logged inputs (answered rows, not shadow) as a parquet file, or None without any."""
    from ..config import settings
    from ..monitoring.logread import load

    log = load(deployment, since=start, until=end, until_inclusive=True, roles_out=("shadow", "error"), labels=False)
    if not len(log.frame):
        return None
    folder = Path(settings.home) / "pipelines" / "alerts"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start))
    path = folder / f"{deployment}-{stamp}-{os.getpid()}-{time.time_ns()}.parquet"
    tmp = path.with_suffix(".tmp")
    log.inputs.to_parquet(tmp)
    os.replace(tmp, path)  # never a half-written file under the name a pipeline reads
    return str(path)


def _blocked(conn, name: str, cooldown: float, now: float) -> str | None:
    """Why a run of ``name`` must not start now (None: it may)."""
    from sqlalchemy import select

    from ..monitoring.windows import iso
    from . import store

    held = store.holder(conn, name)
    if held:
        which = f"run {held['run_id']} of it" if held["run_id"] else "a run of it"  # None: still being created
        return f"{which} is in progress (process {held['pid']}); not started twice"
    t = store.TRIGGERS.table()
    last = conn.execute(select(t).where(t.c.pipeline == name).order_by(t.c.at.desc()).limit(1)).first()
    if last is None:
        return None
    try:
        status = store.read_run(last.run_id, connection=conn)["status"]
    except PipelineError:
        status = "missing"
    if status in ("QUEUED", "RUNNING"):
        return f"run {last.run_id} it started for an alert is still {status.lower()}; not started twice"
    if now - last.at < cooldown:
        return (f"cooldown: run {last.run_id} was started for an alert at {iso(last.at)}; the next may start "
                f"after {iso(last.at + cooldown)}")
    return None


def _spawn(run_id: str, folder: Path) -> subprocess.Popen:
    """The detached runner, working in the pipeline file's ``folder`` rather than whatever folder the
    server that fired happened to be started from (a deploy, a ``--restore`` from elsewhere). The
    file's relative paths do not depend on it (the runner reads them beside the file: :mod:`.paths`)."""
    from ..config import settings

    env = dict(os.environ)
    for var in [k for k in env if k.startswith("NBPROD_ALERT_")] + ["NBPROD_TOKEN"]:
        env.pop(var, None)  # the pipeline's own deployments get their settings from their records
    env.update(NBPROD_HOME=str(settings.home), NBPROD_DB_URL=settings.db_url, MLFLOW_TRACKING_URI=settings.tracking_uri)
    log = Path(settings.home) / "pipelines" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "nbprod.cli", "pipeline", "resume", run_id],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=folder, start_new_session=True, close_fds=True)


def start(path: str | Path, *, deployment: str, rule: str, value: float | None, window: dict,
          cooldown: Any = None) -> Triggered:
    """Start the pipeline ``path`` for an alert on ``deployment`` (module docstring); never twice at once."""
    from .. import audit, state
    from ..deployments.process import identity
    from ..monitoring.windows import iso
    from . import store
    from .runner import queue
    from .spec import load

    p = load(path)
    wait = _cooldown(cooldown)
    now = time.time()
    value = None if value is None else float(value)
    store.ensure()
    with state.connect() as conn:
        reason = _blocked(conn, p.name, wait, now)
    details = {"deployment": deployment, "rule": rule, "value": value, "pipeline": p.name, "path": str(p.path),
               "window_start": iso(window["start"]), "window_end": iso(window["end"])}
    if reason is None:
        given = {"deployment": deployment, "alert_rule": rule, "alert_value": value,
                 "window_start": details["window_start"], "window_end": details["window_end"]}
        params: dict[str, Any] = {k: v for k, v in given.items() if k in p.params}
        if "data" in p.params:
            data = _window_data(deployment, window["start"], window["end"])
            if data is not None:
                params["data"] = data
        with state.write_transaction() as conn:
            state.lock(conn, f"pipeline-trigger:{p.name}")
            reason = _blocked(conn, p.name, wait, now)  # again, under the lock: a concurrent check lost the race
            if reason is None:
                run_id = queue(p.path, params, connection=conn,
                               tags={"nbprod.trigger": "alert", "nbprod.alert_rule": rule,
                                     "nbprod.alert_deployment": deployment})
                conn.execute(store.TRIGGERS.table().insert().values(run_id=run_id, pipeline=p.name,
                                                                    deployment=deployment, rule=rule, at=now))
                audit.record("alert.pipeline", connection=conn,
                             details={**details, "status": "started", "run_id": run_id, "params": params})
        if reason is None:
            try:
                proc = _spawn(run_id, Path(p.path).resolve().parent)
            except OSError as exc:
                store.update_run(run_id, status="FAILED", reason=f"could not start its runner: {exc}")
                return Triggered(p.name, None, f"could not start its runner: {exc}")
            store.update_run(run_id, owner=identity(proc.pid))
            return Triggered(p.name, run_id)
        if isinstance(params.get("data"), str):  # the window's file of a run that did not start
            Path(str(params["data"])).unlink(missing_ok=True)
    audit.record("alert.pipeline", details={**details, "status": "not started", "reason": reason})
    return Triggered(p.name, None, reason)


def on_fire(pairs: Any, *, cooldown: Any = None, check_files: bool = True) -> Callable[..., str | None] | None:
    """The hook for :func:`nbprod.monitoring.alerts.check`: a fired rule named in ``pairs`` starts its
    pipeline (:func:`start`); None without pairs. Bad pairs or cooldown raise here, before a server
    starts; a pipeline file that cannot be read when its rule fires is said in the alert's message
    and recorded (an ``alert.pipeline`` audit row, ``status`` "not started")."""
    checked = dict(parse(pairs, check_files=check_files))
    if not checked:
        return None
    wait = _cooldown(cooldown)

    def fire(deployment: str, rule: Any, value: float, window: dict) -> str | None:
        path = checked.get(getattr(rule, "text", str(rule)))
        if path is None:
            return None
        try:
            return start(path, deployment=deployment, rule=str(rule), value=value, window=window,
                         cooldown=wait).line()
        except NbprodError as exc:
            _not_started(path, deployment, rule, value, window, exc)
            return f"Retraining: {Path(path).name} not started: {exc.problem}"

    return fire


def _not_started(path: str, deployment: str, rule: Any, value: Any, window: dict, exc: NbprodError) -> None:
    """The audit row of a firing whose pipeline could not start (its file gone or broken since it was
    given). Should this write fail, the check reports the hook's failure in the alert's message."""
    from .. import audit
    from ..monitoring.windows import iso

    audit.record("alert.pipeline", details={
        "deployment": deployment, "rule": str(rule), "value": None if value is None else float(value),
        "pipeline": None, "path": str(path), "window_start": iso(window["start"]),
        "window_end": iso(window["end"]), "status": "not started", "reason": exc.problem})
