"""``nbprod.monitor("credit")``: drift, realised performance and health over time windows of the log.

Per window (``window="1h"``, aligned to the epoch; the default period is the last 24 windows):

- **health**: requests, request rate, error rate (4xx+5xx) and server error rate (5xx) — failed
  requests are rows of the prediction log —, latency p50/p95/p99 over every request, OOD rate;
- **input drift**: :func:`nbprod.drift` of the window's inputs against the *serving version's
  registered training profile* (the version answering most rows of the window), or ``reference=``;
- **prediction drift**: the drift engine on the prediction (positive-class score when the model
  returns probabilities, else the predicted value) against the serving version's *training
  outputs* (``nbprod/outputs.json``: what the model answered on its training sample at
  registration, :mod:`nbprod.registry.outputs`), so a shift already present when the period starts is seen. A
  version registered without them (a copied MLflow directory) falls back to the *first window of
  the period with enough rows*, which reports "reference window". ``prediction_reference=`` (a
  frame with a ``prediction`` column) overrides both;
- **label drift** likewise on the labels that arrived, against the training labels;
- **realised performance** on rows whose ground truth has arrived (:mod:`.feedback`):
  accuracy, precision, recall, F1, ROC AUC — or MAE/RMSE for regression.

A window with fewer than ``min_rows`` rows (``min_requests`` requests for health) reports
``"not enough data"`` for that metric, never a number. The deployment's version changes in the
period (deploy/promote/rollback from the audit log, and versions first seen in the log) are part
of the report, for marking on charts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from .. import state
from ..data.profile import Profile
from ..driftstats import drift
from ..driftstats.api import series_kind
from ..driftstats.report import ColumnDrift
from ..errors import DeploymentError, DriftError, NbprodError
from ..registry.outputs import OUTPUTS_FILE
from .logread import load
from .performance import infer_task, normalise, performance
from .predlog import ensure_tables
from .predlog import prediction_records as pr
from .predlog import predictions as p
from .report import MonitorReport
from .windows import parse_duration, parse_time, window_edges

__all__ = ["monitor", "known", "resolve_name", "HEALTH", "NOT_ENOUGH"]

NOT_ENOUGH = "not enough data"
HEALTH = ("requests", "rows", "request_rate", "errors", "error_rate", "server_error_rate", "ood_rate",
          "p50_ms", "p95_ms", "p99_ms")
_VERSION_ACTIONS = {"deploy", "promote", "rollback", "promote.reverted", "undeploy"}


def resolve_name(deployment_or_model: str) -> str:
    """``credit``, ``credit@champion``, ``models:/credit/3`` → the name the log is kept under."""
    if not isinstance(deployment_or_model, str) or not deployment_or_model.strip():
        raise DeploymentError(f"{deployment_or_model!r} is not a deployment name",
                              "pass the deployment name, e.g. monitor('credit')")
    text = deployment_or_model.strip()
    if text.startswith("models:/"):
        text = text[len("models:/"):]
    return text.split("@")[0].split("/")[0]


# --- reading the log ------------------------------------------------------------------------------


def _load(name: str, lo: float, hi: float):
    """The period's non-shadow rows (with their labels, parsed) and the answered rows' inputs, oldest first."""
    log = load(name, since=lo, until=hi)
    return log.frame, log.inputs


def known(name: str) -> bool:
    """Is ``name`` something to monitor: a deployment, or a name with logged predictions?"""
    eng = ensure_tables()
    with eng.connect() as conn:
        for t in (p, pr):
            if conn.execute(select(t.c.id).where(t.c.deployment == name).limit(1)).first() is not None:
                return True
    try:
        from ..serving.spec import load_spec

        load_spec(name)
        return True
    except NbprodError:
        return False


def _logged_names() -> list[str]:
    with ensure_tables().connect() as conn:
        names = [row[0] for t in (pr, p) for row in conn.execute(select(t.c.deployment).distinct().limit(20))]
    return list(dict.fromkeys(names))[:20]


# --- version changes and references -----------------------------------------------------------


def _audit_changes(name: str, lo: float, hi: float) -> tuple[list[dict], dict[str, str]]:
    """Deploy/promote/rollback rows of this deployment in the period, and every version → URI seen."""


    t = state.audit_log
    changes, uris = [], {}
    try:
        with state.engine().connect() as conn:
            rows = conn.execute(select(t.c.timestamp, t.c.action, t.c.model_uri, t.c.details)
                                .where(t.c.action.in_(sorted(_VERSION_ACTIONS))).order_by(t.c.seq)).all()
    except Exception:  # noqa: BLE001 - no audit table yet: no changes to show
        return [], {}
    for ts_text, action, _model_uri, details_text in rows:
        try:
            details = json.loads(details_text)
        except ValueError:
            continue
        if details.get("deployment") != name:
            continue
        routes = details.get("routes") or []
        for r in routes:
            if r.get("version") and r.get("uri"):
                uris[str(r["version"])] = r["uri"]
        ts = datetime.fromisoformat(ts_text.replace("Z", "+00:00")).timestamp()
        if lo <= ts < hi:
            stable = next((str(r.get("version")) for r in routes if r.get("role") == "stable"), None)
            others = ", ".join(f"{r.get('role')} v{r.get('version')}"
                               + ("" if r.get("role") == "shadow" else f" {r.get('weight', 0):g}%")
                               for r in routes if r.get("role") != "stable")
            version = details.get("to") or stable
            label, detail = _label(action, version), others
            if action == "deploy" and others:  # a canary, shadow or split: what changed is the new route, not v1
                label, detail = others, ""
            changes.append({"ts": ts, "action": action, "version": version, "label": label, "detail": detail,
                            "source": "audit"})
    return changes, uris


def _first_seen(frame, lo: float) -> list[dict]:
    out: list[dict] = []
    if frame.empty:
        return out
    answered = frame[frame.role != "error"]
    firsts = sorted(answered.groupby("version", sort=False)["ts"].min().items(), key=lambda kv: kv[1])
    for version, ts in firsts[1:]:  # the first version seen is where the period starts, not a change
        if ts > lo:
            out.append({"ts": float(ts), "action": "first seen", "version": str(version),
                        "label": _label("first seen", version), "detail": "", "source": "log"})
    return out


def _label(action: str, version: Any) -> str:
    """How a version change is named on charts and in reports: ``promote v2``; ``undeploy`` alone."""
    return f"{action} v{version}" if version not in (None, "") else action


def _profile_for(name: str, version: str, uris: dict[str, str], cache: dict,
                 filename: str = "profile.json") -> tuple[Any, str]:
    """A profile registered with ``version`` — the training inputs (``profile.json``) or the
    training predictions and labels (``outputs.json``) — and a label, or (None, why not)."""
    key = (version, filename)
    if key in cache:
        return cache[key]


    candidates: list[str] = []
    try:
        from ..serving.spec import load_spec

        for r in load_spec(name).routes:
            if r.version == version:
                candidates += [p for p in (r.path, r.uri) if p]
    except NbprodError:
        pass
    if version in uris:
        candidates.append(uris[version])
    if version and version.isdigit():
        candidates.append(f"models:/{name}/{version}")
    what = "training profile" if filename == "profile.json" else "training outputs"
    found: tuple[Any, str] = (None, f"no registered {what} found for version {version}")
    for c in dict.fromkeys(candidates):
        try:
            path = Path(c) / "nbprod" / filename
            if not Path(c).exists():
                from ..registry.versions import get_version, local_model_dir

                path = local_model_dir(get_version(c)) / "nbprod" / filename
            if path.is_file():
                found = (Profile.from_json(path.read_text(encoding="utf-8")), f"{what} of v{version}")
                break
        except Exception:  # noqa: BLE001 - try the next place; the report says if none worked
            continue
    cache[key] = found
    return found


# --- the windows --------------------------------------------------------------------------------


def _pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def _health(win, window_s: float, min_requests: int) -> dict:
    errors = win[win.role == "error"]
    weight = errors.n_rows.fillna(1).clip(lower=1)  # an error row stands for n_rows refused requests (predlog)
    answered = win[(win.role != "error") & (win.row_index == 0)]
    n_err = float(weight.sum())
    n_req = n_err + len(answered)
    rows = int((win.role != "error").sum())
    m: dict[str, tuple[float | None, str]] = {"requests": (float(n_req), "ok"), "rows": (float(rows), "ok"),
                                              "errors": (n_err, "ok"),
                                              "request_rate": (n_req / window_s, "ok")}
    if n_req < min_requests:
        for k in ("error_rate", "server_error_rate", "p50_ms", "p95_ms", "p99_ms"):
            m[k] = (None, NOT_ENOUGH)
    else:
        m["error_rate"] = (n_err / n_req, "ok")
        m["server_error_rate"] = (float(weight[errors.status >= 500].sum()) / n_req, "ok")
        lat = [v for v in list(answered.latency_ms) + list(errors.latency_ms) if v is not None and v == v]
        for k, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            m[k] = (_pct(lat, q), "ok") if len(lat) >= min_requests else (None, NOT_ENOUGH)
    if rows == 0:
        m["ood_rate"] = (None, NOT_ENOUGH)
    else:
        m["ood_rate"] = (float(win[win.role != "error"].ood.notna().sum()) / rows, "ok")
    return m


def _one_column_drift(reference: Any, column: str, cur_values: list,
                      min_rows: int = 30) -> tuple[float | None, bool | None, str, str | None]:
    """(score, drifted, status, test) of one value column: ``reference`` is a profile holding
    ``column`` (the training outputs) or the reference values themselves."""

    current = pd.DataFrame({column: _series(cur_values)})
    try:
        if isinstance(reference, list):
            rep = drift(pd.DataFrame({column: _series(reference)}), current, min_rows=min_rows)
        else:
            rep = drift(reference, current, columns=[column], min_rows=min_rows)
    except DriftError as exc:
        return None, None, f"error: {exc.problem}", None
    c = rep.columns[0]
    if c.status != "ok":
        return None, None, c.status if c.reason is None else f"{c.status}: {c.reason}", c.test
    return c.score, c.drifted, "ok", c.test


def _output_drift(metrics: dict, key: str, values: list, fixed: list | None, outputs: Any, column: str,
                  first: list, min_rows: int) -> None:
    """Prediction or label drift of one window, into ``metrics[key + "_score"]`` and ``metrics[key]``.

    The reference, first that exists: the values the caller passed (``fixed``), the serving
    version's training outputs, the first window of the period with enough rows (``first``, filled
    here; that window itself reports "reference window")."""
    if len(values) < min_rows:
        metrics[key + "_score"] = metrics[key] = (None, NOT_ENOUGH)
        return
    reference: Any = fixed
    if reference is None and outputs is not None and column in outputs.columns:
        reference = outputs
    if reference is None:
        if not first:
            first.extend(values)
            metrics[key + "_score"] = metrics[key] = (None, "reference window")
            return
        reference = first
    score, drifted, status, _ = _one_column_drift(reference, column, values, min_rows)
    metrics[key + "_score"] = (score, status)
    metrics[key] = (None if drifted is None else float(drifted), status)


def _not_logged(rep, ref: Any, missing: list[str], seen: dict) -> None:
    """Reference columns absent from the logged inputs: explicit rows of ``rep``, never a silent skip."""
    for name in missing:
        seen[name] = None
        if hasattr(ref, "iloc"):
            kind = series_kind(ref[next(c for c in ref.columns if str(c) == name)])
        else:
            kind = getattr(ref.columns[name], "kind", "categorical")
        rep.columns.append(ColumnDrift(name, "feature", "categorical" if kind == "boolean" else kind, None, None, None,
                                       None, None, None, False, status="not tested",
                                       reason="not in the logged inputs (the requests did not send this column)"))


def _series(values: list):
    s = pd.Series(values)
    if s.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        return s.astype(float)
    return s.astype(str)


def monitor(deployment_or_model: str, *, window: Any = "1h", since: Any = None, until: Any = None,
            reference: Any = None, prediction_reference: Any = None, task: str | None = None,
            min_rows: int = 30, min_requests: int = 5, drift_share: float = 0.5, include_gate: bool = False):
    """Monitor a deployment over time windows of its prediction log → :class:`MonitorReport`.

    The latency gate's test requests (role ``gate`` in the log) are not production traffic: they
    are left out of every figure unless ``include_gate=True``; the report says how many were."""

    name = resolve_name(deployment_or_model)
    window_s = parse_duration(window)
    now = time.time()
    until_ts = parse_time(until, now=now) or now
    since_ts = parse_time(since, now=now)
    if since_ts is None:
        since_ts = until_ts - 24 * window_s
    edges = window_edges(since_ts, until_ts, window_s)
    if task not in (None, "classification", "regression"):
        raise DriftError(f"task {task!r} is not 'classification' or 'regression'",
                         "pass task=None to infer it from the labels")
    if not known(name):
        logged = _logged_names()
        raise DeploymentError(f"no deployment and no logged predictions called {name!r}",
                              f"pass a deployment name ({', '.join(logged) or 'none has logged predictions yet'}); "
                              "check NBPROD_HOME / NBPROD_DB_URL")
    lo, hi = edges[0][0], until_ts
    frame, inputs = _load(name, lo, hi)
    notes: list[str] = []
    gate = frame.role == "gate"
    if gate.any() and not include_gate:
        n_gate = int((gate & (frame.row_index == 0)).sum())
        notes.append(f"{n_gate:,} latency-gate test request(s) left out: not production traffic "
                     "(include_gate=True, --include-gate, counts them)")
        inputs = inputs[~gate[frame.role != "error"].to_numpy()].reset_index(drop=True)  # its rows: the answered
        frame = frame[~gate].reset_index(drop=True)

    answered = frame[frame.role != "error"].reset_index(drop=True)
    if not len(answered):
        inputs = pd.DataFrame()
    preds_raw = list(answered.prediction)
    labels_raw = list(answered.label)
    labelled = [v for v in labels_raw if v is not None]
    if task is None:
        task = infer_task(labelled) if labelled else (
            "classification" if preds_raw and isinstance(preds_raw[0], list)
            else infer_task([p for p in preds_raw[:200] if not isinstance(p, (list, dict))]))
    norm = [normalise(p, task) for p in preds_raw]
    pred_value = [s if s is not None else v for v, s in norm]  # = outputs.prediction_value

    # references ---------------------------------------------------------------------------------
    changes, uris = _audit_changes(name, lo, hi)
    changes = sorted(changes + [c for c in _first_seen(frame, lo) if c["source"] == "log"], key=lambda c: c["ts"])
    cache: dict = {}
    explicit_label = None
    if reference is not None:
        explicit_label = ("frame" if hasattr(reference, "iloc")
                          else (reference if isinstance(reference, str) else "profile"))

    ts_answered = answered.ts.to_numpy(dtype=float) if len(answered) else []
    windows, reports = [], []
    pred_ref = None
    if prediction_reference is not None:
        pred_ref = list(prediction_reference["prediction"])
    first_preds: list = []
    first_labels: list = []
    missing_inputs: dict[str, None] = {}  # reference columns the logged inputs lack (ordered set)
    for start, end in edges:
        win = frame[(frame.ts >= start) & (frame.ts < end)]
        idx = list(range(*np.searchsorted(ts_answered, [start, end], side="left"))) if len(answered) else []
        metrics = _health(win, window_s, min_requests)
        versions = dict(Counter(str(v) for v in answered.version.iloc[idx])) if idx else {}
        major = max(versions, key=lambda v: versions[v]) if versions else None
        rep = None
        # input drift
        if len(idx) < min_rows:
            drift_status = NOT_ENOUGH
        else:
            if reference is not None:
                ref, ref_label = reference, explicit_label
            else:
                ref, ref_label = _profile_for(name, major or "", uris, cache)
            if ref is None:
                drift_status = f"no reference: {ref_label}"
            else:
                cur = inputs.iloc[idx]
                try:
                    ref_cols = [str(c) for c in getattr(ref, "columns", [])]
                    cols = [c for c in ref_cols if c in cur.columns] or None
                    rep = drift(ref, cur, columns=cols, drift_share=drift_share, min_rows=min_rows)
                    drift_status = "ok"
                    if cols is not None:
                        _not_logged(rep, ref, [c for c in ref_cols if c not in cur.columns], missing_inputs)
                except NbprodError as exc:
                    drift_status = f"error: {exc.problem}"
        if rep is not None:
            metrics["drift_share"] = (rep.share_drifted, "ok") if rep.judged else (None, NOT_ENOUGH)
            metrics["n_drifted"] = (float(len(rep.drifted_columns)), "ok")
            metrics["dataset_drift"] = (float(rep.dataset_drift), "ok")
        else:
            for k in ("drift_share", "n_drifted", "dataset_drift"):
                metrics[k] = (None, drift_status)
        # prediction drift and label drift
        outputs = _profile_for(name, major, uris, cache, OUTPUTS_FILE)[0] if major is not None else None
        cur_pred = [pred_value[i] for i in idx if pred_value[i] is not None]
        _output_drift(metrics, "prediction_drift", cur_pred, pred_ref, outputs, "prediction", first_preds, min_rows)
        lab_idx = [i for i in idx if labels_raw[i] is not None]
        metrics["feedback_rows"] = (float(len(lab_idx)), "ok")
        metrics["feedback_rate"] = (len(lab_idx) / len(idx), "ok") if idx else (None, NOT_ENOUGH)
        cur_labels = [labels_raw[i] for i in lab_idx]
        _output_drift(metrics, "label_drift", cur_labels, None, outputs, "label", first_labels, min_rows)
        names = ("accuracy", "precision", "recall", "f1", "roc_auc") if task == "classification" else ("mae", "rmse")
        if len(lab_idx) < min_rows:
            for k in names:
                metrics[k] = (None, NOT_ENOUGH if lab_idx or not idx else "no feedback yet")
        else:
            perf = performance(cur_labels, [norm[i][0] for i in lab_idx], [norm[i][1] for i in lab_idx], task)
            metrics.update(perf)
        windows.append({"start": start, "end": end, "partial": end > until_ts, "versions": versions,
                        "metrics": metrics})
        reports.append(rep)
    inputs_found = [v[0] for k, v in cache.items() if k[1] == "profile.json"]
    if reference is None and inputs_found and all(v is None for v in inputs_found):
        notes.append("input drift not computed: no registered training profile for the served version(s); "
                     "pass reference= (a profile, a model URI or a frame)")
    if missing_inputs:
        notes.append(f"input column(s) {', '.join(missing_inputs)} of the drift reference are not in the logged "
                     "inputs: not tested for drift (the requests did not send them)")
    if frame.empty:
        notes.append("no predictions logged in this period")
    lat = [v for v in frame.latency_ms if v is not None and v == v]
    return MonitorReport(deployment=name, window_s=window_s, since=lo, until=until_ts, task=task, windows=windows,
                         drift_reports=reports, version_changes=changes, notes=notes, latency_ms=_latency_hist(lat),
                         reference=explicit_label or "training profile of the serving version",
                         min_rows=min_rows, drift_share_threshold=drift_share)


def _latency_hist(values: list) -> dict:
    """Latency histogram of the period on log-spaced bins (counts only, never the raw values)."""
    if not values:
        return {"edges": [], "counts": []}
    arr = np.asarray(values, dtype=float)
    lo, hi = max(arr.min(), 0.01), max(arr.max(), 0.02)
    edges = np.geomspace(lo, hi * 1.0001, 25)
    counts, _ = np.histogram(np.clip(arr, lo, None), bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
