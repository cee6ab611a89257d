"""Reliability of the prediction log (issue 11, points 1 and 14): refused requests never displace
predictions or their labels, retention keeps up with writes, and SQLite gives freed pages back."""

from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from _servers import request, server, wait_until

from nbprod.monitoring.feedback import feedback
from nbprod.monitoring.logread import rows as log_view
from nbprod.monitoring.predlog import PredictionLog, ensure_tables, feedback_table, log_rows, prediction_records

TOKEN = "tok-reliable"



def _record(rid: str, n: int = 2) -> dict:
    return {"request_id": rid, "version": "1", "role": "stable", "n": n, "inputs": {"age": np.arange(float(n))},
            "predictions": np.zeros(n), "ood": None, "latency_ms": 1.0}


def _log(deployment: str = "credit") -> list:
    """The log's rows, one per predicted row (records expanded)."""
    return log_view(deployment)


def _labelled() -> dict:
    with ensure_tables().connect() as conn:
        return dict(conn.execute(sa.select(feedback_table.c.prediction_id, feedback_table.c.label)).all())


def test_retention_deletes_errors_first_then_unlabelled_predictions_and_labels_last(db_url):
    now = time.time()
    log_rows("credit", [("prediction", now - 100, _record("lab", n=3))])  # the oldest rows, labelled
    log_rows("credit", [("error", now - 90 + i, {"status": 500}) for i in range(4)])
    log_rows("credit", [("prediction", now - 80 + i, _record(f"new{i}")) for i in range(3)])  # unlabelled
    log_rows("credit", [("prediction", now - 70, _record("lab2", n=1))])  # labelled later
    feedback(["lab-0", "lab-1", "lab-2", "lab2-0"], [1, 0, 1, 1])
    log = PredictionLog("credit", max_rows=9)  # 4 labelled + 4 errors + 6 unlabelled = 14: 5 too many
    assert log.prune(now) == 4 + 2  # whole requests: the 4 errors, then the oldest unlabelled request (2 rows)
    kept = _log()
    assert [r.role for r in kept].count("error") == 0  # every error row went before any prediction
    assert [r.prediction_id for r in kept] == ["lab-0", "lab-1", "lab-2", "new1-0", "new1-1", "new2-0", "new2-1",
                                               "lab2-0"]
    # only labelled rows left over the cap: the oldest labelled go, with their labels (no orphans)
    assert PredictionLog("credit", max_rows=2).prune(now) == 4 + 3
    assert [r.prediction_id for r in _log()] == ["lab2-0"]
    assert sorted(_labelled()) == ["lab2-0"]


