"""deploy, promote, rollback, undeploy, status, restore: traffic changes through the state DB.

A deployment is a row in the state DB (the :class:`~nbprod.serving.spec.DeploymentSpec` and its
``generation``) plus a detached ``nbprod serve --deployment NAME`` process. Every traffic change
is one transaction — new spec, generation + 1, audit row — and the server's workers pick it up
on their next poll (200 ms) and swap their routing table atomically, so no request fails and no
worker serves a mix. The call then waits until every worker has acknowledged the generation and
reports how long that took (``Deployment.last_change_s``).

Alert rules (``alert_rules=``): the server's background loop (:mod:`nbprod.monitoring.loop`)
checks them as ``nbprod monitor NAME --check`` does. The rules, interval and window are recorded
in the deployment's meta (``meta["alerts"]``), so a restart brings them back and a later deploy
that gives no alert options keeps them. The webhook URL is a credential: it is never written to
the state DB, only handed to the server in its environment — ``alert_webhook=``, else
``NBPROD_ALERT_WEBHOOK`` of the process that starts the server (a deploy, or a restore). A server
started without one still checks its rules and records firings in ``alert_state`` without posting
them (``nbprod status`` says "no webhook"); the first check of a server that has one posts them.
A server reads its alert settings when it starts: new settings given to a running deployment are
recorded and apply when its server restarts (the card and ``nbprod status`` say so meanwhile).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import time
from typing import Any

from ..errors import ConfigError, DeploymentError, LatencyBudgetExceeded, RuleError
from . import process, store
from .results import Deployment, DeploymentStatus, StatusTable

__all__ = ["deploy", "promote", "rollback", "undeploy", "status", "restore", "HOST"]

HOST = "127.0.0.1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_APPLY_TIMEOUT_S = 15.0
_KEEP = object()  # _restore: start with the recorded alert settings


# --- helpers ------------------------------------------------------------------------------------

def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DeploymentError(f"{name!r} is not a valid deployment name",
                              "use letters, digits, '-', '_' or '.', starting with a letter or digit (max 63)")
    return name


def _route_dicts(spec) -> list[dict]:
    return [{"version": r.version, "role": r.role, "weight": r.weight, "uri": r.uri} for r in spec.routes]


def _url(cols: dict) -> str | None:
    return f"http://{cols['host'] or HOST}:{cols['port']}" if cols.get("port") else None


def _find(name: str):
    found = store.read(_check_name(name))
    if found is None:
        known = store.names()
        raise DeploymentError(f"no deployment called {name!r}",
                              f"deploy it first (nbprod.deploy(uri, name={name!r})); known: {', '.join(known) or 'none'}")
    return found


def _resolve(uri: str):
    from ..registry import get_version

    return get_version(uri)


def _route(mv, weight: float, role: str):
    """A route that names the registered version and its local artefacts: the server then loads the
    directory through its start-up cache without importing MLflow (the URI is the fallback)."""
    from ..registry.versions import local_model_dir
    from ..serving.spec import Route

    try:
        path = str(local_model_dir(mv))
    except Exception:  # noqa: BLE001 - a remote store without a cached copy: the server downloads it
        path = None
    return Route(uri=mv.uri, version=str(mv.version), weight=weight, role=role, path=path)


def _warm(route) -> None:
    """Load a version once here, before any worker needs it: this checks its manifest, compiles its
    fast path and fills the server's verified start-up cache, so every worker then switches to it
    from the cache in well under a second instead of each doing a full load while serving."""
    from ..serving.loader import load_version

    try:
        load_version(route.source, route.version)
    except Exception:  # noqa: BLE001 - a broken version is the server's to refuse and report
        pass


def _split_routes(model: str, split: dict, stable_version: str | None) -> list:
    if not isinstance(split, dict) or len(split) < 2:
        raise DeploymentError(f"split must map at least two versions to weights, got {split!r}",
                              "pass split={'3': 50, '4': 50} (--split 3=50,4=50)")
    try:
        weights = {str(k): float(v) for k, v in split.items()}
    except (TypeError, ValueError):
        raise DeploymentError(f"split weights must be numbers, got {split!r}", "pass split={'3': 50, '4': 50}") from None
    if any(not 0 <= w <= 100 for w in weights.values()) or abs(sum(weights.values()) - 100) > 1e-6:
        raise DeploymentError(f"split weights {weights} must each be 0..100 and add up to 100",
                              "e.g. split={'3': 50, '4': 50} or {'3': 90, '4': 10}")
    mvs = []
    for key, w in weights.items():
        uri = f"{model}/{key}" if key.isdigit() else (f"{model}{key}" if key.startswith("@") else key)
        mvs.append((_resolve(uri), w))
    versions = [str(mv.version) for mv, _ in mvs]
    if len(set(versions)) != len(versions):
        raise DeploymentError(f"split names version(s) twice: {versions}", "name each version once")
    stable = stable_version if stable_version in versions else max(mvs, key=lambda x: x[1])[0].version
    return [_route(mv, w, "stable" if str(mv.version) == str(stable) else "canary") for mv, w in mvs]


def _check_options(canary, shadow, split, workers, budget_p95_ms, ood) -> None:
    chosen = [x for x in (canary is not None, bool(shadow), split is not None) if x]
    if len(chosen) > 1:
        raise DeploymentError("canary, shadow and split are alternatives", "pass at most one of them")
    if canary is not None:
        try:
            if isinstance(canary, bool):
                raise TypeError("a bool is not a percentage")
            canary = float(canary)
        except (TypeError, ValueError):
            raise DeploymentError(f"canary must be a percentage, got {canary!r}", "e.g. canary=5") from None
        if not 0 < canary < 100:
            raise DeploymentError(f"canary must be between 0 and 100 (exclusive), got {canary:g}",
                                  "e.g. canary=5; use promote() to send it 100%")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DeploymentError(f"workers must be a positive integer, got {workers!r}", "e.g. workers=2")
    if budget_p95_ms is not None and (isinstance(budget_p95_ms, bool) or not isinstance(budget_p95_ms, (int, float))
                                      or budget_p95_ms <= 0):
        raise DeploymentError(f"budget_p95_ms must be a positive number, got {budget_p95_ms!r}", "e.g. budget_p95_ms=50")
    if ood is not None and ood not in ("flag", "reject"):
        raise DeploymentError(f"ood must be 'flag' or 'reject', got {ood!r}",
                              "ood='flag' serves and marks outliers, ood='reject' answers 400")


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
    from ..serving.spec import hash_token

    return spec.token_sha256 is None or (token is not None and hash_token(token) == spec.token_sha256)


def _deployment(name: str, action: str, *, token: str | None = None, ready_s=None, last_change_s=None,
                latency=None, warnings=None) -> Deployment:
    spec, cols, meta = _find(name)
    return Deployment(name=name, url=_url(cols) or "", action=action, routes=_route_dicts(spec), pid=cols["pid"],
                      workers=int(meta.get("workers", 1)), generation=spec.generation, token=token,
                      auth=spec.token_sha256 is not None, ready_s=ready_s, last_change_s=last_change_s,
                      latency=latency, warnings=list(warnings or []), alerts=_alerts_view(meta))


def _change(name: str, spec, new_routes: list, *, action: str, model_uri: str | None, details: dict,
            meta: dict, cols: dict, t_call: float, **spec_changes: Any) -> tuple[int, float | None, list[str]]:
    """Write the new routes (one transaction with the audit row) and wait for every worker."""
    from ..serving.spec import DeploymentSpec

    new = DeploymentSpec.from_dict({**spec.to_dict(), "routes": [dataclasses.asdict(r) for r in new_routes],
                                    **spec_changes})
    t_write = time.time()
    generation = store.write_change(name, new, meta=meta, action=action, model_uri=model_uri,
                                    details={"routes": _route_dicts(new), **details},
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
    if cols["status"] == "stopped":
        raise DeploymentError(f"deployment {name!r} is stopped (undeployed); its traffic cannot be changed",
                              f"deploy it again: nbprod.deploy({spec.stable.uri!r}, name={name!r})")
    if not process.is_server_of(cols["pid"], name):
        _restore(name, alerts=alerts, webhook=webhook)
        spec, cols, meta = _find(name)
        return spec, cols, meta, True
    return spec, cols, meta, False


# --- alert settings -----------------------------------------------------------------------------

def _given_alerts(rules: Any, webhook: Any, interval: Any, window: Any) -> dict:
    """This call's alert options, validated as the server's loop validates them (RuleError,
    ConfigError) before anything is resolved or started: ``{}`` when none were given."""
    if rules is None and webhook is None and interval is None and window is None:
        return {}
    from ..monitoring.alerts import parse_rules
    from ..monitoring.windows import parse_duration

    given: dict = {}
    if rules is not None:
        if not isinstance(rules, (str, list, tuple, set)):
            raise RuleError(f"alert_rules must be a list of rules, got {type(rules).__name__}",
                            "pass e.g. alert_rules=['p95_ms > 100', 'drift_share > 0.3']")
        given["rules"] = [r.text for r in parse_rules(rules)]
    if interval is not None:
        given["interval_s"] = parse_duration(interval)
    if window is not None:
        given["window"] = window.strip() if isinstance(window, str) else str(parse_duration(window))
        parse_duration(given["window"])
    if webhook is not None:
        from ..monitoring.loop import check_webhook

        given["webhook"] = check_webhook(webhook, "alert_webhook")
    return given


def _merge_alerts(given: dict, recorded: dict | None) -> dict | None:
    """The alert settings after this call: ``recorded`` with the given options applied (an option
    left out keeps its recorded value). None: no rules, no alert loop."""
    base = recorded if recorded and recorded.get("rules") else {}
    rules = given.get("rules", base.get("rules", []))
    if not rules:
        extra = [k for k in ("webhook", "interval_s", "window") if k in given]
        if extra:
            raise RuleError("an alert webhook, interval or window was given without alert rules",
                            "add rules (alert_rules=['p95_ms > 100'], --alert-rule 'p95_ms > 100'), "
                            "or leave the alert options out")
        return None
    from ..monitoring.loop import DEFAULT_INTERVAL_S

    interval = given.get("interval_s", base.get("interval_s", DEFAULT_INTERVAL_S))
    return {"rules": list(rules), "interval_s": float(interval), "window": str(given.get("window", base.get("window", "1h")))}


def _webhook(given: str | None, *, strict: bool) -> str | None:
    """The webhook a server starts with: ``given``, else ``NBPROD_ALERT_WEBHOOK`` here. A bad
    variable is a ConfigError (``strict``, a deploy) or ignored (a restore: the loop runs, unposted)."""
    from ..monitoring.loop import WEBHOOK_ENV, check_webhook

    if given:
        return given
    url = os.environ.get(WEBHOOK_ENV) or None
    if url is None:
        return None
    try:
        return check_webhook(url, f"${WEBHOOK_ENV}")
    except ConfigError:
        if strict:
            raise
        return None


def _served_alerts(alerts: dict | None, webhook: str | None) -> dict | None:
    """What a server is started with, for status: the settings and whether it has a webhook (never the URL)."""
    return {**alerts, "webhook": webhook is not None} if alerts else None


def _settings(alerts: dict | None) -> tuple | None:
    if not alerts or not alerts.get("rules"):
        return None
    return tuple(alerts["rules"]), float(alerts["interval_s"]), str(alerts["window"])


def _alerts_view(meta: dict, *, running: bool = True) -> dict | None:
    """The alert settings shown on the card and in ``nbprod status`` (never the webhook URL)."""
    want, served = meta.get("alerts") or None, meta.get("alerts_server") or None
    pending = running and _settings(want) != _settings(served)
    if want is None and not pending:
        return None
    view: dict = {"rules": list((want or {}).get("rules", [])), "interval_s": (want or {}).get("interval_s"),
                  "window": (want or {}).get("window")}
    if running:
        view["webhook"] = bool(served and served.get("webhook"))
        view["pending"] = pending
    return view


# --- the latency gate ---------------------------------------------------------------------------

def _gate(name: str, mv, budget: float, *, port: int, token: str | None) -> Any:
    from . import gate

    figures = gate.measure(HOST, port, name, str(mv.version), gate.rows_for(mv.uri), token=token,
                           budget_p95_ms=float(budget))
    gate.store_on_version(mv.uri, figures)
    return figures


def _gate_side_process(mv, budget: float) -> Any:
    """Measure on a temporary no-auth server on 127.0.0.1 (when the deployment's token is unknown)."""
    import subprocess
    import sys

    from . import gate

    port = process.free_port()
    log = process.log_path(f"gate-{mv.name}-{mv.version}")
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "nbprod.cli", "serve", "--model", mv.uri, "--no-auth",
                                 "--host", HOST, "--port", str(port)], stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, env=process._child_env())
    process._popen[proc.pid] = proc
    try:
        process.wait_ready(f"gate-{mv.name}-{mv.version}", HOST, port, proc.pid, timeout=90)
        _, body, _ = process.http_get(HOST, port, "/health")
        served_as = body.get("deployment") if isinstance(body, dict) else mv.name
        figures = gate.measure(HOST, port, served_as or mv.name, str(mv.version), gate.rows_for(mv.uri), token=None,
                               budget_p95_ms=float(budget))
    finally:
        process.stop(proc.pid, timeout=5)
    gate.store_on_version(mv.uri, figures)
    return figures


