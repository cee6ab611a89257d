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
    for dtype in (np.float64, np.float32, ">f8"):
        bad = {**base, "request_id": "inf", "predictions": proba, "inputs": {"income": np.array([np.inf] * n, dtype)}}
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
    with sqlite3.connect(nbprod_home / "nbprod.db") as db:  # each prune's cut of old labels reads an index
        plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN DELETE FROM feedback WHERE updated_at < 5"))
    db.close()
    assert "USING INDEX ix_feedback_updated_at" in plan or "USING COVERING INDEX ix_feedback_updated_at" in plan, plan


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
                   for i, c in enumerate(chunks)]) == [f'[{len(c)},{{"city":{stdlib.encode(c)}}},""]' for c in chunks]


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


# --- the compact form (issue 13): narrow exact dtypes, dictionary codes, one buffer per record's inputs ---

#: A record an nbprod before the compact form wrote (commit 403b9cb): int64/float64 packed one base64 per column,
#: text as a JSON list; labels int64, class probabilities float64 (NaN among them).
_V1_INPUTS = ('{"age":{"dtype":"<i8","shape":[8],"b64":"EgAAAAAAAABQAAAAAAAAACMAAAAAAAAAIwAAAAAAAAA+AAAAAAAAACk'
              'AAAAAAAAAEgAAAAAAAABjAAAAAAAAAA=="},"income":{"dtype":"<f8","shape":[8],"b64":"AAAAAABKk0AAAAAAA'
              'AD4fwAAAAAAAACAnHUAiDzkN36amZmZmZm5PwEAAAAAAAAAAAAAAAAAHcAAAAAAAABFQA=="},"ok":{"dtype":"|b1","s'
              'hape":[8],"b64":"AQAAAQAAAQA="},"city":["paris",null,"nice","paris","paris","lyon",null,"nice"]}')
_V1_LABELS = ('{"dtype":"<i8","shape":[8],"b64":"AAAAAAAAAAABAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAA'
              'AAAAAAAAAAAAABAAAAAAAAAA=="}')
_V1_PROBAS = ('{"dtype":"<f8","shape":[8,2],"b64":"AAAAAAAA0D8AAAAAAADoPwAAAAAAANA/AAAAAAAA6D8AAAAAAADQPwAAAAAA'
              'AOg/AAAAAAAA0D8AAAAAAADoPwAAAAAAANA/AAAAAAAA6D8AAAAAAADQPwAAAAAAAOg/AAAAAAAA0D8AAAAAAADoPwAAAAAA'
              'APh/AAAAAAAA8D8="}')
_V1_REQUEST = {"age": np.array([18, 80, 35, 35, 62, 41, 18, 99], dtype=np.int64),
               "income": np.array([1234.5, np.nan, -0.0, 1e300, 0.1, 5e-324, -7.25, 42.0]), "ok": np.arange(8) % 3 == 0,
               "city": ["paris", None, "nice", "paris", "paris", "lyon", None, "nice"]}


def _packed_v1(values: np.ndarray) -> str:
    """The former writer's packed column (one base64 per column, the array's own dtype), kept as the reference."""
    import binascii

    return '{"dtype":"%s","shape":[%s],"b64":"%s"}' % (values.dtype.str, ",".join(map(str, values.shape)),
                                                        binascii.b2a_base64(values.tobytes(), newline=False).decode())


def _typed(values: list) -> str:
    """Values as their JSON text: 1, 1.0 and true differ (``==`` would take them as equal)."""
    return json.dumps(values, allow_nan=False)


def _stored(inputs: dict, preds, n: int) -> tuple[str, str]:
    from nbprod.monitoring.logrecords import RECORD_COLUMNS, records_of

    (rec,) = records_of("credit", [("prediction", 1.0, {"request_id": "r", "n": n, "inputs": inputs,
                                                        "predictions": preds})])
    assert not isinstance(rec, Exception), rec
    return rec[RECORD_COLUMNS.index("inputs")], rec[RECORD_COLUMNS.index("predictions")]


