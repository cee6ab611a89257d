"""The request path's quick forms give exactly what the general forms give (issue 13): coerce, the OOD
flags, the prediction histogram and the prediction log's row JSON, on ordinary and on awkward input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbprod.data.ood import CategoryCheck, OodChecker, RangeCheck
from nbprod.serving import codecs
from nbprod.serving.codecs import Batch, Column
from nbprod.serving.quickood import QuickOod

SIG = [Column("age", "long"), Column("income", "double"), Column("city", "string")]


def _general(batch: Batch):
    """coerce() with the quick form switched off: the column-by-column path."""
    real = codecs._coerce_quick
    codecs._coerce_quick = lambda *a: None
    try:
        return codecs.coerce(batch, SIG)
    except Exception as exc:  # noqa: BLE001 - the same error is expected from both
        return exc
    finally:
        codecs._coerce_quick = real


@pytest.mark.parametrize("n", [1, 3, 200])
@pytest.mark.parametrize("rows", [
    lambda i: {"age": 30 + i, "income": 1.5 * i, "city": "Paris"},
    lambda i: {"age": 30 + i, "income": None, "city": None},
    lambda i: {"age": 3.0, "income": 2, "city": "x"},  # an integral float in an integer column
    lambda i: {"age": True, "income": 1.0, "city": "x"},  # a bool is not a number
    lambda i: {"age": 2 ** 60, "income": 1.0, "city": "x"},  # too large for float64 to hold exactly
    lambda i: {"age": 1, "income": float("inf"), "city": "x"},
    lambda i: {"age": 1, "income": "12.5", "city": "x"},  # numeric text
    lambda i: {"age": 1, "income": 1.0, "city": 7},
    lambda i: {"age": 1, "income": 1.0},  # a missing column
    lambda i: {"age": 1, "income": 1.0, "city": "x", "extra": 1},  # an extra one
])
def test_the_quick_coerce_gives_what_the_general_one_gives(rows, n):
    records = [rows(i) for i in range(n)]
    batch = codecs.decode_mlflow({"dataframe_records": records}, SIG)
    want = _general(batch)
    if isinstance(want, Exception):  # the same error, the same words
        with pytest.raises(type(want)) as got_error:
            codecs.coerce(batch, SIG)
        assert str(got_error.value) == str(want)
        return
    got = codecs.coerce(batch, SIG)
    assert list(got) == list(want)
    for k in want:
        if isinstance(want[k], np.ndarray):
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k], equal_nan=True)
        else:
            assert list(got[k]) == list(want[k])
    assert list(batch.columns) == list(codecs._columnar(records, "dataframe_records")[0])


def test_quick_ood_flags_are_the_checkers_flags():
    checker = OodChecker([RangeCheck("age", "numeric", 18.0, 90.0), RangeCheck("income", "numeric", 0.0, 1e6,
                                                                              pos_inf_ok=True)],
                         [CategoryCheck("city", frozenset({"Paris", "Lyon", "1"}))])
    quick = QuickOod(checker)
    rng = np.random.default_rng(0)
    for n in (1, 5, 40, 300):
        for _ in range(20):
            cols = {"age": rng.choice([17.0, 30.0, 91.0, np.nan], n, p=[0.02, 0.94, 0.02, 0.02]),
                    "income": rng.choice([5.0, -1.0, np.inf, np.nan], n, p=[0.94, 0.02, 0.02, 0.02]),
                    "city": list(rng.choice(["Paris", "Lyon", "Nice"], n, p=[0.5, 0.48, 0.02]))}
            cols["city"] = [None if i % 7 == 3 else str(c) for i, c in enumerate(cols["city"])]
            assert quick.flags(cols, n) == checker.flags(cols, n)
    assert quick.flags({"age": np.array([30]), "income": np.array([1.0]), "city": [1]}, 1) == checker.flags(
        {"age": np.array([30]), "income": np.array([1.0]), "city": [1]}, 1)  # 1 matches the seen "1"


def test_the_prediction_histogram_per_bucket_equals_one_observe_per_value():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from nbprod.serving.metrics import observe_many

    values = np.concatenate([np.linspace(-1, 1200, 997), [0.05, 0.1, 1.0, 1000.0]])
    registries = []
    for quick in (True, False):
        r = CollectorRegistry()
        h = Histogram("p", "p", ["v"], buckets=(0.0, 0.05, 0.1, 0.5, 1.0, 10.0, 1000.0), registry=r).labels("1")
        if quick:
            observe_many(h, values)
        else:
            for v in values.tolist():
                h.observe(v)
        registries.append([ln for ln in generate_latest(r).decode().splitlines() if not ln.startswith("p_created")])
    assert registries[0] == registries[1]
    assert any(ln.startswith("p_sum") for ln in registries[0])


def test_the_logs_record_json_is_what_json_dumps_writes():
    """A request's record (columnar JSON) holds each value as json.dumps writes it, alone and when the
    writer converts a run of small requests at once."""
    from nbprod.monitoring import logrecords

    n = 6
    rec = {"request_id": "r", "version": "1", "role": "stable", "n": n, "ood": [[], ["age=1 below"], [], [], [], []],
           "inputs": {"age": np.arange(n), "income": np.array([1.5, np.nan, 1e300, -0.0, 2.0, 3.0]),
                      "ville": ["Zürich", None, 'a"b', "c,d", "%s", "é"], "ok": [True, False, None, True, 1, 2.5],
                      "odd": [{"a": 1}, [1, 2], None, "x", 3, 4.0]},
           "predictions": np.array([[0.25, 0.75]] * n), "latency_ms": 1.0}
    cols = logrecords.RECORD_COLUMNS
    (one,) = [dict(zip(cols, r, strict=True)) for r in logrecords.records_of("d", [("prediction", 0.0, rec)])]
    expected = {k: [logrecords._jsonable(v) for v in logrecords._plain_list(col, n)]
                for k, col in rec["inputs"].items()}
    assert one["inputs"] == json.dumps(expected, separators=(",", ":"), allow_nan=False, default=str)
    assert one["predictions"] == "[" + ",".join(["[0.25,0.75]"] * n) + "]"
    assert one["ood"] == '{"1":["age=1 below"]}' and one["id_prefix"] == "r" and one["n_rows"] == n
    labels = {**rec, "predictions": ["yes", None, "no", "a,b", "", "x"]}
    (texts,) = [r[10] for r in logrecords.records_of("d", [("prediction", 0.0, labels)])]
    assert texts == '["yes",null,"no","a,b","","x"]'
    # one-row requests converted together: each record as it is alone
    small = [("prediction", float(i), {**rec, "request_id": f"s{i}", "n": 1,
                                       "inputs": {k: v[i:i + 1] for k, v in rec["inputs"].items()},
                                       "predictions": rec["predictions"][i:i + 1], "ood": rec["ood"][i:i + 1]})
             for i in range(n)]
    alone = [r for item in small for r in logrecords.records_of("d", [item])]
    assert list(logrecords.records_of("d", small)) == alone and logrecords._SMALL >= 1
    assert json.loads(alone[2][9]) == {"age": [2], "income": [1e300], "ville": ['a"b'], "ok": [None], "odd": [None]}


def _stdlib_parse(body: bytes):
    real = codecs._orjson
    codecs._orjson = None
    try:
        return codecs.parse_json(body)
    except Exception as exc:  # noqa: BLE001 - the same error is expected from both
        return exc
    finally:
        codecs._orjson = real


@pytest.mark.parametrize("body", [
    b'{"dataframe_records": [{"age": 42, "income": 1.5e3, "city": "Z\xc3\xbcrich"}]}',
    b'{"a": 12345678901234567890123, "b": -0.0, "c": 1e-7, "d": [true, false, null], "a": 2}',
    b'{"a": 1e400}',  # past float64: the stdlib reads inf (coerce refuses it)
    b'{"a": NaN}', b'{"a": Infinity}',  # refused as invalid_number
    b'"\\ud800"',  # a lone surrogate: the stdlib reads it
    b'\xef\xbb\xbf{"a": 1}',  # a BOM
    '{"a": "é"}'.encode("utf-16"),  # UTF-16, which json.loads detects
    b'{"a": 1} x', b'{"a": ', b'\xff\xfe\xfa', b'[' * 5000,
])
def test_parse_json_gives_what_the_stdlib_gives_or_its_error(body):
    """orjson reads the body when it can; the objects, or the error (code and message), are the stdlib's."""
    assert codecs._orjson is not None, "orjson is a dependency of nbprod"
    try:
        fast = codecs.parse_json(body)
    except Exception as exc:  # noqa: BLE001
        fast = exc
    slow = _stdlib_parse(body)
    if isinstance(slow, Exception):
        assert type(fast) is type(slow) and str(fast) == str(slow) and getattr(fast, "code", None) == slow.code
    else:
        assert repr(fast) == repr(slow)  # values, types, key order


