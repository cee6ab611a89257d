"""Shared by the monitoring tests: a state DB per test (SQLite, or a PostgreSQL schema) and fast traffic.

PostgreSQL: ``NBPROD_TEST_PG_URL`` (CI), else the local server at the CI URL if one answers. Each
test gets a schema of its own (``search_path``), dropped afterwards, so tests never touch other
tables of a shared database. With ``CI=true`` a missing PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import require

CI_PG_URL = "postgresql+psycopg://nbprod:nbprod@127.0.0.1:5432/nbprod"


def _pg_server() -> str | None:
    url = os.environ.get("NBPROD_TEST_PG_URL") or CI_PG_URL
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        eng.dispose()
        return url
    except Exception:  # noqa: BLE001 - reported through require()
        return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, nbprod_home, monkeypatch):
    """The state DB of one test: SQLite in the test's home, or a fresh schema on PostgreSQL."""
    from nbprod import state
    from nbprod.config import settings

    if request.param == "sqlite":
        url = f"sqlite:///{nbprod_home / 'nbprod.db'}"
        monkeypatch.setenv("NBPROD_DB_URL", url)
        settings.reset()
        yield url
        state.dispose()
        return
    pytest.importorskip("psycopg", reason="psycopg (v3) not installed: pip install 'nbprod[postgres]'")
    server = _pg_server()
    require(server is not None, "no PostgreSQL: set NBPROD_TEST_PG_URL or run one at " + CI_PG_URL)
    import sqlalchemy as sa

    schema = f"nbprod_mon_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    monkeypatch.setenv("NBPROD_DB_URL", url)
    settings.reset()
    try:
        yield url
    finally:
        state.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


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
    return {c: frame[c].to_numpy() if frame[c].dtype.kind in "if" else frame[c].astype(object).where(frame[c].notna(), None).tolist()
            for c in frame.columns}


def traffic(deployment: str, *, start: float, hours: int, per_hour: int = 120, batch: int = 10, shift=None,
            shift_from: int | None = None, version: str = "1", versions: dict | None = None, latency_ms=None,
            errors_per_hour: int = 0, seed: int = 1, label_share: float = 1.0, send_labels: bool = True,
            drop_inputs: tuple = ()) -> dict:
    """Write ``hours`` of credit traffic to the log through the writer's API; label it; return ids/labels.
    ``drop_inputs``: input columns the logged requests lack (the model still sees them)."""
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
    log_rows(deployment, records)
    if send_labels and ids:
        feedback(ids, labels)
    return {"ids": ids, "labels": labels}


def hour_start(hours_ago: int) -> float:
    import time

    now = time.time()
    return (now // 3600 - hours_ago) * 3600