def _refuse(figures, mv, budget: float) -> LatencyBudgetExceeded:
    err = LatencyBudgetExceeded(
        f"{mv.uri} answers single-row requests in p95 {figures.p95_ms:.2f} ms, over the budget of {budget:g} ms "
        f"(p50 {figures.p50_ms:.2f}, p99 {figures.p99_ms:.2f} ms over {figures.requests} requests); "
        "it was not given traffic",
        "make the model faster, raise budget_p95_ms, or deploy without a budget")
    err.figures = figures  # type: ignore[attr-defined]
    return err


# --- verbs --------------------------------------------------------------------------------------

def deploy(uri: str | None = None, *, name: str | None = None, port: int | None = None,
           canary: float | None = None, shadow: bool = False, split: dict | None = None,
           ood: str | None = None, no_auth: bool = False, workers: int = 1, budget_p95_ms: float | None = None,
           restore: bool = False, token: str | None = None, alert_rules: Any = None,
           alert_webhook: str | None = None, alert_interval: Any = None,
           alert_window: Any = None) -> Deployment | StatusTable:
    """Serve the registered version ``uri`` as deployment ``name`` (default: the model's name).

    A new name starts a detached server on 127.0.0.1 (``port`` or a free one) and returns its
    bearer token once. A name that already runs gets the version beside the current stable one:
    ``canary=5`` (5 % of traffic), ``shadow=True`` (a copy of traffic, answers never returned),
    ``split={"3": 50, "4": 50}`` (A/B), or none of these (a direct switch, rollback-able).
    ``budget_p95_ms`` measures the version before it gets traffic and refuses it
    (:class:`LatencyBudgetExceeded`) over budget. ``restore=True`` restarts recorded deployments
    whose server died. ``token``: the deployment's token, lets the gate run inside the live server.

    ``alert_rules`` (``["p95_ms > 100", "drift_share > 0.3"]``, or text separated by ``;``): the
    server checks them every ``alert_interval`` seconds (default 60; or ``"5m"``) over monitor
    windows of ``alert_window`` (default ``"1h"``) and posts firings to ``alert_webhook`` (default
    ``$NBPROD_ALERT_WEBHOOK``; never stored). A bad rule is a RuleError, a bad interval or webhook a
    ConfigError, before anything starts. A later deploy to the name keeps the recorded settings
    unless it gives new ones (``alert_rules=[]`` removes them); a running server applies new
    settings when it restarts (module docstring). ``restore=True`` takes ``alert_webhook`` for the
    servers it restarts; their rules are the recorded ones.
    """
    given = _given_alerts(alert_rules, alert_webhook, alert_interval, alert_window)
    if restore:
        if set(given) - {"webhook"}:
            raise DeploymentError("restore restarts deployments with their recorded alert rules, interval and window",
                                  "leave those out (alert_webhook is fine), or deploy a version with the new settings")
        return _restore(name, webhook=given.get("webhook"))
    if uri is None:
        raise DeploymentError("no model to deploy", "pass a registered model URI, e.g. credit-risk@challenger")
    _check_options(canary, shadow, split, workers, budget_p95_ms, ood)
    t_call = time.time()
    mv = _resolve(uri)
    name = _check_name(name or mv.name)
    found = store.read(name)
    alerts = _merge_alerts(given, found[2].get("alerts") if found else None)
    if found is None or found[1]["status"] == "stopped":
        return _deploy_new(name, mv, port=port, canary=canary, shadow=shadow, split=split, ood=ood or "flag",
                           no_auth=no_auth, workers=workers, budget=budget_p95_ms, alerts=alerts,
                           webhook=_webhook(given.get("webhook"), strict=True) if alerts else None)
    if port is not None and found[1]["port"] not in (None, port):
        raise DeploymentError(f"deployment {name!r} already serves on port {found[1]['port']}",
                              "leave port out to change its traffic, or undeploy it first to move it")
    changes_alerts = bool(given) and _settings(alerts) != _settings(found[2].get("alerts"))
    spec, cols, meta, restarted = _ensure_running(name, alerts=alerts if given else _KEEP,
                                                  webhook=given.get("webhook"))
    notes = [] if restarted or not given else _alert_notes(name, cols["pid"], meta, alerts, given)
    if workers != int(meta.get("workers", 1)):
        notes.append(f"workers={workers} ignored: {name!r} runs {meta.get('workers', 1)} worker(s); "
                     "undeploy and deploy again to change it")
    stable = spec.stable
    same = str(mv.version) == stable.version and mv.uri == stable.uri
    if not same:
        _warm(_route(mv, 0, "canary"))
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
        routes = _split_routes(mv.name, split, stable.version)
    elif canary is not None:
        routes = [dataclasses.replace(stable, weight=100 - float(canary)), _route(mv, float(canary), "canary")]
    elif shadow:
        routes = [dataclasses.replace(stable, weight=100), _route(mv, 100, "shadow")]
    else:
        routes = [dataclasses.replace(stable, weight=100)] if same else [_route(mv, 100, "stable")]
    new_meta = dict(meta)
    new_stable = next(r for r in routes if r.role == "stable")
    if new_stable.key != stable.key:
        new_meta["previous"] = dataclasses.asdict(stable)
    how = "split" if split is not None else "canary" if canary is not None else "shadow" if shadow else "switch"
    details = {"mode": how, "from": stable.version, "budget_p95_ms": budget_p95_ms}
    if given:
        new_meta["alerts"] = alerts
        if changes_alerts:
            details["alerts"] = alerts  # rules, interval, window: never the webhook
    changes = {"ood": ood} if ood else {}
    _, took, warnings = _change(name, spec, routes, action="deploy", model_uri=mv.uri, details=details,
                                meta=new_meta, cols=cols, t_call=t_call, **changes)
    return _deployment(name, f"deploy ({how})", last_change_s=took, latency=latency, warnings=notes + warnings)