@pytest.mark.parametrize("pred", [
    np.array([0.25]), np.array([0.0, -0.0, 1e-4, 0.5, 1e16, 1.5e300, 123456789.123]),
    np.array([1e-5]), np.array([2.5e-7] + [0.5] * 20), np.array([np.nan]), np.array([np.inf] * 10),
    np.random.default_rng(0).random(500), np.random.default_rng(1).random((50, 2)),
    np.array([1, -2, 2 ** 62], dtype=np.int64), np.array([2 ** 64 - 1], dtype=np.uint64),
    np.array([True, False]), np.array(["yes", "no"]), np.array([0.5], dtype=np.float32),
    np.array([1, "a"], dtype=object),
])
@pytest.mark.parametrize("ood", [None, [["age 140 above the training range"]], [["city 'Zürich' not seen"]],
                                 [["a \"quoted\" \\ reason\x7f\x01"]]])
def test_the_answer_json_is_byte_for_byte_what_dumps_writes(pred, ood):
    ids = [f"{'ab' * 16}-{i}" for i in range(len(pred))]
    answer = {"predictions": codecs.to_jsonable(pred), "model_version": "3", "prediction_ids": ids}
    if ood is not None:
        answer["ood"] = ood * len(pred)
    assert codecs.dumps_answer(answer, pred) == codecs.dumps(answer)


