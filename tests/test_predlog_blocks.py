"""A server's writer stores a run of answered requests as one block record (issue 13), and every reader sees
exactly the rows each request's own record gave: values, ids, labels, periods, counts, order. SQLite and
PostgreSQL; a real server under concurrent load."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from _servers import request, server, wait_until

from nbprod.monitoring import logread
from nbprod.monitoring.feedback import feedback
from nbprod.monitoring.logblocks import SPAN_S, blocks
from nbprod.monitoring.predlog import PredictionLog, ensure_tables, log_rows, prediction_records

PREFIX = "0123456789abcdef0123"  # a server's per-process id prefix (20 hex digits)


def _rid(counter: int, prefix: str = PREFIX) -> str:
    return "%s%012x" % (prefix, counter)


def _served(n: int, seed: int) -> dict:
    """``n`` credit rows as the server hands them to the log (decoded and coerced to the signature)."""
    from nbprod.datasets import credit
    from nbprod.serving import codecs

    X, _ = credit(500, seed)
    X = X.head(n)
    signature = [codecs.Column(c, {"i": "long", "f": "double"}.get(X[c].dtype.kind, "string")) for c in X.columns]
    body = json.dumps({"dataframe_records": json.loads(X.to_json(orient="records"))}).encode()
    return codecs.coerce(codecs.decode_mlflow(codecs.parse_json(body), signature), signature)


def _answer(counter: int, n: int, prefix: str = PREFIX, seed: int | None = None) -> dict:
    ood = [[] for _ in range(n)]
    ood[n - 1] = ["income: above the training range"] if counter % 2 else []
    return {"request_id": _rid(counter, prefix), "version": "1", "role": "stable", "n": n,
            "inputs": _served(n, counter if seed is None else seed),
            "predictions": (np.arange(n) % 2 == counter % 2).astype(np.int64),
            "ood": ood if counter % 3 else None, "latency_ms": 0.5 + counter / 7}


def _write(deployment: str, items: list) -> PredictionLog:
    """``items`` through the server's writer (its conversion and insert, synchronously)."""
    log = PredictionLog(deployment)
    log._write(items)
    assert log.written == sum(rec["n"] for _, _, rec in items) and log.last_error is None, log.stats()
    return log


def _stored(deployment: str) -> list:
    r = prediction_records
    with ensure_tables().connect() as conn:
        return conn.execute(sa.select(r).where(r.c.deployment == deployment).order_by(r.c.id)).all()


def _alone(items: list) -> tuple[list, logread.LogRows]:
    """The rows and ``load`` of ``items`` written one record per request (the batch scorer's path), then cleared."""
    log_rows("credit", items)
    assert len(_stored("credit")) == len(items)
    out = logread.rows("credit"), logread.load("credit", ids=True)
    with ensure_tables().begin() as conn:
        conn.execute(sa.delete(prediction_records))
    return out


_COLS = ("request_id", "row_index", "prediction_id", "version", "role", "status", "n_rows", "inputs", "prediction",
         "ood")


def _same_rows(got: list, want: list) -> None:
    assert [tuple(getattr(r, c) for c in _COLS) for r in got] == [tuple(getattr(r, c) for c in _COLS) for r in want]
    for g, w in zip(got, want, strict=True):  # times and latencies to the microsecond
        assert abs(g.ts - w.ts) < 1e-6 and abs(g.latency_ms - w.latency_ms) < 1e-3


def test_a_run_of_server_answers_is_one_block_and_reads_back_as_each_request_alone(db_url):
    now = time.time()
    sizes = [1, 1, 3, 1, 7, 1, 2, 100, 1, 1]
    items = [("prediction", now - 10 + k * 0.0123457, _answer(40 + 3 * k, n)) for k, n in enumerate(sizes)]
    rows, want = _alone(items)  # the same requests, one record each
    _write("credit", items)
    assert [(r.n_requests, r.n_rows, r.id_prefix) for r in _stored("credit")] == [
        (7, 16, _rid(40)), (None, 100, _rid(61)), (2, 2, _rid(64))]  # a large request is stored alone
    _same_rows(logread.rows("credit"), rows)
    got = logread.load("credit", ids=True)
    cols = [c for c in want.frame.columns if c not in ("ts", "latency_ms")]
    assert got.frame[cols].equals(want.frame[cols]) and got.inputs.equals(want.inputs)
    assert np.allclose(got.frame.ts, want.frame.ts, rtol=0, atol=1e-6)
    assert np.allclose(got.frame.latency_ms, want.frame.latency_ms, rtol=0, atol=1e-3)