def _alert_notes(name: str, pid: int | None, meta: dict, alerts: dict | None, given: dict) -> list[str]:
    """What a running server does with alert options it was not started with: they wait for its restart."""
    notes = []
    restart = f"nbprod undeploy {name}, then deploy again (the recorded alert settings are kept)"
    if _settings(alerts) != _settings(meta.get("alerts_server")):
        notes.append(f"new alert settings recorded; the running server (pid {pid}) checks the ones it started "
                     f"with until it restarts: {restart}")
    if "webhook" in given:
        notes.append(f"alert_webhook not applied: the running server (pid {pid}) keeps the webhook it started with "
                     f"(the URL is never stored); to change it: {restart}, with alert_webhook= or NBPROD_ALERT_WEBHOOK")
    return notes


def _gate_existing(name, spec, cols, meta, mv, budget, token, t_call) -> dict:
    """Run the gate on a running deployment: in-server as a zero-weight route, or on a side process."""
    token = token or os.environ.get("NBPROD_TOKEN")
    if not _token_matches(spec, token):
        figures = _gate_side_process(mv, budget)
    else:
        trial = list(spec.routes)
        if not any(r.version == str(mv.version) and r.uri == mv.uri for r in trial):
            trial.append(_route(mv, 0, "canary"))  # loaded, measured through the pinned endpoint, no traffic
        _change(name, spec, trial, action="deploy.gate", model_uri=mv.uri, details={"budget_p95_ms": budget},
                meta=meta, cols=cols, t_call=t_call)
        trial_spec = _find(name)[0]

        def revert(details: dict) -> None:
            _change(name, trial_spec, list(spec.routes), action="deploy.refused", model_uri=mv.uri,
                    details=details, meta=meta, cols=cols, t_call=time.time())

        try:
            figures = _gate(name, mv, budget, port=cols["port"], token=token)
        except BaseException:
            revert({"reason": "latency gate failed to run"})
            raise
        if not figures.ok:
            revert({"latency": figures.to_dict()})
    if not figures.ok:
        if not _token_matches(spec, token):
            store.set_columns(name, audit_action="deploy.refused", model_uri=mv.uri,
                              details={"latency": figures.to_dict()})
        raise _refuse(figures, mv, budget)
    return figures.to_dict()