def _prune_statements(n_records: int, rows_each: int) -> tuple[int, int, int]:
    """Prune a log of ``n_records`` unlabelled records down to a fifth: (rows deleted, SQL statements run,
    the most parameters one statement took)."""
    from nbprod import state

    now = time.time()
    log_rows("credit", [("prediction", now - n_records + i, _record(f"n{n_records}-{i}", n=rows_each))
                        for i in range(n_records)])
    statements: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(len(parameters or ()))

    eng = state.engine()
    sa.event.listen(eng, "before_cursor_execute", count)
    try:
        deleted = PredictionLog("credit", max_rows=n_records * rows_each // 5).prune(now)
    finally:
        sa.event.remove(eng, "before_cursor_execute", count)
    kept = _log()
    assert deleted == len({r.request_id for r in kept} ^ {f"n{n_records}-{i}" for i in range(n_records)}) * rows_each
    assert [r.request_id for r in kept][0] == f"n{n_records}-{n_records - n_records // 5}"  # the newest fifth stays
    return deleted, len(statements), max(statements)


def test_pruning_runs_the_same_few_statements_however_many_records_go(db_url):
    """The database finds and deletes the oldest records itself: no id list travels through Python (the
    writer held the GIL for that, issue 13), so pruning 2,000 records costs the statements of 10."""
    few = _prune_statements(10, 3)
    with ensure_tables().begin() as conn:
        conn.execute(sa.delete(prediction_records))
    many = _prune_statements(2000, 3)
    assert (few[0], many[0]) == (24, 4800)
    assert many[1] == few[1] and many[2] <= 10, (few, many)


def test_refused_requests_are_counted_in_a_bounded_number_of_rows(db_url):
    from nbprod.monitoring.monitor import _health

    log = PredictionLog("credit", flush_s=0.05)
    hooks = log.hooks()
    hooks.on_prediction(_record("ok", n=1))
    for _ in range(5000):
        hooks.on_error({"version": None, "status": 401, "endpoint": "invocations", "latency_ms": 0.2})
    for _ in range(3):
        hooks.on_error({"version": None, "status": 413, "endpoint": "invocations", "latency_ms": 1.0})
    hooks.on_error({"version": "1", "status": 503, "endpoint": "invocations", "latency_ms": 9.0})
    assert log.flush(10)
    log.close()
    rows = _log()
    refused = [r for r in rows if r.role == "error" and r.status == 401]
    assert 1 <= len(refused) <= 3 and sum(r.n_rows for r in refused) == 5000  # one row per status and second
    assert sum(r.n_rows for r in rows if r.status == 413) == 3
    assert [(r.status, r.n_rows) for r in rows if r.status == 503] == [(503, 1)]  # a server error: its own row
    import pandas as pd

    frame = pd.DataFrame([{"role": r.role, "row_index": r.row_index, "status": r.status, "latency_ms": r.latency_ms,
                           "n_rows": r.n_rows, "ood": r.ood} for r in rows])
    health = _health(frame, 60.0, 1)  # the monitor counts every refused request, from the summary rows
    assert health["requests"][0] == 5005 and health["errors"][0] == 5004
    assert health["server_error_rate"][0] == pytest.approx(1 / 5005)


def test_pruning_gives_the_freed_pages_of_a_new_sqlite_state_db_back(nbprod_home):
    from nbprod import state

    now = time.time()
    log_rows("credit", [("prediction", now, _record(f"r{i}", n=500)) for i in range(400)])  # records are compact
    eng = state.engine()
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # INCREMENTAL on a file nbprod creates
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    assert PredictionLog("credit", max_rows=1000).prune(now) == 199_000
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() < pages / 100  # what 200 rows take: kept
        assert conn.exec_driver_sql("PRAGMA page_count").scalar() < pages / 10



def test_a_new_connection_reads_while_another_holds_the_write_lock(nbprod_home, monkeypatch):
    # setting auto_vacuum again on a file already INCREMENTAL rewrites its header: every new connection
    # waited for the write lock — 30 s, then "database is locked", for one opened inside a write transaction
    # (an alert check naming the deployment's model)
    from nbprod import state

    monkeypatch.setattr(state, "BUSY_TIMEOUT_MS", 500)  # the bug shows as an error at once, not after 30 s
    log_rows("credit", [("prediction", time.time(), _record("r0"))])
    state.dispose()  # no idle pooled connection: the reader below opens a new one
    with state.write_transaction():  # BEGIN IMMEDIATE: the write lock from the start
        with state.engine().connect() as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM prediction_records").scalar() == 1
            assert reader.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # still INCREMENTAL


def test_a_log_at_its_cap_keeps_the_pages_it_prunes_for_the_rows_it_writes_next(nbprod_home):
    # issue 13: giving the pruned pages back and growing the file again at once cost the writer a fifth of a prune
    from nbprod import state

    log = PredictionLog("credit", max_rows=200_000, prune_every_rows=20_000)
    now = time.time()
    log_rows("credit", [("prediction", now, _record(f"r{i}", n=1000)) for i in range(200)])  # at the cap
    log_rows("credit", [("prediction", now, _record(f"s{i}", n=1000)) for i in range(20)])  # prune_every_rows more
    with state.engine().connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    assert log.prune(now) == 20_000
    with state.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() > 0  # kept for the next rows
        assert conn.exec_driver_sql("PRAGMA page_count").scalar() == pages
    log_rows("credit", [("prediction", now, _record(f"t{i}", n=1000)) for i in range(20)])
    with state.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_count").scalar() <= pages  # the next rows reused them
    assert [r.request_id for r in _log()][::1000] == [f"r{i}" for i in range(20, 200)] + [f"s{i}" for i in range(20)] \
        + [f"t{i}" for i in range(20)]


def test_pruning_by_rows_deletes_the_oldest_records_whatever_their_sizes(nbprod_home):
    # the running sum reads a bounded stretch of records at a time (issue 13): the records deleted are the oldest
    now = time.time()
    sizes = [1, 1, 1, 300, 2, 1, 50, 1, 1, 1, 120, 3]
    log_rows("credit", [("prediction", now, _record(f"r{i}", n=n)) for i, n in enumerate(sizes)])
    assert PredictionLog("credit", max_rows=sum(sizes) - 303).prune(now) == 303  # r0..r3 (the 4th ends the excess)
    assert sorted({r.request_id for r in _log()}) == sorted(f"r{i}" for i in range(4, 12))
    assert PredictionLog("credit", max_rows=10).prune(now) == 2 + 1 + 50 + 1 + 1 + 1 + 120  # up to r10
    assert [(r.request_id, r.row_index) for r in _log()][::1] == [("r11", i) for i in range(3)]
    assert PredictionLog("credit", max_rows=1).prune(now) == 3 and _log() == []

# --- through a real server -------------------------------------------------------------------------


def _body(serving_models, start: int, n: int) -> dict:
    return {"dataframe_records": json.loads(serving_models["df"].iloc[start:start + n].to_json(orient="records"))}




def _refused_in_log() -> int:
    return sum(max(r.n_rows, 1) for r in _log() if r.role == "error")


def _flood(port: int, n: int, threads: int = 4) -> list[int]:
    statuses: list[int] = []
    body = json.dumps({"dataframe_records": [{"age": 1}]}).encode()

    def run(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(count):
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json",
                                                         "Authorization": "Bearer wrong"})
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        conn.close()

    workers = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    return statuses