def test_within_runs_a_coroutine_that_never_waits_without_a_deadline_and_one_that_waits_with_it():
    """``_within`` (the body read and the prediction): the result or the exception of a coroutine that
    finishes at once, no timer armed for it; a coroutine that waits gets the deadline counted from its
    start, and a cancellation of the request still reaches it."""
    import asyncio

    from nbprod.serving import app

    async def at_once(x):
        if x is None:
            raise KeyError("boom")
        return x * 2

    async def waits(seconds, log):
        log.append("start")
        await asyncio.sleep(0)  # a bare yield
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(seconds, fut.set_result, 7)
        try:
            return await fut
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def main():
        loop = asyncio.get_running_loop()
        armed = []
        real = loop.call_at
        loop.call_at = lambda *a, **k: armed.append(a) or real(*a, **k)  # type: ignore[method-assign]
        try:
            assert await app._within(at_once(21), 5) == 42
            with pytest.raises(KeyError):
                await app._within(at_once(None), 5)
            assert armed == []  # nothing waited: no deadline timer
        finally:
            loop.call_at = real  # type: ignore[method-assign]
        log: list = []
        assert await app._within(waits(0.01, log), 5) == 7
        with pytest.raises(asyncio.TimeoutError):
            await app._within(waits(5, log), 0.05)
        assert log[-1] == "cancelled"
        task = loop.create_task(app._within(waits(5, log), 5))
        while log[-1] != "start":
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log[-1] == "cancelled"

    asyncio.run(main())