def _deploy_new(name, mv, *, port, canary, shadow, split, ood, no_auth, workers, budget, alerts=None,
                webhook=None) -> Deployment:
    from ..serving.spec import DeploymentSpec, hash_token

    if canary is not None or shadow:
        raise DeploymentError(f"deployment {name!r} does not run yet, so there is no stable version to "
                              f"{'canary' if canary is not None else 'shadow'} against",
                              f"deploy a stable version first: nbprod.deploy({mv.uri!r}, name={name!r})")
    if port is None:
        port = process.free_port(HOST)
    elif isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise DeploymentError(f"port must be an integer between 1 and 65535, got {port!r}",
                              "pass e.g. port=8080, or leave it out for a free one")
    elif not process.port_free(port, HOST):
        raise DeploymentError(f"port {port!r} on {HOST} is not free", "pick another port, or leave it out for a free one")
    routes = _split_routes(mv.name, split, None) if split is not None else [_route(mv, 100, "stable")]
    token = None if no_auth else secrets.token_urlsafe(24)
    spec = DeploymentSpec(name=name, routes=routes, ood=ood, token_sha256=hash_token(token) if token else None)
    meta = {"workers": workers, "auth": not no_auth, "log": str(process.log_path(name)),
            "created_at": time.time(), "previous": None, "alerts": alerts,
            "alerts_server": _served_alerts(alerts, webhook)}
    store.write_change(name, spec, meta=meta, action="deploy", model_uri=mv.uri,
                       details={"mode": "split" if split else "new", "routes": _route_dicts(spec), "port": port,
                                "workers": workers, "auth": not no_auth, "budget_p95_ms": budget,
                                **({"alerts": alerts} if alerts else {})},
                       host=HOST, port=port, pid=None, status="starting")
    pid = None
    try:
        pid = process.start_server(name, port, workers=workers, auth=not no_auth, host=HOST, alerts=alerts,
                                   webhook=webhook)
        store.set_columns(name, pid=pid)
        ready_s = _wait_ready(name, port, pid, workers)
        store.set_columns(name, status="running", meta={**meta, "ready_s": round(ready_s, 4)})
        latency = None
        if budget is not None:
            figures = _gate(name, mv, budget, port=port, token=token)
            if not figures.ok:
                raise _refuse(figures, mv, budget)
            latency = figures.to_dict()
    except BaseException as exc:
        if pid is not None:
            process.stop(pid, timeout=5)
        store.delete(name, audit_action="deploy.refused" if isinstance(exc, LatencyBudgetExceeded) else "deploy.failed",
                     model_uri=mv.uri, details={"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    return _deployment(name, "deployed", token=token, ready_s=ready_s, latency=latency)


def promote(name: str, version: str | None = None) -> Deployment:
    """Send 100 % to the canary (or shadow / split) version, keep the old stable for rollback, set @champion."""
    from ..registry import set_alias

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
    from ..registry import get_version, set_alias
    from ..serving.spec import Route

    t_call = time.time()
    spec, cols, meta, _ = _ensure_running(name)
    stable = spec.stable
    if any(r.role != "stable" for r in spec.routes):
        routes, target, new_meta = [dataclasses.replace(stable, weight=100)], stable, meta
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
        routes, new_meta = [target], {**meta, "previous": None,
                                      "rolled_back": {"from": stable.version, "to": target.version, "uri": stable.uri}}
        what = f"v{stable.version} → v{target.version}"
    _, took, warnings = _change(name, spec, routes, action="rollback", model_uri=target.uri,
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


def undeploy(name: str, *, timeout: float = 10.0) -> StatusTable:
    """Drain and stop: SIGTERM (stop accepting, finish in-flight requests), SIGKILL after ``timeout``."""
    spec, cols, meta = _find(name)
    if cols["status"] == "stopped":  # already undeployed: nothing to stop, nothing to audit
        return status(name)
    pid = cols["pid"]
    t0 = time.perf_counter()
    store.set_columns(name, status="draining")
    result = process.stop(pid, timeout=timeout) if process.is_server_of(pid, name) else "not running"
    store.set_columns(name, pid=None, status="stopped", audit_action="undeploy", model_uri=spec.stable.uri,
                      details={"result": result, "stop_s": round(time.perf_counter() - t0, 3), "pid": pid})
    return status(name)


def _live_row(name: str) -> DeploymentStatus:
    spec, cols, meta = _find(name)
    pid, want = cols["pid"], int(meta.get("workers", 1))
    routes = _route_dicts(spec)
    base = dict(name=name, url=_url(cols), pid=pid, routes=routes, generation=spec.generation)
    if cols["status"] == "stopped":
        return DeploymentStatus(state="stopped", workers=f"0/{want}", alerts=_alerts_view(meta, running=False),
                                **{**base, "pid": None})
    if not process.is_server_of(pid, name):
        return DeploymentStatus(state="dead", workers=f"0/{want}", alerts=_alerts_view(meta, running=False),
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
                            alerts=_alerts_view(meta), **base)


def status(name: str | None = None) -> StatusTable:
    """Every recorded deployment (or ``name``) with live health: a process that died shows as dead."""
    names = [_check_name(name)] if name else store.names()
    return StatusTable([_live_row(n) for n in names])


def restore(name: str | None = None) -> StatusTable:
    """Restart every recorded deployment (or ``name``) whose server is not running, with its recorded split.

    Stopped (undeployed) deployments stay stopped. The restarted server reuses the recorded port when it
    is free, the recorded spec (routes, weights, token hash), worker count and alert rules; it posts
    alerts to ``$NBPROD_ALERT_WEBHOOK`` of this process — without it, the rules are still checked and
    firings recorded, not posted (``nbprod status`` shows "no webhook").
    """
    return _restore(name)


def _restore(name: str | None, *, alerts: Any = _KEEP, webhook: str | None = None) -> StatusTable:
    """``alerts`` / ``webhook``: a deploy call's new alert settings for the one deployment ``name``."""
    names = [_check_name(name)] if name else store.names()
    started = []
    for n in names:
        spec, cols, meta = _find(n)
        if cols["status"] == "stopped" or process.is_server_of(cols["pid"], n):
            continue
        port = cols["port"] if cols["port"] and process.port_free(cols["port"], HOST) else process.free_port(HOST)
        settings = meta.get("alerts") if alerts is _KEEP else alerts
        hook = _webhook(webhook, strict=False) if settings else None
        pid = process.start_server(n, port, workers=int(meta.get("workers", 1)), auth=bool(meta.get("auth", True)),
                                   alerts=settings, webhook=hook)
        store.set_columns(n, host=HOST, port=port, pid=pid, status="starting",
                          meta={**meta, "alerts": settings, "alerts_server": _served_alerts(settings, hook)})
        started.append((n, spec, port, pid, cols["pid"]))
    errors = []
    for n, spec, port, pid, old in started:
        try:
            ready_s = _wait_ready(n, port, pid, int(_find(n)[2].get("workers", 1)))
        except DeploymentError as exc:
            store.set_columns(n, status="dead", audit_action="deploy.restore_failed", model_uri=spec.stable.uri,
                              details={"error": exc.problem[:500]})
            errors.append(exc)
            continue
        store.set_columns(n, status="running", audit_action="deploy.restore", model_uri=spec.stable.uri,
                          details={"routes": _route_dicts(spec), "port": port, "pid": pid, "old_pid": old,
                                   "ready_s": round(ready_s, 3)})
    if errors and len(errors) == len(started) and name:
        raise errors[0]
    return status(name)
