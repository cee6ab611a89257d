"""The built-in steps: each calls nbprod's own verb and returns its outputs by name.

A gate that does not hold raises :class:`GateFailed` with the reason; the runner stops the
pipeline there. ``canary`` rolls its own canary back before raising, so a failed gate leaves
production as it was.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Callable

from ..errors import PipelineError

__all__ = ["GateFailed", "STEPS", "canary_figures", "undo_canary"]


class GateFailed(Exception):
    """A gate did not hold: ``reason`` says which figure and by how much."""

    def __init__(self, reason: str, outputs: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outputs = outputs or {}


def _frame(value: Any, what: str):
    from ..data.io import read_frame

    if value is None:
        raise PipelineError(f"{what}: no data given", "pass data: PATH (a .parquet/.csv/.json/.feather file)")
    if not isinstance(value, str):
        return value
    return read_frame(value)


def _split_label(frame, label: str):
    if label not in frame.columns:
        raise PipelineError(f"the data has no label column {label!r}",
                            f"pass label: NAME (its columns: {', '.join(map(str, frame.columns))})")
    return frame.drop(columns=[label]), frame[label]


def validate(args: dict, ctx: dict) -> dict:
    from ..registry.against import validate as run

    frame = _frame(args.get("data"), "validate")
    report = run(frame, args.get("against"), rules=args.get("rules"))
    out = {"ok": report.ok, "failures": len(report.failures)}
    if not report.ok:
        which = "; ".join(f"{f.column}: {f.check}" if f.column else f.check for f in report.failures[:3])
        raise GateFailed(f"validation failed ({len(report.failures)} failure(s): {which})", out)
    return out


def drift(args: dict, ctx: dict) -> dict:
    from ..driftstats.api import drift as run

    if args.get("reference") is None:
        raise PipelineError("drift: no reference given",
                            "pass reference: a data file or a model URI (credit-risk@champion)")
    rep = run(args["reference"], _frame(args.get("current"), "drift current"))
    out = {"drift_share": float(rep.share_drifted), "n_drifted": len(rep.drifted_columns),
           "dataset_drift": bool(rep.dataset_drift)}
    limit = args.get("max_share")
    if limit is not None and out["drift_share"] > float(limit):
        raise GateFailed(f"drift share {out['drift_share']:.2f} > max_share {float(limit):.2f}", out)
    return out


def evaluate(args: dict, ctx: dict) -> dict:
    from ..registry.evaluate import evaluate as run

    frame = _frame(args.get("data"), "evaluate")
    X, y = _split_label(frame, args.get("label", "label"))
    result = run(args["model"], X, y, against=args.get("against", "@champion"), thresholds=args.get("thresholds"))
    out = {"ok": result.ok, "candidate": result.candidate_uri, "champion": result.champion_uri,
           "metrics": {r.metric: r.candidate for r in result.rows if r.candidate is not None}}
    if not result.ok:
        why = ", ".join(f"{r.metric} {r.candidate:.4g} vs {r.champion if r.champion is None else round(r.champion, 4)}"
                        f" ({r.note or r.threshold})" for r in result.failures)
        raise GateFailed(f"evaluation failed ({why})", out)
    return out


def register(args: dict, ctx: dict) -> dict:
    from ..registry import get_version, set_alias

    mv = get_version(args["model"])
    alias = args.get("alias", "challenger")
    set_alias(mv.uri, alias)
    return {"model_uri": f"{mv.name}@{alias}", "version": str(mv.version)}


def _post(url: str, token: str | None, body: dict) -> int:
    req = urllib.request.Request(url + "/invocations", json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - 127.0.0.1 deployment
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def deploy(args: dict, ctx: dict) -> dict:
    """Deploy to a staging name, send smoke requests (rows of ``data``): all must answer 200."""
    from ..deployments.api import deploy as run
    from ..deployments.api import undeploy

    name = args["deployment"]
    dep = run(args["model"], name=name)
    try:
        n = int(args.get("smoke_rows", 5))
        if n and args.get("data") is not None:
            frame = _frame(args["data"], "deploy smoke test").head(n)
            body = {"dataframe_split": {"columns": list(map(str, frame.columns)),
                                        "data": json.loads(frame.to_json(orient="values"))}}
            code = _post(dep.url, dep.token, body)
            if code != 200:
                raise GateFailed(f"staging smoke test: {name} answered HTTP {code} to {n} rows")
    finally:
        if not args.get("keep", False):
            undeploy(name)
    return {"deployment": name, "url": dep.url, "model_uri": args["model"]}


def canary_figures(deployment: str, version: str, since: float) -> dict:
    """The canary's own live figures from the prediction log: requests, errors, p95, labelled accuracy."""
    from ..monitoring.logread import load

    frame = load(deployment, since=since, version=version, inputs=False).frame
    rows = list(zip(frame.role, frame.status, frame.latency_ms, frame.row_index, frame.prediction, frame.label,
                    strict=True))
    requests = [r for r in rows if r[3] == 0 or r[0] == "error"]
    errors = [r for r in requests if r[0] == "error" or (r[1] or 200) >= 400]
    lat = sorted(r[2] for r in requests if r[2] == r[2])  # NaN: no latency logged
    out: dict[str, Any] = {"requests": len(requests), "error_rate": len(errors) / len(requests) if requests else 0.0,
                           "p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None}
    labelled = [(r[4], r[5]) for r in rows if r[5] is not None and r[0] != "error"]
    if labelled:
        out["accuracy"] = sum(1 for a, b in labelled if _cls(a) == b) / len(labelled)
    return out


def _cls(pred: Any) -> Any:
    return pred.index(max(pred)) if isinstance(pred, list) else pred


def _canary_version(deployment: str) -> str | None:
    from ..deployments.store import read

    found = read(deployment)
    if not found:
        return None
    return next((r.version for r in found[0].routes if r.role == "canary"), None)


def undo_canary(deployment: str, version: str) -> bool:
    """Roll the canary ``version`` back if the deployment still has it (an interrupted run's leftover)."""
    from ..deployments.api import rollback

    if _canary_version(deployment) == str(version):
        rollback(deployment)
        return True
    return False


def _wait_for(deployment: str, version: str | None, since: float, hold: dict, ctx: dict) -> dict:
    seconds, requests = hold.get("seconds"), hold.get("requests")
    timeout = float(hold.get("timeout", 600))
    t0 = time.time()
    while True:
        seen = canary_figures(deployment, version, since)["requests"] if version else _all_requests(deployment, since)
        waited = time.time() - t0
        if requests is not None and seen >= int(requests):
            return {"requests": seen, "seconds": waited}
        if seconds is not None and waited >= float(seconds):
            return {"requests": seen, "seconds": waited}
        if waited > timeout:
            raise PipelineError(f"waited {timeout:g} s for {requests} requests on {deployment!r}, saw {seen}",
                                "send traffic to the deployment, or lower `requests:` / raise `timeout:`")
        ctx["tick"]()
        time.sleep(0.2)


def _all_requests(deployment: str, since: float) -> int:
    from ..monitoring.logread import count_requests

    return count_requests(deployment, since)


def wait(args: dict, ctx: dict) -> dict:
    return _wait_for(args["deployment"], None, time.time(), args, ctx)


def canary(args: dict, ctx: dict) -> dict:
    """Deploy ``model`` as a canary of ``percent`` %, hold it (``hold: {requests: N}`` or seconds), check
    ``gates`` on its own figures; a gate that fails rolls the canary back and stops the pipeline."""
    from ..deployments.api import deploy as run
    from ..deployments.store import read
    from ..registry import get_version

    name = args["deployment"]
    mv = get_version(args["model"])
    found = read(name)
    previous = found[0].stable.uri if found else None
    since = time.time()
    ctx["record"]({"canary": {"deployment": name, "version": str(mv.version)}})  # before traffic moves
    run(mv.uri, name=name, canary=float(args.get("percent", 5)))
    out: dict[str, Any] = {"deployment": name, "model_uri": mv.uri, "previous_uri": previous}
    try:
        _wait_for(name, str(mv.version), since, args.get("hold") or {"seconds": 0}, ctx)
        figures = canary_figures(name, str(mv.version), since)
        out["figures"] = figures
        for metric, limit in (args.get("gates") or {}).items():
            value = figures.get(metric)
            low = metric in ("accuracy", "roc_auc")
            if value is None:
                continue
            if (value < float(limit)) if low else (value > float(limit)):
                raise GateFailed(f"canary v{mv.version} {metric} = {value:.4g} "
                                 f"{'<' if low else '>'} {float(limit):g}; rolled back", out)
    except BaseException:
        undo_canary(name, str(mv.version))
        raise
    return out


def promote(args: dict, ctx: dict) -> dict:
    from ..deployments.api import promote as run
    from ..deployments.store import read

    name = args["deployment"]
    found = read(name)
    previous = found[0].stable.uri if found else None
    run(name)
    now = read(name)
    return {"deployment": name, "model_uri": now[0].stable.uri if now else None, "previous_uri": previous}


def decommission(args: dict, ctx: dict) -> dict:
    """Stop a (staging) deployment and/or move the old version to an alias (``@retired``)."""
    from ..deployments.api import undeploy
    from ..deployments.store import read
    from ..registry import set_alias

    retired = []
    dep = args.get("deployment")
    found = read(dep) if dep else None
    if dep and found is not None and found[1]["status"] != "stopped":
        undeploy(dep)
        retired.append(dep)
    if args.get("retire"):
        set_alias(args["retire"], args.get("alias", "retired"))
        retired.append(args["retire"])
    return {"retired": retired}


STEPS: dict[str, Callable[[dict, dict], dict]] = {
    "validate": validate, "drift": drift, "evaluate": evaluate, "register": register, "deploy": deploy,
    "canary": canary, "promote": promote, "decommission": decommission, "wait": wait,
}