def test_feedback_finds_each_request_of_a_block_and_a_late_request_stored_alone(db_url):
    now = time.time()
    order = [10, 11, 13, 12, 14, 15, 9]  # 12 and 9 answered after a higher id: each stored alone
    items = [("prediction", now + k * 0.001, _answer(c, 2)) for k, c in enumerate(order)]
    _write("credit", items)
    stored = _stored("credit")
    assert [(r.id_prefix, r.n_requests) for r in stored] == [(_rid(10), 3), (_rid(12), None), (_rid(14), 2),
                                                             (_rid(9), None)]
    ids = [f"{_rid(c)}-{i}" for c in (10, 11, 12, 13, 9) for i in (0, 1)]
    result = feedback(ids + [f"{_rid(16)}-0", f"{_rid(11)}-2", f"{_rid(14)}-01"], list(range(len(ids))) + [1, 1, 1])
    assert result.stored == ids and result.unknown == [f"{_rid(16)}-0", f"{_rid(11)}-2", f"{_rid(14)}-01"]
    frame = logread.load("credit", ids=True).frame
    labels = dict(zip(frame.prediction_id, frame.label, strict=True))
    assert {pid: labels[pid] for pid in ids} == dict(zip(ids, range(len(ids)), strict=True))
    assert labels[f"{_rid(14)}-0"] is None and labels[f"{_rid(15)}-1"] is None
    # a block with a label is kept over the cap after unlabelled requests, with its labels
    assert PredictionLog("credit", max_rows=10).prune() == 2 * 2  # the unlabelled block of 14 and 15
    assert sorted(logread.load("credit").frame.label.dropna()) == list(range(len(ids)))


def test_a_period_that_cuts_a_block_reads_and_counts_only_its_requests_in_it(db_url):
    now = time.time() - 60
    items = [("prediction", now + k * 0.1, _answer(k + 1, 2)) for k in range(8)]
    _write("credit", items)
    assert len(_stored("credit")) == 1
    part = logread.load("credit", since=now + 0.25, until=now + 0.55, ids=True)
    assert list(part.frame.request_id) == [_rid(c) for c in (4, 5, 6) for _ in range(2)]
    assert len(part.inputs) == 6 and list(part.inputs.age) == list(logread.load("credit").inputs.age[6:12])
    assert logread.load("credit", since=now + 0.7, until=now + 0.7, until_inclusive=True).frame.request_id.tolist() \
        == [_rid(8)] * 2
    assert logread.count_requests("credit", now + 0.25) == 5
    assert logread.count_requests("credit", now - SPAN_S) == 8
    assert logread.count_requests("credit", now + 0.75) == 0


def test_two_workers_blocks_overlapping_in_time_read_in_time_order_with_their_inputs(db_url):
    now = time.time()
    a = [("prediction", now + k * 0.002, _answer(k + 1, 1, seed=k)) for k in range(5)]
    b = [("prediction", now + 0.001 + k * 0.002, _answer(k + 1, 1, prefix="f" * 20, seed=10 + k)) for k in range(5)]
    _, want = _alone(sorted(a + b, key=lambda item: item[1]))
    _write("credit", a)
    _write("credit", b)
    assert [r.n_requests for r in _stored("credit")] == [5, 5]
    got = logread.load("credit", ids=True)
    assert list(got.frame.request_id) == list(want.frame.request_id)  # interleaved, by time
    assert got.inputs.equals(want.inputs) and list(got.frame.prediction) == list(want.frame.prediction)


def test_what_cannot_join_a_block_is_stored_alone():
    now = time.time()
    plain = {**_answer(2, 1), "inputs": {"age": np.array([30.0])}}  # not the server's coerced inputs
    other = {**_answer(3, 1), "version": "2"}
    items = [("prediction", now, _answer(1, 1)), ("prediction", now, plain), ("prediction", now, other),
             ("prediction", now + 0.001, {**_answer(4, 1), "request_id": "client-chosen"}),
             ("shadow", now, {"request_id": _rid(5), "predictions": [1]}), ("prediction", now + SPAN_S + 0.1,
                                                                           _answer(6, 1)),
             ("prediction", now + SPAN_S + 0.2, _answer(7, 1)), ("prediction", now + 2 * SPAN_S + 0.3, _answer(8, 1))]
    out, after = blocks(items)
    assert [kind for kind, _, _ in out] == ["prediction"] * 4 + ["shadow", "block", "prediction"]
    assert after == _rid(7) and out[5][2]["n_requests"] == 2
    assert [k for k, _, _ in blocks(items[5:], after=_rid(7))[0]] == ["prediction"] * 3  # never below an earlier block