@pytest.mark.parametrize("n", [1, 2, 150])
def test_the_compiled_features_are_scikit_learns_on_awkward_rows(n):
    """The plan's feature matrix — numeric columns written into it, categories looked up all at once — is
    what the fitted ColumnTransformer gives, with missing numbers, unseen and missing categories."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nbprod.serving.fastpath import compile_estimator

    rng = np.random.default_rng(n)
    train = pd.DataFrame({"age": rng.integers(18, 90, 300), "income": rng.normal(5e4, 1e4, 300),
                          "city": rng.choice(["Paris", "Lyon", "Nice"], 300), "kind": rng.choice(["a", "b"], 300)})
    y = rng.integers(0, 2, 300)
    numeric = make_pipeline(SimpleImputer(), StandardScaler())
    pipe = make_pipeline(ColumnTransformer([("num", numeric, ["age", "income"]),
                                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "kind"])]),
                         LogisticRegression()).fit(train, y)
    plan = compile_estimator(pipe, "predict_proba")
    age = rng.integers(10, 100, n).astype(np.float64)
    income = rng.normal(5e4, 2e4, n)
    city = rng.choice(["Paris", "Lyon", "Nice", "Rome", None], n).tolist()  # Rome: unseen; None: missing
    kind = rng.choice(["a", "b"], n).tolist()
    if n > 1:
        age[::3] = np.nan
        income[1] = np.nan
    cols = {"age": age, "income": income, "city": city, "kind": kind}
    expected = pipe[:-1].transform(pd.DataFrame({k: v for k, v in cols.items()}))
    got = plan.features(cols, n)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(plan(cols, n), pipe.predict_proba(pd.DataFrame(cols)), rtol=1e-9)
    ints = {**cols, "age": np.nan_to_num(age, nan=40).astype(np.int64)}  # an integer column as coerce gives it
    np.testing.assert_allclose(plan.features(ints, n), pipe[:-1].transform(pd.DataFrame(ints)), rtol=1e-12, atol=0)


_PID_SCRIPT = r'''
import os, sys
from pathlib import Path
from prometheus_client import values
original = values.ValueClass
if sys.argv[1] == "used":
    from prometheus_client import Counter
    Counter("theirs_total", "a metric made before nbprod's").inc()
from nbprod.serving import metrics
m = metrics.ServingMetrics()
metrics._PID[0] = 424242  # what the increments take as this process's id, if they ask nbprod
m.child(m.requests, "1", "200", "invocations").inc()
m.flush()  # the request path only buffers: the write into the file is the flush's
metrics._PID[0] = os.getpid()
m.child(m.requests, "1", "200", "invocations").inc()
m.flush()
asked = (Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / "counter_424242.db").exists()
print("swapped" if values.ValueClass is not original else "kept", asked)
pid = os.fork()
if pid == 0:  # a forked child writes its own file, as prometheus-client does on a fork
    m.child(m.requests, "1", "200", "invocations").inc()
    m.flush()
    os._exit(0)
os.waitpid(pid, 0)
files = {p.name for p in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db")}
print({f"counter_{os.getpid()}.db", f"counter_{pid}.db"} <= files)
'''


@pytest.mark.parametrize("before", ["fresh", "used"])
def test_multiprocess_metrics_ask_the_pid_once_and_still_notice_a_fork(tmp_path, before):
    """In multiprocess mode an increment costs no getpid system call (prometheus-client's documented
    process_identifier, kept up to date across forks), unless the process already holds values of the
    original class (two maps of one file would clash): then nothing changes."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _PID_SCRIPT, before], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    first, forked = out.stdout.split("\n")[:2]
    assert first == ("swapped True" if before == "fresh" else "kept False")
    assert forked == "True"
