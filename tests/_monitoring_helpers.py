"""Plain helpers shared by the monitoring tests: a real credit model, fast traffic through the writer's API,
hour boundaries and the alert-state rows. (The ``db_url`` fixture they use lives in conftest.py.)"""

from __future__ import annotations

_MODEL = {}


def model():
    """A real credit-risk pipeline (trained once per process on nbprod.datasets.credit)."""
    if "m" not in _MODEL:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        from nbprod.datasets import credit

        X, y = credit(3000, 0)
        num = [c for c in X.columns if X[c].dtype.kind in "if"]
        cat = [c for c in X.columns if c not in num]
        pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
        _MODEL["m"] = (make_pipeline(pre, LogisticRegression(max_iter=300)).fit(X, y), X)
    return _MODEL["m"]


def columns_of(frame) -> dict:
    """A frame as the server's coerced columns: numeric → numpy arrays, strings → lists."""
    def column(c):
        if frame[c].dtype.kind in "if":
            return frame[c].to_numpy()
        return frame[c].astype(object).where(frame[c].notna(), None).tolist()

    return {c: column(c) for c in frame.columns}


def traffic(deployment: str, *, start: float, hours: int, per_hour: int = 120, batch: int = 10, shift=None,
            shift_from: int | None = None, version: str = "1", versions: dict | None = None, latency_ms=None,
            errors_per_hour: int = 0, seed: int = 1, label_share: float = 1.0, send_labels: bool = True,
            drop_inputs: tuple = (), legacy: frozenset | set = frozenset()) -> dict:
    """Write ``hours`` of credit traffic to the log through the writer's API; label it; return ids/labels.
    ``drop_inputs``: input columns the logged requests lack (the model still sees them); ``legacy``: the
    hours written in the per-row form an older nbprod wrote (:func:`legacy_rows`), not as records."""
    from nbprod.datasets import credit
    from nbprod.monitoring.feedback import feedback
    from nbprod.monitoring.predlog import log_rows

    pipe, _ = model()
    records, ids, labels = [], [], []
    for h in range(hours):
        s = shift if shift_from is not None and h >= shift_from else None
        X, y = credit(per_hour, seed + h, shift=s)
        proba = pipe.predict_proba(X)
        v = (versions or {}).get(h, version)
        lat = latency_ms(h) if callable(latency_ms) else (latency_ms or 3.0)
        for i in range(0, per_hour, batch):
            rid = f"{deployment}-{seed}-{h}-{i}"
            sl = slice(i, i + batch)
            ood = [["country: unseen category 'PL'"] if c == "PL" else [] for c in X.country.iloc[sl]]
            records.append(("prediction", start + h * 3600 + i * 3600 / per_hour,
                            {"request_id": rid, "version": v, "role": "stable", "n": len(X.iloc[sl]),
                             "inputs": columns_of(X.iloc[sl].drop(columns=list(drop_inputs))),
                             "predictions": proba[sl], "ood": ood,
                             "latency_ms": float(lat)}))
            n_label = int(round(len(X.iloc[sl]) * label_share))
            ids += [f"{rid}-{j}" for j in range(n_label)]
            labels += [int(v) for v in y.iloc[sl][:n_label]]
        for e in range(errors_per_hour):
            records.append(("error", start + h * 3600 + 7 + e, {"version": v, "status": 400 if e % 2 else 503,
                                                                 "latency_ms": 1.0}))
    from nbprod.monitoring.predlog import write_rows

    old = [r for r in records if int((r[1] - start) // 3600) in legacy]
    log_rows(deployment, [r for r in records if int((r[1] - start) // 3600) not in legacy])
    write_rows([row for kind, ts, rec in old for row in legacy_rows(deployment, kind, ts, rec)])
    if send_labels and ids:
        feedback(ids, labels)
    return {"ids": ids, "labels": labels}


def legacy_rows(deployment: str, kind: str, ts: float, rec: dict) -> list[dict]:
    """The rows an older nbprod (before issue 13) wrote for one hook record: one per predicted row, each
    with its inputs as a JSON object and its prediction as a JSON value — written here with json.dumps,
    independently of the writer's own encoder."""
    import json

    from nbprod.monitoring.logrecords import _jsonable, _plain_list, _prediction_list, row_count

    def dumps(v):
        return json.dumps(_jsonable(v), separators=(",", ":"), allow_nan=False)

    version = rec.get("version")
    base = {"deployment": deployment, "ts": ts, "request_id": rec.get("request_id"),
            "version": None if version is None else str(version),
            "latency_ms": rec.get("latency_ms")}
    if kind == "error":
        return [{**base, "role": "error", "status": int(rec.get("status") or 500),
                 "n_rows": int(rec.get("count") or 1)}]
    n = row_count(rec)
    preds = _prediction_list(rec.get("predictions"), n)
    if kind == "shadow":
        return [{**base, "row_index": i, "role": "shadow", "n_rows": n, "prediction": dumps(preds[i])}
                for i in range(n)]
    cols = {k: _plain_list(v, n) for k, v in (rec.get("inputs") or {}).items()}
    ood = rec.get("ood")
    return [{**base, "row_index": i, "prediction_id": f"{rec['request_id']}-{i}", "role": rec.get("role") or "stable",
             "n_rows": n, "inputs": dumps({k: v[i] for k, v in cols.items()}), "prediction": dumps(preds[i]),
             "ood": dumps(list(ood[i])) if ood is not None and ood[i] else None} for i in range(n)]


def hour_start(hours_ago: int) -> float:
    import time

    now = time.time()
    return (now // 3600 - hours_ago) * 3600


def alert_rows(deployment: str) -> list:
    """The alert-state rows of ``deployment`` in the current state DB."""
    import sqlalchemy as sa

    from nbprod.monitoring.alerts import _ensure, alert_state

    with _ensure().connect() as conn:
        return list(conn.execute(sa.select(alert_state).where(alert_state.c.deployment == deployment)).all())


# A one-step pipeline for the retraining-from-an-alert tests: it declares every parameter an alert passes
# (the window's logged inputs as `data` too) and does no work of its own.
ALERT_PIPELINE = """\
name: retrain-on-alert
params:
  deployment: none
  alert_rule: none
  window_start: none
  window_end: none
  data: none
steps:
  look:
    verb: wait
    deployment: ${params.deployment}
    seconds: 0
"""
