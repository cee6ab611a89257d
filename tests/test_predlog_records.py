"""The prediction log stores one record per request (issue 13), and every reader sees the rows it saw when
the log was written one row per predicted row — also in a database an older nbprod wrote in that form,
alone or mixed with records. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import sqlalchemy as sa
from _monitoring_helpers import hour_start, legacy_rows, model, traffic

from nbprod.monitoring import logread
from nbprod.monitoring.feedback import feedback
from nbprod.monitoring.predlog import (
    PredictionLog,
    ensure_tables,
    feedback_table,
    log_rows,
    prediction_records,
    predictions,
    write_rows,
)

_COLS = ("request_id", "row_index", "prediction_id", "version", "role", "status", "latency_ms", "n_rows", "inputs",
         "prediction", "ood")


def _record(rid: str, n: int = 3, version: str = "1") -> dict:
    return {"request_id": rid, "version": version, "role": "stable", "n": n,
            "inputs": {"age": np.array([30.0, np.nan, 50.0][:n]), "city": ["paris", None, "nice"][:n],
                       "odd": [{"a": 1}, (1, 2), None][:n]},
            "predictions": np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]][:n]), "ood": [[], ["age: missing"], []][:n],
            "latency_ms": 4.5}


def _hooks(now: float) -> list:
    return [("prediction", now - 50, _record("a")),
            ("shadow", now - 50, {"request_id": "a", "version": "2",
                                  "predictions": [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]}),
            ("error", now - 40, {"version": "1", "status": 503, "latency_ms": 9.0}),
            ("error", now - 39, {"version": None, "status": 401, "count": 250, "latency_ms": 0.5}),
            ("prediction", now - 30, {**_record("b", n=1), "role": "canary", "version": "2"}),
            ("prediction", now - 20, {**_record("c", n=2), "predictions": ["yes", None], "ood": None})]


def _clear() -> None:
    with ensure_tables().begin() as conn:
        for t in (feedback_table, predictions, prediction_records):
            conn.execute(sa.delete(t))


def test_a_request_is_one_record_and_reads_back_as_the_rows_the_per_row_log_held(db_url):
    now = time.time()
    hooks = _hooks(now)
    assert log_rows("credit", hooks) == 3 + 3 + 1 + 1 + 1 + 2  # rows, as the batch scorer counts them
    with ensure_tables().connect() as conn:
        stored = conn.execute(sa.select(prediction_records).order_by(prediction_records.c.id)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar() == 0
    assert len(stored) == len(hooks)  # one record per request, whatever its rows
    first = stored[0]
    assert json.loads(first.inputs) == {"age": [30.0, None, 50.0], "city": ["paris", None, "nice"],
                                        "odd": [{"a": 1}, [1, 2], None]}
    assert json.loads(first.predictions) == [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    assert json.loads(first.ood) == {"1": ["age: missing"]} and stored[5].ood is None  # sparse: flagged rows only
    got = [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    _clear()
    write_rows([row for kind, ts, rec in hooks for row in legacy_rows("credit", kind, ts, rec)])
    want = [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    assert got == want  # byte for byte the JSON texts an older nbprod wrote, row by row


def test_numeric_columns_of_larger_requests_are_packed_and_read_back_as_the_json_values(db_url):
    """Requests of 8+ rows store numeric numpy columns as their bytes (no float → text per value); the rows
    read back are the rows the per-row log held: NaN → null, ints stay ints, bools bools, float32 widened."""
    n = 12
    rng = np.random.default_rng(3)
    income = rng.normal(size=n) * 1e4
    income[[2, 7]] = np.nan
    proba = rng.uniform(size=(n, 2))
    proba[5, 1] = np.nan
    base = {"version": "1", "role": "stable", "n": n, "latency_ms": 2.0,
            "inputs": {"income": income, "age": np.arange(n, dtype=np.int32), "ok": np.arange(n) % 2 == 0,
                       "f32": rng.normal(size=n).astype(np.float32), "city": ["x", None] * (n // 2),
                       "big": np.array([1e300, -0.0] * (n // 2))},
            "ood": [["income: missing"] if np.isnan(v) else [] for v in income]}
    hooks = [("prediction", 1.0, {**base, "request_id": "p2", "predictions": proba}),
             ("prediction", 2.0, {**base, "request_id": "p1", "predictions": proba[:, 1].copy()}),
             ("prediction", 3.0, {**base, "request_id": "p0", "predictions": (proba[:, 1] > 0.5).astype(np.int64)})]
    log_rows("credit", hooks)
    with ensure_tables().connect() as conn:
        stored = conn.execute(sa.select(prediction_records).order_by(prediction_records.c.id)).all()
    assert all(r.inputs.startswith(f"[{n},{{") and '"b64"' in r.predictions for r in stored)  # packed, one buffer
    specs = json.loads(stored[0].inputs)[1]
    assert specs["city"]["dtype"] == "|u1" and sorted(specs["city"]["values"], key=str) == [None, "x"]  # codes
    assert specs["age"] == {"dtype": "|u1"} and specs["big"] == {"dtype": "<f8"} and specs["ok"] == {"dtype": "|b1"}
    got = [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    frame = logread.load("credit").frame
    _clear()
    write_rows([row for kind, ts, rec in hooks for row in legacy_rows("credit", kind, ts, rec)])
    assert got == [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    assert frame.prediction.tolist() == logread.load("credit").frame.prediction.tolist()
    # ±inf is never packed: such a request still fails alone, as it did (JSON has no infinity)
    bad = {**base, "request_id": "inf", "predictions": proba, "inputs": {"income": np.array([np.inf] * n)}}
    with pytest.raises(ValueError):
        log_rows("credit", [("prediction", 4.0, bad)])


def test_old_per_row_rows_and_new_records_are_read_joined_and_pruned_together(db_url):
    """A database an older nbprod wrote (rows in ``predictions``) keeps working beside the records."""
    now = time.time()
    old = [("prediction", now - 100, _record("old1", n=2)), ("error", now - 95, {"status": 500, "version": "1"}),
           ("prediction", now - 90, _record("old2", n=1))]
    write_rows([row for kind, ts, rec in old for row in legacy_rows("credit", kind, ts, rec)])
    log_rows("credit", [("prediction", now - 97, _record("new1", n=2)),  # between the old rows in time
                        ("prediction", now - 80, _record("new2", n=3))])
    log = logread.load("credit", since=now - 1000, ids=True)
    frame = log.frame
    assert list(frame.prediction_id.fillna("-")) == ["old1-0", "old1-1", "new1-0", "new1-1", "-", "old2-0",
                                                     "new2-0", "new2-1", "new2-2"]
    assert frame.ts.is_monotonic_increasing and list(frame.role).count("error") == 1
    assert list(log.inputs.age.fillna(-1)) == [30.0, -1, 30.0, -1, 30.0, 30.0, -1, 50.0]  # answered rows, in order
    assert list(log.inputs.city.fillna("-"))[:3] == ["paris", "-", "paris"]
    # feedback joins both forms by prediction id and reports unknown ids (a row past a request's end too)
    result = feedback(["old1-1", "new1-0", "new2-2", "new2-3", "new2-02", "old9-0", "new1"], [1, 0, 1, 1, 1, 1, 0])
    assert result.stored == ["old1-1", "new1-0", "new2-2"]
    assert result.unknown == ["new2-3", "new2-02", "old9-0", "new1"]
    labels = dict(zip(logread.load("credit", ids=True).frame.prediction_id, logread.load("credit").frame.label,
                      strict=True))
    assert (labels["old1-1"], labels["new1-0"], labels["new2-2"], labels["new2-0"]) == (1, 0, 1, None)
    assert feedback(["new1-0", "old1-1"], [0, 0]).unchanged == ["new1-0"]  # idempotent; old1-1 is updated
    # retention counts rows across both forms and deletes the old form first within a kind (row by row, as
    # it always did), records whole
    assert PredictionLog("credit", max_rows=7).prune(now) == 1 + 1  # the error row, then old1-0 (unlabelled)
    kept = [r.prediction_id for r in logread.rows("credit")]
    assert kept == ["old1-1", "old2-0", "new1-0", "new1-1", "new2-0", "new2-1", "new2-2"]
    assert PredictionLog("credit", max_rows=3).prune(now) == 1 + 1 + 2  # old2-0; then labelled: old1-1, new1
    assert [r.prediction_id for r in logread.rows("credit")] == ["new2-0", "new2-1", "new2-2"]
    with ensure_tables().connect() as conn:
        assert [r[0] for r in conn.execute(sa.select(feedback_table.c.prediction_id))] == ["new2-2"]  # no orphans
    assert PredictionLog("credit", max_age_s=10).prune(now) == 3  # by age: the record goes with its label
    with ensure_tables().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar() == 0


def test_a_feedback_table_of_an_older_nbprod_gains_its_request_key(nbprod_home):
    """An older nbprod's state DB (its feedback table has no request_key) is migrated in place, its labels kept."""
    import sqlite3

    from nbprod.monitoring import predlog

    nbprod_home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(nbprod_home / "nbprod.db") as db:  # the table as an older nbprod created it
        db.execute("CREATE TABLE feedback (prediction_id VARCHAR(80) PRIMARY KEY, label TEXT NOT NULL, "
                   "ts FLOAT NOT NULL, updated_at FLOAT NOT NULL)")
        db.execute("INSERT INTO feedback VALUES ('old-0', '1', 1.0, 1.0)")
    db.close()
    predlog._created.clear()
    now = time.time()
    write_rows(legacy_rows("credit", "prediction", now, _record("old", n=1)))
    log_rows("credit", [("prediction", now, _record("new", n=1))])
    assert feedback(["new-0"], [0]).stored == ["new-0"]
    assert list(logread.load("credit").frame.label) == [1, 0]