@pytest.mark.slow
def test_a_wrong_token_flood_never_evicts_predictions_or_their_labels(serving_models, env):
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    save_spec("credit", DeploymentSpec("credit", [Route(serving_models["clf"], "1", 100, "stable")]))
    env = {**env, "NBPROD_PREDICTION_LOG_MAX_ROWS": "300"}
    with server(["--deployment", "credit", "--token", TOKEN], env) as port:
        ids: list[str] = []
        for start in range(0, 100, 20):
            status, _, data = request(port, "POST", "/invocations", _body(serving_models, start, 20), token=TOKEN)
            assert status == 200
            ids += json.loads(data)["prediction_ids"]
        labels = [int(v) for v in serving_models["y"].iloc[:100]]
        wait_until(lambda: len(_log()) == 100, 30, "100 rows in the log")  # written by the server's background writer
        status, _, data = request(port, "POST", "/feedback", {"prediction_ids": ids, "labels": labels}, token=TOKEN)
        assert status == 200 and json.loads(data)["stored"] == 100
        statuses = _flood(port, 2000)
        assert statuses.count(401) == 2000
        metrics = request(port, "GET", "/metrics")[2].decode()
        assert 'nbprod_requests_total{endpoint="invocations",status="401",version="none"} 2000.0' in metrics
        wait_until(lambda: _refused_in_log() >= 2000, 30, "2000 refusals counted")
        assert _refused_in_log() == 2000  # each refusal counted …
        errors = [r for r in _log() if r.role == "error"]
        assert len(errors) <= 60, f"{len(errors)} rows for 2000 refused requests"  # … in a few summary rows
        # real traffic past the cap: the unlabelled predictions and the errors go, the labelled stay
        for start in range(100, 300, 50):
            assert request(port, "POST", "/invocations", _body(serving_models, start, 50), token=TOKEN)[0] == 200
        for start in range(0, 200, 50):
            assert request(port, "POST", "/invocations", _body(serving_models, start, 50), token=TOKEN)[0] == 200
        wait_until(lambda: len(_log()) <= 300 + 100 and not any(r.role == "error" for r in _log()), 30,
                   "the log pruned of errors")
    kept = {r.prediction_id for r in _log()}
    assert set(ids) <= kept
    assert _labelled() == {i: str(v) for i, v in zip(ids, labels, strict=True)}


@pytest.mark.slow
def test_retention_keeps_up_with_the_writes_of_a_real_server(serving_models, env):
    """The cap holds while the server writes (within prune_every_rows), not only every 300 s."""
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    save_spec("credit", DeploymentSpec("credit", [Route(serving_models["clf"], "1", 100, "stable")]))
    env = {**env, "NBPROD_PREDICTION_LOG_MAX_ROWS": "200"}
    with server(["--deployment", "credit", "--no-auth"], env) as port:
        for i in range(30):  # 3,000 rows against a cap of 200
            status, _, data = request(port, "POST", "/invocations", _body(serving_models, (i * 100) % 200, 100))
            assert status == 200
            last = json.loads(data)["prediction_ids"][-1]
            if i % 10 == 9:  # written, and the log back under its cap + prune_every_rows (100) without a restart
                def caught_up(last: str = last) -> bool:
                    rows = _log()
                    return last in {r.prediction_id for r in rows} and len(rows) <= 200 + 100
                wait_until(caught_up, 30, "the log back under its cap of 200")