def _read(inputs_text: str, preds_text: str) -> tuple[dict, list]:
    from nbprod.monitoring.logrecords import columns, unpack

    return columns(json.loads(inputs_text)), unpack(json.loads(preds_text))


def _json_form(values, n: int) -> list:
    """The values the JSON list form holds (what every nbprod wrote for a request of fewer than 8 rows, and
    the per-row log before it): the reference the compact form must read back as."""
    from nbprod.monitoring.logrecords import _list_text, _plain_list

    return json.loads(_list_text(_plain_list(values, n)))


def _prediction_json_form(pred, n: int) -> list:
    from nbprod.monitoring.logrecords import _list_text, _prediction_list

    return json.loads(_list_text(_prediction_list(pred, n)))


_RNG = np.random.default_rng(13)
_I64 = np.iinfo(np.int64)
_CASES = {
    "int64 0..255": lambda n: _RNG.integers(0, 256, n),
    "int64 -128..127": lambda n: _RNG.integers(-128, 128, n),
    "int64 0..65535": lambda n: _RNG.integers(0, 65536, n),
    "int64 -40000..40000": lambda n: _RNG.integers(-40000, 40000, n),
    "int64 0..2**32": lambda n: _RNG.integers(0, 2 ** 32, n),
    "int64 ±2**31": lambda n: _RNG.integers(-2 ** 31, 2 ** 31, n),
    "int64 extremes": lambda n: np.resize(np.array([_I64.min, _I64.max, 0, -1], dtype=np.int64), n),
    "uint64 extremes": lambda n: np.resize(np.array([0, 2 ** 64 - 1, 2 ** 63], dtype=np.uint64), n),
    "int8": lambda n: _RNG.integers(-128, 128, n).astype(np.int8),
    "uint16": lambda n: _RNG.integers(0, 65536, n).astype(np.uint16),
    "int32 negative": lambda n: -_RNG.integers(1, 100, n).astype(np.int32),
    "bool": lambda n: _RNG.uniform(size=n) > 0.5,
    "float64 normal": lambda n: _RNG.normal(size=n) * 1e4,
    "float64 with NaN": lambda n: np.where(_RNG.uniform(size=n) < 0.2, np.nan, _RNG.normal(size=n)),
    "float64 all NaN": lambda n: np.full(n, np.nan),
    "float64 whole 0..255": lambda n: _RNG.integers(0, 256, n).astype(np.float64),
    "float64 whole with NaN": lambda n: np.where(_RNG.uniform(size=n) < 0.3, np.nan, _RNG.integers(18, 80, n)),
    "float64 whole negative": lambda n: _RNG.integers(-5, 5, n).astype(np.float64),
    "float64 whole 1000..50000": lambda n: _RNG.integers(1000, 50000, n).astype(np.float64),
    "float64 -0.0 and 0.0": lambda n: np.resize(np.array([-0.0, 0.0, 1.0]), n),
    "float64 float32-exact": lambda n: _RNG.normal(size=n).astype(np.float32).astype(np.float64),
    "float64 float32-exact with NaN and -0.0": lambda n: np.resize(np.array([0.5, np.nan, -0.0, 3.25, 1.0]), n),
    "float64 mixed": lambda n: np.resize(np.array([0.5, np.nan, -0.0, 3.25, 1e-3]), n),
    "float64 past float32": lambda n: np.resize(np.array([1e300, -1e300, 5e-324, 3.4028235e38, 2.0 ** 63, -2.0 ** 63]),
                                                n),
    "float64 cents": lambda n: np.round(_RNG.uniform(0, 1e5, n), 2),
    "float32": lambda n: _RNG.normal(size=n).astype(np.float32),
    "float16": lambda n: _RNG.normal(size=n).astype(np.float16),
    "float64 strided": lambda n: _RNG.normal(size=2 * n)[::2],
    "float64 big-endian": lambda n: _RNG.integers(0, 9, n).astype(">f8"),
    "int32 big-endian": lambda n: _RNG.integers(-300, 300, n).astype(">i4"),
}


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100, 1000])
@pytest.mark.parametrize("case", list(_CASES))
def test_each_array_reads_back_as_the_json_form_held_it_in_inputs_and_predictions(case, n):
    """Whatever dtype the compact form picks (narrow integers, float32, integers for whole floats, codes),
    the values read back are the JSON list form's, type for type (1 vs 1.0 vs true), NaN as null — and the
    former packed form (one base64 per column, the array's own dtype) of the same array reads the same."""
    from nbprod.monitoring.logrecords import unpack

    values = _CASES[case](n)
    want = _json_form(values, n)
    inputs_text, preds_text = _stored({"x": values, "c": values.copy(), "t": ["a", "b", None, "a"] * (n // 4)
                                       + ["a"] * (n % 4)}, values, n)
    got, preds = _read(inputs_text, preds_text)
    assert _typed(got["x"]) == _typed(got["c"]) == _typed(want)
    assert _typed(preds) == _typed(_prediction_json_form(values, n)) == _typed(want)
    assert got["t"] == ["a", "b", None, "a"] * (n // 4) + ["a"] * (n % 4)
    if values.flags.c_contiguous and values.dtype.isnative and not np.isinf(values).any():
        assert _typed(unpack(json.loads(_packed_v1(values)))) == _typed(want)  # the former packed form
    if n >= 8:
        assert inputs_text.startswith(f"[{n},{{")  # the compact form: [n, {specs}, "b64"]


@pytest.mark.parametrize("n", [8, 100])
def test_class_probabilities_and_text_predictions_read_back_as_the_json_form(n):
    from nbprod.monitoring.logrecords import unpack

    rng = np.random.default_rng(5)
    probas = rng.uniform(size=(n, 3))
    probas[1, 2] = np.nan
    for pred in (probas, probas.astype(np.float32).astype(np.float64), np.eye(3, dtype=np.int64)[rng.integers(0, 3, n)],
                 probas.astype(np.float32)):
        _, text = _stored({"x": np.arange(n)}, pred, n)
        assert _typed(unpack(json.loads(text))) == _typed(_prediction_json_form(pred, n))
    labels = ["yes", "no", None, "peut-être 😀"] * (n // 4)
    _, text = _stored({"x": np.arange(n)}, labels, n)
    assert '"values"' in text and unpack(json.loads(text)) == labels  # dictionary codes, read back as the texts
    ids = [f"id{i}" for i in range(n)]  # all distinct: no gain from a dictionary, stays the JSON list
    _, text = _stored({"x": np.arange(n)}, ids, n)
    assert json.loads(text) == ids


def test_text_columns_with_repeated_values_are_codes_and_read_back_whatever_the_characters():
    texts = [chr(c) + "x" for c in range(128)] + ["été", "日本", "😀", "\ud800", 'a"b\\c', "", None]
    column = texts * 3  # each value three times: a dictionary of 135 values and codes
    n = len(column)
    inputs_text, _ = _stored({"city": column, "many": [f"v{i}" for i in range(n)], "odd": [{"a": 1}, (1, 2)] * (n // 2)
                              + [None] * (n % 2)}, np.zeros(n), n)
    specs = json.loads(inputs_text)[1]
    assert specs["city"]["dtype"] == "|u1" and len(specs["city"]["values"]) == len(texts)
    stdlib = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # the dictionary's text as the stdlib writes it
    assert stdlib.encode(specs["city"]["values"]) in inputs_text
    got, _ = _read(inputs_text, '[]')
    assert got["city"] == column and got["many"] == [f"v{i}" for i in range(n)]
    assert got["odd"] == [{"a": 1}, [1, 2]] * (n // 2) + [None] * (n % 2)
    wide = [f"{i:04d}" for i in range(300)] * 2  # more than 256 distinct values: two-byte codes
    inputs_text, _ = _stored({"w": wide}, np.zeros(600), 600)
    assert json.loads(inputs_text)[1]["w"]["dtype"] == "<u2" and _read(inputs_text, "[]")[0]["w"] == wide


def _served(n: int, seed: int = 0) -> dict:
    """A ``n``-row credit request as the server hands it to the log: the body decoded and coerced by the serving
    codecs to a signature (integers long, the rest double, text string) — a Coerced, with its distinct values."""
    from nbprod.datasets import credit
    from nbprod.serving import codecs

    X, _ = credit(max(n, 500), seed)
    X = X.head(n)
    signature = [codecs.Column(c, {"i": "long", "f": "double"}.get(X[c].dtype.kind, "string")) for c in X.columns]
    body = json.dumps({"dataframe_records": json.loads(X.to_json(orient="records"))}).encode()
    return codecs.coerce(codecs.decode_mlflow(codecs.parse_json(body), signature), signature)


@pytest.mark.parametrize("n", [1, 8, 100, 1000])
def test_the_servers_coerced_inputs_read_back_as_the_json_form_and_a_100_row_record_fits_a_page(n):
    """The server's own inputs (a Coerced: its float64 matrix and text columns' distinct values are reused): the
    rows read back are the JSON form's; a 100-row credit record, 9.3 KB before, stays under 4 KB — one SQLite
    page (4,096 bytes), no overflow pages to read and write on each insert and prune."""
    from nbprod.serving.codecs import Coerced

    cols = _served(n)
    assert isinstance(cols, Coerced) and (n == 1 or cols.distinct)
    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    inputs_text, preds_text = _stored(cols, labels, n)
    got, preds = _read(inputs_text, preds_text)
    assert list(got) == list(cols)
    for k, v in cols.items():
        assert _typed(got[k]) == _typed(_json_form(v, n)), k
    assert _typed(preds) == _typed(_json_form(labels, n))
    if n == 100:
        assert len(inputs_text) + len(preds_text) < 4000, (len(inputs_text), len(preds_text))
        specs = json.loads(inputs_text)[1]
        assert specs["age"] == {"dtype": "|u1"} and specs["employment"]["dtype"] == "|u1"


def test_a_coerced_whose_distinct_values_are_not_its_columns_is_still_stored_exactly():
    """The distinct values coerce found are reused, never trusted blindly: a value missing from them (or a
    set that is not the column's) leaves the column as its JSON list."""
    from nbprod.serving.codecs import Coerced

    n = 10
    city = ["a", "b"] * 5
    cols = Coerced({"city": city, "other": ["x"] * n}, (), np.empty((0, n)), {"city": {"a"}, "other": {"x", "y"}})
    inputs_text, _ = _stored(cols, np.zeros(n), n)
    specs = json.loads(inputs_text)[1]
    assert specs["city"] == city and specs["other"]["dtype"] == "|u1"
    assert _read(inputs_text, "[]")[0] == {"city": city, "other": ["x"] * n}


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover - a test dependency
    given = None

if given is not None:
    _DTYPES = st.one_of(hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(endianness="="),
                        hnp.floating_dtypes(endianness="=", sizes=(16, 32, 64)), hnp.boolean_dtypes())

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_random_arrays_read_back_as_the_json_form(data):
        """Random arrays of every numeric dtype (NaN, -0.0, subnormals, extremes; ±inf left out: JSON refuses
        them, and such a request never was logged): read back as the JSON form held them."""
        dtype = data.draw(_DTYPES)
        n = data.draw(st.integers(0, 40))
        values = data.draw(hnp.arrays(dtype, n, elements=hnp.from_dtype(dtype, allow_infinity=False)))
        texts = data.draw(st.lists(st.sampled_from(["a", "é", None, ""]), min_size=n, max_size=n))
        inputs_text, preds_text = _stored({"x": values, "t": texts}, values, n)
        got, preds = _read(inputs_text, preds_text)
        assert _typed(got["x"]) == _typed(preds) == _typed(_json_form(values, n))
        assert got["t"] == texts


def test_records_an_earlier_nbprod_wrote_read_as_before_beside_new_ones(db_url):
    """Stored old-form records (the JSON list form, and the former packed form: one base64 per column, int64
    and float64) and new ones of the same request expand to the same rows, in SQLite and PostgreSQL."""
    hooks = [("prediction", 1.0, {"request_id": "labels", "n": 8, "inputs": _V1_REQUEST,
                                  "predictions": np.array([0, 1, 1, 0, 0, 1, 0, 1])}),
             ("prediction", 2.0, {"request_id": "probas", "n": 8, "inputs": _V1_REQUEST,
                                  "predictions": np.array([[0.25, 0.75]] * 7 + [[np.nan, 1.0]])})]
    log_rows("credit", hooks)
    new = [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    frame = logread.load("credit")
    _clear()
    with ensure_tables().begin() as conn:
        conn.execute(sa.insert(prediction_records), [
            {"deployment": "credit", "ts": ts, "request_id": rid, "id_prefix": rid, "version": None, "role": "stable",
             "status": 200, "latency_ms": None, "n_rows": 8, "inputs": _V1_INPUTS, "predictions": preds, "ood": None}
            for ts, rid, preds in ((1.0, "labels", _V1_LABELS), (2.0, "probas", _V1_PROBAS))])
    old = [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")]
    assert old == new
    read = logread.load("credit")
    assert read.frame.prediction.tolist() == frame.frame.prediction.tolist()
    assert read.inputs.to_dict("list").keys() == frame.inputs.to_dict("list").keys()
    assert json.loads(old[1][8]) == {"age": 80, "income": None, "ok": False, "city": None}
    assert json.loads(old[2][8]) == {"age": 35, "income": -0.0, "ok": False, "city": "nice"}
    _clear()
    legacy = json.dumps({k: _json_form(v, 8) for k, v in _V1_REQUEST.items()}, separators=(",", ":"))
    with ensure_tables().begin() as conn:  # the first record form: every column a JSON list
        conn.execute(sa.insert(prediction_records), [
            {"deployment": "credit", "ts": 1.0, "request_id": "labels", "id_prefix": "labels", "version": None,
             "role": "stable", "status": 200, "latency_ms": None, "n_rows": 8, "inputs": legacy,
             "predictions": "[0,1,1,0,0,1,0,1]", "ood": None}])
    assert [tuple(getattr(r, c) for c in _COLS) for r in logread.rows("credit")] == new[:8]


@pytest.mark.parametrize("n", [8, 100])
def test_a_request_of_every_kind_of_column_at_once_reads_back_as_the_json_form(n):
    """Every case above as the columns of ONE request (a plain dict, as a batch or a spooled request hands it
    over: its int and float64 columns narrowed together as one matrix), and the same columns in a Coerced."""
    from nbprod.serving.codecs import Coerced

    cols = {case: make(n) for case, make in _CASES.items()}
    cols["text"] = ["a", None] * (n // 2)
    inputs_text, _ = _stored(cols, np.zeros(n), n)
    got, _ = _read(inputs_text, "[]")
    assert list(got) == list(cols)
    for k, v in cols.items():
        assert _typed(got[k]) == _typed(_json_form(v, n)), k
    numeric = ("float64 normal", "float64 whole 0..255", "int64 0..255", "int64 -40000..40000")
    matrix = np.array([cols[k] for k in numeric], dtype=np.float64)
    coerced = Coerced({k: cols[k] for k in (*numeric, "text")}, numeric, matrix, {"text": {"a", None}})
    got, _ = _read(_stored(coerced, np.zeros(n), n)[0], "[]")
    assert {k: _typed(v) for k, v in got.items()} == {k: _typed(_json_form(coerced[k], n)) for k in coerced}