def _report(training_profile) -> dict:
    from nbprod.monitoring.monitor import monitor

    start = hour_start(4)
    rep = monitor("credit", window="1h", since=start, until=start + 4 * 3600, reference=training_profile)
    return {"dict": rep.to_dict(), "drift": rep.drift_frame().to_dict("records"), "text": str(rep)}


def test_monitor_gives_identical_results_from_records_from_old_rows_and_from_both(db_url):
    """The same traffic written as records, in the per-row form, and half and half: one report."""
    from nbprod.data.profile import profile

    _, X = model()
    reference = profile(X)
    start = hour_start(4)
    runs = []
    for legacy in (frozenset(), frozenset(range(4)), frozenset({0, 2})):
        _clear()
        traffic("credit", start=start, hours=4, per_hour=200, batch=20, shift="income", shift_from=2,
                versions={3: "2"}, latency_ms=lambda h: 2.0 + h, errors_per_hour=3, label_share=0.5, legacy=legacy)
        runs.append(_report(reference))
    metrics = [w["metrics"] for w in runs[0]["dict"]["windows"]]
    assert [m["requests"]["value"] for m in metrics] == [13.0] * 4 and metrics[3]["accuracy"]["status"] == "ok"
    assert runs[0]["dict"]["windows"][3]["drifted_columns"]
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("legacy", [False, True])
def test_the_alert_pipelines_window_data_and_the_canary_figures_read_both_forms(nbprod_home, legacy):
    import pandas as pd

    from nbprod.pipelines.trigger import _window_data
    from nbprod.pipelines.verbs import _all_requests, canary_figures

    now = time.time()
    hooks = _hooks(now)
    for _, _, rec in hooks:
        rec.get("inputs", {}).pop("odd", None)  # parquet takes no mixed objects (the pipeline reads columns)
    if legacy:
        write_rows([row for kind, ts, rec in hooks for row in legacy_rows("credit", kind, ts, rec)])
    else:
        log_rows("credit", hooks)
    feedback(["b-0"], [1])
    data = pd.read_parquet(_window_data("credit", now - 60, now - 20))  # the end is included
    assert list(data.city.fillna("-")) == ["paris", "-", "nice", "paris", "paris", "-"] and len(data.columns) == 2
    assert canary_figures("credit", "2", now - 60) == {"requests": 1, "error_rate": 0.0, "p95_ms": 4.5,
                                                       "accuracy": 0.0}
    assert _all_requests("credit", now - 60) == 6  # every request, the shadow answer and the errors too


