"""deploy, promote, rollback, undeploy, status, restore: traffic changes through the state DB.

A deployment is a row in the state DB (the :class:`~nbprod.serving.spec.DeploymentSpec` and its
``generation``) plus a detached ``nbprod serve --deployment NAME`` process. Every traffic change
is one transaction — new spec, generation + 1, audit row — and the server's workers pick it up
on their next poll (200 ms) and swap their routing table atomically, so no request fails and no
worker serves a mix. The call then waits until every worker has acknowledged the generation and
reports how long that took (``Deployment.last_change_s``).

Modules beside this one: :mod:`.options` (the checks of a call's options, :class:`ServerSettings`),
:mod:`.alerting` (the alert settings: what is recorded, what a server runs with), :mod:`.gate`
(the latency gate), :mod:`.process` (server processes), :mod:`.store` (the state DB rows).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import time
from typing import Any

from ..errors import DeploymentConflict, DeploymentError, LatencyBudgetExceeded
from ..monitoring.summary import health as summary
from ..registry import get_version, set_alias
from ..serving.spec import DeploymentSpec, Route, hash_token
from . import alerting, gate, process, routes, store
from .alerting import AlertSettings
from .options import ServerSettings, check_traffic
from .results import Deployment, DeploymentStatus, StatusTable

__all__ = ["deploy", "promote", "rollback", "set_split", "undeploy", "status", "restore", "HOST",
           "AlertSettings", "ServerSettings"]

HOST = "127.0.0.1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # \Z, not $: "$" accepts a final newline
_APPLY_TIMEOUT_S = 15.0
_KEEP = object()  # _restore: start with the recorded alert settings


# --- helpers ------------------------------------------------------------------------------------

def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DeploymentError(f"{name!r} is not a valid deployment name",
                              "use letters, digits, '-', '_' or '.', starting with a letter or digit (max 63)")
    return name


def _url(cols: dict) -> str | None:
    return f"http://{cols['host'] or HOST}:{cols['port']}" if cols.get("port") else None


def _find(name: str):
    found = store.read(_check_name(name))
    if found is None:
        known = store.names()
        raise DeploymentError(f"no deployment called {name!r}",
                              f"deploy it first (nbprod.deploy(uri, name={name!r})); "
                              f"known: {', '.join(known) or 'none'}")
    return found


def _wait_applied(name: str, generation: int, pid: int, t_call: float, t_write: float,
                  timeout: float = _APPLY_TIMEOUT_S) -> float | None:
    """Seconds from the call until every live worker acknowledged ``generation`` (None: timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acks = store.acks(name)
        live = {p: a for p, a in acks.items() if (p == pid or a["parent"] == pid) and process.alive(p)}
        done = []
        for a in live.values():
            if a["generation"] is not None and a["generation"] >= generation:
                done.append(a["updated_at"])
            elif a["generation"] is None and a["started_at"] >= t_write:
                done.append(a["started_at"])  # started after the write: loaded this spec initially
            else:
                break
        else:
            if live:
                return max(0.0, max(done) - t_call)
        if not process.alive(pid):
            return None
        time.sleep(0.02)
    return None


def _live_workers(name: str, pid: int | None) -> list[int]:
    return [p for p, a in store.acks(name).items() if (p == pid or a["parent"] == pid) and process.alive(p)]


def _wait_ready(name: str, port: int, pid: int, workers: int, timeout: float = 90.0) -> float:
    """Start until ready: /v2/health/ready answers and every worker process has registered."""
    t0 = time.perf_counter()
    process.wait_ready(name, HOST, port, pid, timeout=timeout)
    deadline = time.monotonic() + timeout
    while len(_live_workers(name, pid)) < workers and time.monotonic() < deadline and process.alive(pid):
        time.sleep(0.02)
    return time.perf_counter() - t0


def _token_matches(spec, token: str | None) -> bool:
    return spec.token_sha256 is None or (token is not None and hash_token(token) == spec.token_sha256)


def _deployment(name: str, action: str, *, token: str | None = None, ready_s=None, last_change_s=None,
                latency=None, warnings=None) -> Deployment:
    spec, cols, meta = _find(name)
    return Deployment(name=name, url=_url(cols) or "", action=action, routes=routes.as_dicts(spec), pid=cols["pid"],
                      workers=int(meta.get("workers", 1)), generation=spec.generation, token=token,
                      auth=spec.token_sha256 is not None, ready_s=ready_s, last_change_s=last_change_s,
                      latency=latency, warnings=list(warnings or []), alerts=alerting.view(meta))


def _change(name: str, spec, new_routes: list, *, action: str, model_uri: str | None, details: dict,
            meta: dict, cols: dict, t_call: float, **spec_changes: Any) -> tuple[int, float | None, list[str]]:
    """Write the new routes (one transaction with the audit row) and wait for every worker."""
    new = DeploymentSpec.from_dict({**spec.to_dict(), "routes": [dataclasses.asdict(r) for r in new_routes],
                                    **spec_changes})
    t_write = time.time()
    generation = store.write_change(name, new, meta=meta, action=action, model_uri=model_uri,
                                    details={"routes": routes.as_dicts(new), **details},
                                    expected_generation=spec.generation)
    took = _wait_applied(name, generation, cols["pid"], t_call, t_write)
    warnings = [] if took is not None else [
        f"not every worker confirmed generation {generation} within {_APPLY_TIMEOUT_S:g} s: see nbprod status {name}"]
    if took is not None:
        meta = {**meta, "last_change_s": round(took, 4)}
        store.set_columns(name, meta=meta)
    return generation, took, warnings


def _ensure_running(name: str, *, alerts: Any = _KEEP, webhook: str | None = None) -> tuple[Any, dict, dict, bool]:
    """The deployment's (spec, cols, meta, restarted), restarting a server that died (with ``alerts``
    and ``webhook`` when given); a stopped one is refused."""
    spec, cols, meta = _find(name)
    if cols["status"] in ("stopped", "draining"):
        raise store.stopped_error(name, cols["status"], json.dumps(spec.to_dict()))
    claim = store.live_claim(meta)
    if claim is not None:  # a deploy or restore is starting its server right now
        raise store.conflict(name, claim)
    if not process.is_server_of(cols["pid"], name):
        _restore(name, alerts=alerts, webhook=webhook)
        spec, cols, meta = _find(name)
        return spec, cols, meta, True
    return spec, cols, meta, False


# --- verbs --------------------------------------------------------------------------------------

def deploy(uri: str, *, name: str | None = None, canary: float | None = None, shadow: bool = False,
           split: dict | None = None, budget_p95_ms: float | None = None, token: str | None = None,
           server: ServerSettings | dict | None = None, alerts: AlertSettings | dict | None = None,
           on_alert: dict | list | None = None) -> Deployment:
    """Serve the registered version ``uri`` as deployment ``name`` (default: the model's name).

    A new name starts a detached server on 127.0.0.1 and returns its bearer token once. A name
    that already runs gets the version beside the current stable one: ``canary=5`` (5 % of
    traffic), ``shadow=True`` (a copy of traffic, answers never returned), ``split={"3": 50, "4": 50}``
    (A/B), or none of these (a direct switch, rollback-able). ``budget_p95_ms`` measures the
    version before it gets traffic and refuses it (:class:`LatencyBudgetExceeded`) over budget.
    ``token``: the deployment's token, lets the gate run inside the live server.

    ``server``: :class:`ServerSettings` (or a dict of them): ``port``, ``workers``, ``auth``,
    ``ood`` — a running deployment keeps its port and worker count.

    ``alerts``: :class:`AlertSettings` (or a dict of them): ``rules`` (``["p95_ms > 100",
    "drift_share > 0.3"]``, or text separated by ``;``) the server checks every ``interval``
    seconds (default 60; or ``"5m"``) over monitor windows of ``window`` (default ``"1h"``),
    posting firings to ``webhook`` (default ``$NBPROD_ALERT_WEBHOOK``; never stored). A bad rule
    is a RuleError, a bad interval or webhook a ConfigError, before anything starts. A later
    deploy to the name keeps the recorded settings unless it gives new ones (``rules=[]`` removes
    them); a running server applies new settings when it restarts (:mod:`.alerting`).

    ``on_alert``: retraining from an alert, ``{"drift_share > 0.3": "pipeline.yaml"}`` (or a list
    of ``(rule, file)`` pairs): when the rule fires, the server's alert loop starts the pipeline
    once per incident with the alert's window as its parameters (:mod:`nbprod.pipelines.trigger`).
    Recorded with the alert settings (the file's absolute path), so a restart, ``restore`` or
    promote keeps it; ``{}`` removes it. A bad rule is a RuleError, a missing or broken pipeline
    file a PipelineError, before anything starts.
    """
    given = alerting.given(AlertSettings.of(alerts), on_alert)
    server = ServerSettings.of(server)
    check_traffic(canary, shadow, split, budget_p95_ms)
    if not isinstance(uri, str) or not uri:
        raise DeploymentError(f"no model to deploy (got {uri!r})",
                              "pass a registered model URI, e.g. credit-risk@challenger")
    t_call = time.time()
    mv = routes.resolve(uri)
    name = _check_name(name or mv.name)
    found = store.read(name)
    merged = alerting.merge(given, found[2].get("alerts") if found else None)
    if found is None or found[1]["status"] == "stopped":
        return _deploy_new(name, mv, server=server, canary=canary, shadow=shadow, split=split, budget=budget_p95_ms,
                           alerts=merged, replacing=None if found is None else found[1]["generation"],
                           webhook=alerting.webhook_for(given.get("webhook"), strict=True) if merged else None)
    if server.port is not None and found[1]["port"] not in (None, server.port):
        raise DeploymentError(f"deployment {name!r} already serves on port {found[1]['port']}",
                              "leave port out to change its traffic, or undeploy it first to move it")
    changes_alerts = bool(given) and alerting.key(merged) != alerting.key(found[2].get("alerts"))
    spec, cols, meta, restarted = _ensure_running(name, alerts=merged if given else _KEEP,
                                                  webhook=given.get("webhook"))
    notes = [] if restarted or not given else alerting.notes(name, cols["pid"], meta, merged, given)
    if server.workers is not None and server.workers != int(meta.get("workers", 1)):
        notes.append(f"workers={server.workers} ignored: {name!r} runs {meta.get('workers', 1)} worker(s); "
                     "undeploy and deploy again to change it")
    if not server.auth and meta.get("auth", True):
        notes.append(f"auth=False ignored: {name!r} keeps its bearer token; undeploy and deploy again to change it")
    stable = spec.stable
    same = str(mv.version) == stable.version and mv.uri == stable.uri
    if not same:
        routes.warm(routes.route(mv, 0, "canary"))
        t_call = time.time()  # last_change_s measures the traffic change, not the preparation
    if same and (canary is not None or shadow):
        raise DeploymentError(f"v{mv.version} is already the stable version of {name!r}",
                              "deploy a different version as the canary or shadow")
    latency = None
    if budget_p95_ms is not None:
        latency = _gate_existing(name, spec, cols, meta, mv, budget_p95_ms, token, t_call)
        spec, cols, meta = _find(name)
        t_call = time.time()  # last_change_s measures the traffic change, not the gate
    if split is not None:
        new_routes = routes.split_routes(mv.name, split, stable.version)
    elif canary is not None:
        new_routes = [dataclasses.replace(stable, weight=100 - float(canary)),
                      routes.route(mv, float(canary), "canary")]
    elif shadow:
        new_routes = [dataclasses.replace(stable, weight=100), routes.route(mv, 100, "shadow")]
    else:
        new_routes = [dataclasses.replace(stable, weight=100)] if same else [routes.route(mv, 100, "stable")]
    new_meta = dict(meta)
    if budget_p95_ms is not None:
        new_meta["budget_p95_ms"] = float(budget_p95_ms)
    new_stable = next(r for r in new_routes if r.role == "stable")
    if new_stable.key != stable.key:
        new_meta["previous"] = dataclasses.asdict(stable)
    how = "split" if split is not None else "canary" if canary is not None else "shadow" if shadow else "switch"
    details = {"mode": how, "from": stable.version, "budget_p95_ms": budget_p95_ms}
    if given:
        new_meta["alerts"] = merged
        if changes_alerts:
            details["alerts"] = merged  # rules, interval, window: never the webhook
    changes = {"ood": server.ood} if server.ood else {}
    _, took, warnings = _change(name, spec, new_routes, action="deploy", model_uri=mv.uri, details=details,
                                meta=new_meta, cols=cols, t_call=t_call, **changes)
    return _deployment(name, f"deploy ({how})", last_change_s=took, latency=latency, warnings=notes + warnings)


def _gate_existing(name, spec, cols, meta, mv, budget, token, t_call) -> dict:
    """Run the gate on a running deployment: in-server as a zero-weight route, or on a side process."""
    token = token or os.environ.get("NBPROD_TOKEN")
    if not _token_matches(spec, token):
        figures = gate.measure_on_side_server(mv, budget, host=HOST)
    else:
        trial = list(spec.routes)
        if not any(r.version == str(mv.version) and r.uri == mv.uri for r in trial):
            trial.append(routes.route(mv, 0, "canary"))  # loaded, measured through the pinned endpoint, no traffic
        _change(name, spec, trial, action="deploy.gate", model_uri=mv.uri, details={"budget_p95_ms": budget},
                meta=meta, cols=cols, t_call=t_call)
        trial_spec = _find(name)[0]

        def revert(details: dict) -> None:
            _change(name, trial_spec, list(spec.routes), action="deploy.refused", model_uri=mv.uri,
                    details=details, meta=meta, cols=cols, t_call=time.time())

        try:
            figures = gate.measure_deployment(name, mv, budget, host=HOST, port=cols["port"], token=token)
        except BaseException:
            revert({"reason": "latency gate failed to run"})
            raise
        if not figures.ok:
            revert({"latency": figures.to_dict()})
    if not figures.ok:
        if not _token_matches(spec, token):
            store.set_columns(name, audit_action="deploy.refused", model_uri=mv.uri,
                              details={"latency": figures.to_dict()})
        raise gate.refusal(figures, mv, budget)
    return figures.to_dict()


def _deploy_new(name: str, mv, *, server: ServerSettings, canary, shadow, split, budget, alerts: dict | None,
                webhook: str | None, replacing: int | None) -> Deployment:
    """Start a server for a new name (or one that was undeployed: ``replacing`` its generation).

    :func:`store.create` records it claimed by this process, so a concurrent deploy or restore of
    the name is refused rather than starting a second server; the claim ends when the server is
    ready (and through the gate), or with the record when the start fails."""
    if canary is not None or shadow:
        raise DeploymentError(f"deployment {name!r} does not run yet, so there is no stable version to "
                              f"{'canary' if canary is not None else 'shadow'} against",
                              f"deploy a stable version first: nbprod.deploy({mv.uri!r}, name={name!r})")
    port, workers, no_auth = server.port, server.workers or 1, not server.auth
    if port is None:
        port = process.free_port(HOST)
    elif not process.port_free(port, HOST):
        raise DeploymentError(f"port {port!r} on {HOST} is not free",
                              "pick another port, or leave it out for a free one")
    new_routes = routes.split_routes(mv.name, split, None) if split is not None else [routes.route(mv, 100, "stable")]
    token = None if no_auth else secrets.token_urlsafe(24)
    spec = DeploymentSpec(name=name, routes=new_routes, ood=server.ood or "flag",
                          token_sha256=hash_token(token) if token else None)
    meta = {"workers": workers, "auth": not no_auth, "log": str(process.log_path(name)),
            "created_at": time.time(), "previous": None, "alerts": alerts,
            "alerts_server": alerting.served(alerts, webhook),
            "budget_p95_ms": float(budget) if budget is not None else None}
    store.create(name, spec, meta=meta, action="deploy", model_uri=mv.uri,
                 details={"mode": "split" if split else "new", "routes": routes.as_dicts(spec), "port": port,
                          "workers": workers, "auth": not no_auth, "budget_p95_ms": budget,
                          **({"alerts": alerts} if alerts else {})},
                 replacing=replacing, host=HOST, port=port, pid=None, status="starting")
    pid = None
    try:
        t_start = time.perf_counter()
        pid = process.start_server(name, port, workers=workers, auth=not no_auth, host=HOST, alerts=alerts,
                                   webhook=webhook)
        store.set_columns(name, pid=pid)
        # while the server starts (it imports the serving stack for ~1 s first): one verified load here
        # fills the start-up cache, and a worker that gets there first waits for it (serving.loader's
        # lock) rather than loading the version in full itself
        for route in new_routes:
            routes.warm(route)
        _wait_ready(name, port, pid, workers)
        ready_s = time.perf_counter() - t_start
        store.set_columns(name, status="running")
        latency = None
        if budget is not None:
            figures = gate.measure_deployment(name, mv, budget, host=HOST, port=port, token=token)
            if not figures.ok:
                raise gate.refusal(figures, mv, budget)
            latency = figures.to_dict()
        store.set_columns(name, meta={**meta, "ready_s": round(ready_s, 4)})  # without the claim: done
    except BaseException as exc:
        if pid is not None:
            process.stop(pid, timeout=5)
        store.delete(name, audit_action="deploy.refused" if isinstance(exc, LatencyBudgetExceeded) else "deploy.failed",
                     model_uri=mv.uri, details={"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    return _deployment(name, "deployed", token=token, ready_s=ready_s, latency=latency)


def promote(name: str, version: str | None = None) -> Deployment:
    """Send 100 % to the canary (or shadow / split) version, keep the old stable for rollback, set @champion."""
    t_call = time.time()
    spec, cols, meta, _ = _ensure_running(name)
    stable = spec.stable
    candidates = [r for r in spec.routes if r.role != "stable"]
    if version is not None:
        candidates = [r for r in spec.routes if r.version == str(version) and r.key != stable.key]
        if not candidates:
            raise DeploymentError(f"deployment {name!r} has no non-stable version {version!r}",
                                  f"its routes: {', '.join(f'v{r.version} {r.role}' for r in spec.routes)}")
    if not candidates:
        raise DeploymentError(f"deployment {name!r} has no canary, shadow or split version to promote",
                              f"deploy one first, e.g. nbprod.deploy(uri, name={name!r}, canary=5)")
    traffic = [r for r in candidates if r.role == "canary"]
    if version is None and len(traffic) > 1:
        raise DeploymentError(f"deployment {name!r} has several candidate versions "
                              f"({', '.join('v' + r.version for r in traffic)})", "pass version= to say which one")
    winner = (traffic or candidates)[0]
    new_stable = dataclasses.replace(winner, weight=100, role="stable")
    new_meta = {**meta, "previous": dataclasses.asdict(stable)}
    _, took, warnings = _change(name, spec, [new_stable], action="promote", model_uri=winner.uri,
                                details={"from": stable.version, "to": winner.version}, meta=new_meta, cols=cols,
                                t_call=t_call)
    try:
        set_alias(winner.uri, "champion")
    except Exception as exc:  # noqa: BLE001 - without @champion the promotion is undone
        spec2, cols2, _ = _find(name)
        _change(name, spec2, list(spec.routes), action="promote.reverted", model_uri=winner.uri,
                details={"error": f"{type(exc).__name__}: {exc}"[:300]}, meta=meta, cols=cols2, t_call=time.time())
        raise
    return _deployment(name, f"promoted v{winner.version}", last_change_s=took, warnings=warnings)


def rollback(name: str) -> Deployment:
    """All traffic back to the stable version (dropping a canary), or to the previous stable after a promote.

    Once: a second rollback with no promote or switch in between is refused (DeploymentError), rather
    than rolling forward to the version just rolled back from. A stopped deployment is refused too.
    """
    t_call = time.time()
    spec, cols, meta, _ = _ensure_running(name)
    stable = spec.stable
    if any(r.role != "stable" for r in spec.routes):
        new_routes, target, new_meta = [dataclasses.replace(stable, weight=100)], stable, meta
        what = "dropped " + ", ".join(f"v{r.version} ({r.role})" for r in spec.routes if r.role != "stable")
    else:
        prev = meta.get("previous")
        done = meta.get("rolled_back")
        if not prev and done:
            raise DeploymentError(f"deployment {name!r} was already rolled back (v{done['from']} → v{done['to']}) "
                                  "and no earlier version is recorded",
                                  f"to serve v{done['from']} again, deploy it: "
                                  f"nbprod.deploy({done.get('uri') or 'URI'!r}, name={name!r})")
        if not prev:
            raise DeploymentError(f"deployment {name!r} has no previous version to roll back to",
                                  "rollback returns to the version served before the last promote or switch")
        target = Route(**{**prev, "weight": 100, "role": "stable"})
        # a rollback is not undone by the next rollback: the version rolled back from is not kept as
        # "previous" (deploy it again to serve it)
        new_routes, new_meta = [target], {**meta, "previous": None,
                                          "rolled_back": {"from": stable.version, "to": target.version,
                                                          "uri": stable.uri}}
        what = f"v{stable.version} → v{target.version}"
    _, took, warnings = _change(name, spec, new_routes, action="rollback", model_uri=target.uri,
                                details={"what": what, "from": stable.version, "to": target.version},
                                meta=new_meta, cols=cols, t_call=t_call)
    if target.key != stable.key:
        try:  # @champion follows the rollback when it pointed at the version rolled back
            champ = get_version(f"{get_version(stable.uri).name}@champion")
            if str(champ.version) == stable.version:
                set_alias(target.uri, "champion")
        except Exception as exc:  # noqa: BLE001 - traffic is already back; say so rather than fail
            warnings.append(f"@champion not moved back: {type(exc).__name__}: {exc}")
    return _deployment(name, f"rolled back ({what})", last_change_s=took, warnings=warnings)


def set_split(name: str, split: Any) -> Deployment:
    """Set the traffic split of a running deployment between versions of the model it serves.

    ``split={"3": 50, "4": 50}`` (version -> percent, adding up to 100): the same change as
    ``deploy(MODEL, name=name, split=split)`` for a caller that knows the deployment, not the model
    (the sidebar's "Set split"). The stable version stays stable when it keeps a share.
    """
    if not isinstance(split, dict):
        raise DeploymentError(f"split must map versions to percentages, got {split!r}",
                              "pass e.g. split={'3': 50, '4': 50} (the weights add up to 100)")
    spec, _, _ = _find(name)
    return deploy(routes.resolve(spec.stable.uri).uri, name=name, split=split)


def undeploy(name: str, *, timeout: float = 10.0) -> StatusTable:
    """Drain and stop: SIGTERM (stop accepting, finish in-flight requests), SIGKILL after ``timeout``."""
    spec, cols, meta = _find(name)
    if cols["status"] == "stopped":  # already undeployed: nothing to stop, nothing to audit
        return status(name)
    t0 = time.perf_counter()
    cols = store.begin_undeploy(name)  # draining, under the lock: no traffic change commits after this
    if cols is None:
        return status(name)
    pid = cols["pid"]
    result = process.stop(pid, timeout=timeout) if process.is_server_of(pid, name) else "not running"
    _stop_strays(pid)
    store.set_columns(name, pid=None, status="stopped", audit_action="undeploy", model_uri=spec.stable.uri,
                      details={"result": result, "stop_s": round(time.perf_counter() - t0, 3), "pid": pid})
    return status(name)


def _live_row(name: str) -> DeploymentStatus:
    spec, cols, meta = _find(name)
    pid, want = cols["pid"], int(meta.get("workers", 1))
    route_dicts = routes.as_dicts(spec)
    base = dict(name=name, url=_url(cols), pid=pid, routes=route_dicts, generation=spec.generation,
                budget_p95_ms=meta.get("budget_p95_ms"), previous_version=(meta.get("previous") or {}).get("version"))
    if cols["status"] == "stopped":
        return DeploymentStatus(state="stopped", workers=f"0/{want}", alerts=alerting.view(meta, running=False),
                                **{**base, "pid": None})
    claim = store.live_claim(meta)
    if claim is not None and not process.is_server_of(pid, name):
        return DeploymentStatus(state="starting", workers=f"0/{want}", alerts=alerting.view(meta, running=False),
                                detail=f"being started by process {claim['pid']}", **base)
    if not process.is_server_of(pid, name):
        return DeploymentStatus(state="dead", workers=f"0/{want}", alerts=alerting.view(meta, running=False),
                                detail=f"process {pid} is gone: nbprod deploy --restore" if pid else "never started",
                                **base)
    workers = _live_workers(name, pid)
    code, body, _ = process.http_get(cols["host"] or HOST, cols["port"], "/health", timeout=2.0)
    served = body.get("generation") if isinstance(body, dict) else None
    if code != 200:
        state, detail = ("starting" if code == 503 else "unhealthy"), f"/health answered {code or 'nothing'}"
    elif len(workers) < want:
        state, detail = "degraded", f"{want - len(workers)} worker(s) missing"
    else:
        state, detail = "running", ""
    return DeploymentStatus(state=state, workers=f"{len(workers)}/{want}", served_generation=served, detail=detail,
                            alerts=alerting.view(meta), **base)


def status(name: str | None = None, *, health: bool = False, window: str = "1h") -> StatusTable:
    """Every recorded deployment (or ``name``) with live health: a process that died shows as dead.

    ``health=True`` adds each row's recent figures from the prediction log and its alert states
    (:func:`nbprod.monitoring.summary.health` over ``window``: p95, error rate, drift, firing rules).
    """
    names = [_check_name(name)] if name else store.names()
    rows = [_live_row(n) for n in names]
    if health:
        for row in rows:
            row.health = summary(row.name, window=window).to_dict()
    return StatusTable(rows)


def restore(name: str | None = None, *, alert_webhook: str | None = None) -> StatusTable:
    """Restart every recorded deployment (or ``name``) whose server is not running, with its recorded split.

    Stopped (undeployed) deployments stay stopped. The restarted server reuses the recorded port when it
    is free, the recorded spec (routes, weights, token hash), worker count and alert rules; it posts
    alerts to ``alert_webhook``, else ``$NBPROD_ALERT_WEBHOOK`` of this process — without either, the
    rules are still checked and firings recorded, not posted (``nbprod status`` shows "no webhook").
    """
    webhook = alerting.given(AlertSettings(webhook=alert_webhook)).get("webhook")
    return _restore(name, webhook=webhook)


def _stop_strays(pid: int | None) -> None:
    """Workers left by a server process that died (its group outlives it): SIGKILL them. Workers
    die with their master (:func:`events.die_with_parent`); this is for the ones that could not."""
    if pid and not process.alive(pid):
        for stray in process.group_members(pid):
            process.stop(stray, timeout=2)


def _restore(name: str | None, *, alerts: Any = _KEEP, webhook: str | None = None) -> StatusTable:
    """``alerts`` / ``webhook``: a deploy call's new alert settings for the one deployment ``name``.

    Each restart is claimed first (:func:`store.claim_restart`): a concurrent restore or deploy of
    the same name gets DeploymentConflict (for ``name``) or skips it (restoring all)."""
    names = [_check_name(name)] if name else store.names()
    started: list[tuple] = []
    claimed: list[str] = []
    errors: list[DeploymentError] = []
    try:
        for n in names:
            try:
                if not store.claim_restart(n):
                    continue
            except DeploymentConflict:
                if name:
                    raise
                continue  # someone else is restarting it: theirs to finish
            claimed.append(n)
            spec, cols, meta = _find(n)
            _stop_strays(cols["pid"])
            port = cols["port"] if cols["port"] and process.port_free(cols["port"], HOST) else process.free_port(HOST)
            settings = meta.get("alerts") if alerts is _KEEP else alerts
            hook = alerting.webhook_for(webhook, strict=False) if settings else None
            pid = process.start_server(n, port, workers=int(meta.get("workers", 1)),
                                       auth=bool(meta.get("auth", True)), alerts=settings, webhook=hook)
            store.set_columns(n, host=HOST, port=port, pid=pid)
            new_meta = {k: v for k, v in meta.items() if k != store.CLAIM}
            new_meta.update(alerts=settings, alerts_server=alerting.served(settings, hook))
            started.append((n, spec, port, pid, cols["pid"], new_meta))
        for n, spec, port, pid, old, new_meta in started:
            try:
                ready_s = _wait_ready(n, port, pid, int(new_meta.get("workers", 1)))
            except DeploymentError as exc:
                store.set_columns(n, status="dead", meta=new_meta, audit_action="deploy.restore_failed",
                                  model_uri=spec.stable.uri, details={"error": exc.problem[:500]})
                errors.append(exc)
                continue
            store.set_columns(n, status="running", meta=new_meta, audit_action="deploy.restore",
                              model_uri=spec.stable.uri,
                              details={"routes": routes.as_dicts(spec), "port": port, "pid": pid, "old_pid": old,
                                       "ready_s": round(ready_s, 3)})
    finally:
        for n in claimed:  # done, failed or interrupted: the claim ends with this call
            store.release(n)
    if errors and len(errors) == len(started) and name:
        raise errors[0]
    return status(name)