def test_a_records_table_of_an_older_nbprod_gains_the_block_columns(nbprod_home):
    import sqlite3

    from nbprod.monitoring import predlog

    nbprod_home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(nbprod_home / "nbprod.db") as db:  # prediction_records as the nbprod before blocks made it
        db.execute("CREATE TABLE prediction_records (id INTEGER PRIMARY KEY, deployment VARCHAR(255) NOT NULL, "
                   "ts FLOAT NOT NULL, request_id VARCHAR(64), id_prefix VARCHAR(64), version VARCHAR(64), "
                   "role VARCHAR(16) NOT NULL, status INTEGER NOT NULL, latency_ms FLOAT, n_rows INTEGER NOT NULL, "
                   "inputs TEXT, predictions TEXT, ood TEXT)")
        db.execute("INSERT INTO prediction_records (deployment, ts, request_id, id_prefix, version, role, status, "
                   "latency_ms, n_rows, inputs, predictions, ood) VALUES ('credit', ?, 'old', 'old', '1', 'stable', "
                   "200, 1.0, 1, '{\"age\":[30.0]}', '[1]', NULL)", (time.time() - 5,))
    db.close()
    predlog._created.clear()
    now = time.time()
    _write("credit", [("prediction", now + k * 0.001, _answer(k + 1, 1)) for k in range(3)])
    assert [r.n_requests for r in _stored("credit")] == [None, 3]
    assert list(logread.load("credit").frame.request_id) == ["old"] + [_rid(k + 1) for k in range(3)]
    assert feedback(["old-0", f"{_rid(2)}-0"], [1, 0]).stored == ["old-0", f"{_rid(2)}-0"]


@pytest.mark.slow
def test_a_real_server_under_concurrent_load_writes_blocks_that_read_and_take_feedback(serving_models, env):
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    save_spec("credit", DeploymentSpec("credit", [Route(serving_models["clf"], "1", 100, "stable")]))
    df = serving_models["df"]
    ids: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(40):
            start = (k * 40 + i) % (len(df) - 3)
            body = {"dataframe_records": json.loads(df.iloc[start:start + 1 + i % 3].to_json(orient="records"))}
            status, _, data = request(port, "POST", "/invocations", body)
            assert status == 200
            with lock:
                ids.extend(json.loads(data)["prediction_ids"])

    with server(["--deployment", "credit", "--no-auth", "--workers", "2"], env) as port:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(lambda: len(logread.rows("credit")) == len(ids), 30, "every answered row in the log")
        stored = _stored("credit")
        assert max(r.n_requests or 1 for r in stored) > 1  # blocks were written
        assert sum(r.n_requests or 1 for r in stored) == 6 * 40 == logread.count_requests("credit", 0)
        assert sorted(r.prediction_id for r in logread.rows("credit")) == sorted(ids)
        chosen = ids[len(ids) // 3::7]
        status, _, data = request(port, "POST", "/feedback", {"prediction_ids": chosen, "labels": [1] * len(chosen)})
        assert status == 200 and json.loads(data)["stored"] == len(chosen), data
    frame = logread.load("credit", ids=True).frame
    assert set(frame.prediction_id[frame.label == 1]) == set(chosen)
    assert frame.ts.is_monotonic_increasing


def test_feedback_finds_a_request_whose_block_a_later_writer_began_inside(db_url):
    """A second log object in one process knows nothing of the first one's blocks: its block may begin inside
    an earlier block's range of ids, and each id still finds its own block."""
    now = time.time()
    _write("credit", [("prediction", now + k * 0.001, _answer(c, 1)) for k, c in enumerate((10, 11, 13))])
    _write("credit", [("prediction", now + 0.01 + k * 0.001, _answer(c, 1)) for k, c in enumerate((12, 14))])
    assert [(r.id_prefix, r.n_requests) for r in _stored("credit")] == [(_rid(10), 3), (_rid(12), 2)]
    ids = [f"{_rid(c)}-0" for c in (10, 11, 12, 13, 14)]
    assert feedback(ids, [1, 2, 3, 4, 5]).stored == ids
    frame = logread.load("credit", ids=True).frame
    assert dict(zip(frame.prediction_id, frame.label, strict=True)) == dict(zip(ids, [1, 2, 3, 4, 5], strict=True))