def test_text_columns_are_stored_as_the_stdlib_json_encoder_writes_them_whatever_the_characters():
    """orjson writes a request's text columns where its bytes are the stdlib's (ASCII without DEL), the
    stdlib the rest: every character — controls, quotes, DEL, accents, CJK, emoji, a lone surrogate — is
    stored exactly as ``json.dumps`` (ensure_ascii) writes it, in one request and across a run of them."""
    from nbprod.monitoring.logrecords import RECORD_COLUMNS, records_of

    texts = [chr(c) + "x" for c in range(128)] + ["été", "日本", "😀", "\ud800", 'a"b\\c', "", None]
    stdlib = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    col = RECORD_COLUMNS.index("inputs")

    def stored(recs: list) -> list[str]:
        out = list(records_of("credit", [("prediction", 1.0, r) for r in recs]))
        assert not any(isinstance(r, Exception) for r in out), out
        return [r[col] for r in out]

    whole = {"request_id": "w", "n": len(texts), "inputs": {"city": texts}, "predictions": np.zeros(len(texts))}
    assert stored([whole]) == [f'[{len(texts)},{{"city":' + stdlib.encode(texts) + '},""]']  # all distinct: a list
    ones = [{"request_id": f"o{i}", "n": 1, "inputs": {"city": [t]}, "predictions": np.zeros(1)}
            for i, t in enumerate(texts)]  # one-row requests: converted as one run
    assert stored(ones) == ['{"city":' + stdlib.encode([t]) + "}" for t in texts]
    chunks = [texts[i:i + 9] for i in range(0, len(texts), 9)]  # 9-row requests, each alone
    assert stored([{"request_id": f"c{i}", "n": len(c), "inputs": {"city": c}, "predictions": np.zeros(len(c))}
                   for i, c in enumerate(chunks)]) == [f'[{len(c)},{{"city":' + stdlib.encode(c) + '},""]' for c in chunks]


def test_class_probabilities_of_small_requests_store_nan_and_inf_as_null_alone_and_in_a_run():
    from nbprod.monitoring.logrecords import RECORD_COLUMNS, records_of

    col = RECORD_COLUMNS.index("predictions")
    probas = [[0.25, np.nan], [np.inf, 1.0], [0.5, 0.5]]
    recs = [{"request_id": f"p{i}", "n": 1, "inputs": {"age": np.array([1.0])}, "predictions": np.array([p])}
            for i, p in enumerate(probas)]
    want = ["[[0.25,null]]", "[[null,1.0]]", "[[0.5,0.5]]"]
    assert [r[col] for r in records_of("credit", [("prediction", 1.0, r) for r in recs])] == want  # one run
    assert [next(records_of("credit", [("prediction", 1.0, r)]))[col] for r in recs] == want  # each alone
    ints = {"request_id": "i", "n": 2, "inputs": {"age": np.array([1.0, 2.0])},
            "predictions": np.array([[1, 0], [0, 1]])}
    assert next(records_of("credit", [("prediction", 1.0, ints)]))[col] == "[[1,0],[0,1]]"
