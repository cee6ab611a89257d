"""The prediction log and feedback: background writer, drops, retention, late labels — SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import sqlalchemy as sa

from nbprod.errors import DataError
from nbprod.monitoring.feedback import feedback
from nbprod.monitoring.logread import rows as log_view
from nbprod.monitoring.predlog import PredictionLog, ensure_tables, feedback_table, log_rows, prediction_records


def _rows(deployment: str | None = None) -> list:
    """The log's rows as the per-row form held them (records expanded, :func:`nbprod.monitoring.logread.rows`)."""
    return log_view(deployment)


def _record(rid: str, n: int = 3, version: str = "1") -> dict:
    return {"request_id": rid, "version": version, "role": "stable", "n": n,
            "inputs": {"age": np.array([30.0, np.nan, 50.0][:n]), "city": ["paris", None, "nice"][:n]},
            "predictions": np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]][:n]), "ood": [[], ["age: missing"], []][:n],
            "latency_ms": 4.5}


def test_writer_logs_predictions_shadows_and_errors_in_batches(db_url):
    log = PredictionLog("credit", flush_s=0.05)
    hooks = log.hooks()
    hooks.on_prediction(_record("r1"))
    hooks.on_shadow({"request_id": "r1", "version": "2", "predictions": [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]})
    hooks.on_error({"version": None, "status": 400, "endpoint": "invocations", "latency_ms": 0.7})
    assert log.flush(10)
    log.close()
    rows = _rows("credit")
    assert [r.role for r in rows] == ["stable"] * 3 + ["shadow"] * 3 + ["error"]
    first = rows[0]
    assert first.prediction_id == "r1-0" and first.version == "1" and first.latency_ms == 4.5 and first.n_rows == 3
    assert json.loads(rows[1].inputs) == {"age": None, "city": None}  # NaN is stored as null, not NaN
    assert json.loads(rows[1].prediction) == [0.2, 0.8] and json.loads(rows[1].ood) == ["age: missing"]
    assert rows[0].ood is None
    assert rows[3].prediction_id is None and rows[3].request_id == "r1" and rows[3].inputs is None
    assert rows[6].status == 400 and rows[6].prediction_id is None
    assert log.stats()["written"] == 7 and log.stats()["dropped"] == 0


def test_the_writer_converts_a_batch_of_requests_at_once_to_the_rows_each_gives_alone(db_url):
    """The writer turns consecutive requests with the same columns into rows a column at a time across
    them; every row is byte for byte the row of that request converted on its own, also when the
    requests' arrays differ in dtype or kind, and an odd request fails alone (counted), not its batch."""
    def req(i: int) -> dict:
        n = 1 + i % 3
        rec = _record(f"b{i}", n=n)
        if i % 4 == 1:
            rec["inputs"]["age"] = np.array([31, 42, 53][:n])  # int64 among float64: not joined as floats
        if i % 4 == 2:
            rec["inputs"]["city"] = np.array(["lyon", "nantes", "brest"][:n])  # fixed-width text
        if i % 5 == 3:
            rec["predictions"] = np.array([1, 0, 1][:n])  # labels among probabilities
            rec["ood"] = None
        return rec

    records = [req(i) for i in range(12)]
    bad = _record("bad", n=2)
    bad["predictions"] = np.array([np.inf, 0.5])  # ±inf is not JSON: this request fails alone
    records.insert(5, bad)
    expected = "expected-" + str(time.time())
    log_rows(expected, [("prediction", 1.0, r) for r in records if r is not bad])  # one by one
    cols = ("request_id", "row_index", "prediction_id", "version", "role", "status", "latency_ms", "n_rows",
            "inputs", "prediction", "ood")
    want = [tuple(getattr(r, c) for c in cols) for r in _rows(expected)]
    with ensure_tables().begin() as conn:  # the prediction ids are unique: make room for the writer's rows
        conn.execute(sa.delete(prediction_records).where(prediction_records.c.deployment == expected))
    log = PredictionLog("batched", flush_s=60, batch_rows=10_000)
    for r in records:
        log.on_prediction(r)
    assert log.flush(10)
    log.close()
    assert log.stats()["dropped"] == 1 and "convert" in (log.last_error or ""), (log.stats(), log.last_error)
    got = [tuple(getattr(r, c) for c in cols) for r in _rows("batched")]
    assert got == want and len(got) == sum(1 + i % 3 for i in range(12))


def test_the_writer_works_in_short_stretches_and_gives_the_gil_away_between_them(db_url, monkeypatch):
    """A big batch is converted a slice at a time and inserted at most ``piece_records`` records per
    ``executemany``, with sleeps between (the server's event loop waits for the GIL the writer holds: issue
    13, p99), and the stored rows are the rows each request gives alone."""
    from nbprod import state

    records = [_record(f"s{i}", n=1 + i % 2) for i in range(700)]
    expected = "alone-" + str(time.time())
    log_rows(expected, [("prediction", 1.0, r) for r in records])
    cols = ("request_id", "row_index", "prediction_id", "inputs", "prediction", "ood")
    want = [tuple(getattr(r, c) for c in cols) for r in _rows(expected)]
    with ensure_tables().begin() as conn:  # the prediction ids are unique: make room for the writer's rows
        conn.execute(sa.delete(prediction_records).where(prediction_records.c.deployment == expected))
    inserts: list[int] = []
    sleeps: list[float] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO") and "prediction_records" in statement:
            inserts.append(len(parameters))

    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    monkeypatch.setattr(PredictionLog, "_yield_every_s", 0.0)  # every stretch, however fast this machine is
    eng = state.engine()
    sa.event.listen(eng, "before_cursor_execute", count)
    try:
        log = PredictionLog("stretches", flush_s=60, batch_rows=10_000)
        for r in records:
            log.on_prediction(r)
        assert log.flush(30)
        log.close()
    finally:
        sa.event.remove(eng, "before_cursor_execute", count)
    assert sum(inserts) == 700 and max(inserts) <= PredictionLog.piece_records and len(inserts) >= 3, inserts
    assert sleeps.count(PredictionLog.yield_s) >= len(inserts) + 1050 // PredictionLog.slice_rows
    assert [tuple(getattr(r, c) for c in cols) for r in _rows("stretches")] == want


def test_the_writer_counts_its_cpu_per_phase_in_stats_and_metrics(db_url):
    """What the log costs its server is seen, not guessed (issue 13): the writer thread's CPU per phase,
    in stats() and in the app's nbprod_prediction_log_cpu_seconds_total{phase}."""
    from nbprod.serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    log = PredictionLog("cpu", flush_s=0.05, max_rows=100)
    log.bind_cpu_counter(metrics.log_cpu)
    assert log.stats()["cpu_s"] == {"convert": 0.0, "insert": 0.0, "prune": 0.0}
    for i in range(60):
        log.on_prediction(_record(f"c{i}", n=3))  # 180 rows: the writer converts, inserts and prunes to 100
    assert log.flush(10)
    log.close()
    spent = log.stats()["cpu_s"]
    assert set(spent) == {"convert", "insert", "prune"} and all(v > 0 for v in spent.values()), spent
    for phase, seconds in spent.items():
        assert metrics.log_cpu.labels(phase)._value.get() == pytest.approx(seconds)
    assert 0 < len(_rows("cpu")) <= 100  # the prune ran: the log kept at most its cap


def test_overflow_drops_rows_counts_them_and_never_blocks(nbprod_home):
    from nbprod.serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    log = PredictionLog("credit", max_pending_rows=5, batch_rows=1000, flush_s=60)
    log.bind_counter(metrics.dropped_log_rows)
    t0 = time.perf_counter()
    for i in range(4):
        log.on_prediction(_record(f"r{i}", n=2))  # 2 fit (4 rows), then every request of 2 rows overflows
    assert time.perf_counter() - t0 < 5  # sanity bound only: nothing waited on the DB
    assert log.dropped == 4
    assert metrics.dropped_log_rows._value.get() == 4
    log.close()  # writes what was buffered
    assert len(_rows()) == 4

    unbound = PredictionLog("credit", max_pending_rows=1, flush_s=60)
    unbound.on_prediction(_record("a", n=1))
    with pytest.raises(OverflowError):  # the app's hook wrapper counts it in nbprod_dropped_log_rows_total
        unbound.on_prediction(_record("b", n=1))
    unbound.close()


def test_a_broken_database_drops_rows_but_never_raises_into_the_request(nbprod_home):
    log = PredictionLog("credit", db_url="nosuchdialect://x", flush_s=0.01)
    log.on_prediction(_record("r1"))
    deadline = time.monotonic() + 10
    while log.dropped < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert log.dropped == 3 and log.written == 0 and "ConfigError" in (log.last_error or "")


def test_hooks_keep_the_deploy_hooks_and_run_them_first(nbprod_home):
    from nbprod.serving.app import ServingHooks

    seen = []
    base = ServingHooks(on_prediction=lambda r: seen.append(("base", r["request_id"])), on_event=lambda k, i: None)
    log = PredictionLog("credit", flush_s=0.05)
    hooks = log.hooks(base)
    hooks.on_prediction(_record("r9", n=1))
    assert seen == [("base", "r9")] and hooks.on_event is base.on_event
    log.close()
    assert [r.prediction_id for r in _rows()] == ["r9-0"]


def test_retention_prunes_by_age_and_by_row_count(db_url):
    now = time.time()
    old = [("prediction", now - 40 * 86400, _record("old", n=2))]
    recent = [("prediction", now - 60 + i, _record(f"new{i}", n=2)) for i in range(5)]
    log_rows("credit", old + recent)
    log_rows("other", [("prediction", now - 40 * 86400, _record("o", n=1))])
    feedback(["old-0", "new0-0"], [1, 0])
    log = PredictionLog("credit", max_age_s=30 * 86400, max_rows=6)
    assert log.prune(now) == 2 + 4
    kept = _rows("credit")
    # new0 has a label: the unlabelled requests after it go first (issue 11), whole (a request is one record)
    assert [r.prediction_id for r in kept] == ["new0-0", "new0-1", "new3-0", "new3-1", "new4-0", "new4-1"]
    assert len(_rows("other")) == 1  # another deployment's rows are its own writer's business


def test_a_prune_does_not_write_back_the_pages_it_frees(nbprod_home):
    """SQLite (Debian builds it with SECURE_DELETE) zeroed and wrote every page a prune freed, doubling
    what a log at its cap writes (issue 13); nbprod's connections use ``secure_delete = FAST``."""
    import sqlite3

    rng = np.random.default_rng(0)
    big = [("prediction", time.time(), {"request_id": f"big{i}", "version": "1", "role": "stable", "n": 100,
                                          "inputs": {c: rng.normal(size=100) for c in "abcd"},
                                          "predictions": rng.normal(size=100), "ood": None, "latency_ms": 1.0})
           for i in range(60)]
    log_rows("big", big)
    path = str(nbprod_home / "nbprod.db")
    with ensure_tables().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 2  # FAST
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # the WAL empty before the prune
    log = PredictionLog("big", max_rows=3000, prune_every_rows=10_000)  # keeps its freed pages: no vacuum
    assert log.prune() == 3000
    freed = raw.execute("PRAGMA freelist_count").fetchone()[0]
    frames = max(0, (os.path.getsize(path + "-wal") - 32) // (4096 + 24))
    raw.close()
    assert freed >= 30 and frames < freed / 2, (freed, frames)  # SECURE_DELETE: a frame per freed page at least


def test_feedback_joins_by_id_reports_unknown_and_is_idempotent(db_url):
    log_rows("credit", [("prediction", time.time(), _record("r1")), ("prediction", time.time(), _record("r2"))])
    first = feedback(["r1-0", "r1-1", "nope-0"], [1, 0, 1])
    assert first.stored == ["r1-0", "r1-1"] and first.unknown == ["nope-0"] and not first.ok
    assert "nope-0" in str(first) and "unknown" in first._repr_html_()
    again = feedback(["r1-0", "r1-1"], np.array([1.0, 1]))  # 1.0 == 1: same label; r1-1 changes
    assert again.unchanged == ["r1-0"] and again.updated == [{"prediction_id": "r1-1", "old": 0, "new": 1}]
    assert again.ok and json.loads(json.dumps(again.to_dict()))["updated"][0]["new"] == 1
    with ensure_tables().connect() as conn:
        labels = dict(conn.execute(sa.select(feedback_table.c.prediction_id, feedback_table.c.label)).all())
    assert labels == {"r1-0": "1", "r1-1": "1"}


def test_feedback_refuses_bad_input_without_writing(nbprod_home):
    log_rows("credit", [("prediction", time.time(), _record("r1"))])
    with pytest.raises(DataError, match="2 prediction id"):
        feedback(["r1-0", "r1-1"], [1])
    # a label is named by its place and id (an empty cell of a labels CSV is NaN)
    with pytest.raises(DataError, match=r"label 2 \(for prediction id 'r1-1'\) is missing \(None, NaN or an empty"):
        feedback(["r1-0", "r1-1"], [1, float("nan")])
    with pytest.raises(DataError, match=r"label 1 \(for prediction id 'r1-0'\) is infinite"):
        feedback(["r1-0"], [float("-inf")])
    with pytest.raises(DataError, match=r"label 1 .* is a dict, not a number"):
        feedback(["r1-0"], [{"a": 1}])
    # an id no prediction can have is refused, and quoted short: a client's 10,000 characters are not echoed
    with pytest.raises(DataError, match="prediction id 2 .* is 10,000 characters long") as err:
        feedback(["r1-0", "x" * 10_000], [1, 1])
    assert len(str(err.value)) < 300
    with pytest.raises(DataError, match="twice"):
        feedback(["r1-0", "r1-0"], [1, 0])
    with ensure_tables().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar() == 0


def test_retention_limits_are_settings_of_the_server_and_take_the_feedback_along(db_url, monkeypatch, tmp_path):
    from nbprod.errors import ConfigError
    from nbprod.monitoring.predlog import MAX_AGE_ENV, MAX_ROWS_ENV, server_log
    from nbprod.serving.spec import StaticSource

    source = StaticSource.model(str(tmp_path / "credit"))  # never loaded: the log only needs its name
    monkeypatch.setenv(MAX_AGE_ENV, "2d")
    monkeypatch.setenv(MAX_ROWS_ENV, "3")
    log = server_log(source)
    assert (log.deployment, log.max_age_s, log.max_rows) == ("credit", 2 * 86400.0, 3)
    monkeypatch.setenv(MAX_AGE_ENV, "3600")
    log = server_log(source)
    assert (log.max_age_s, log.max_rows) == (3600.0, 3)
    for env, bad in [(MAX_AGE_ENV, "forever"), (MAX_AGE_ENV, "-1d"), (MAX_ROWS_ENV, "0"), (MAX_ROWS_ENV, "1.5")]:
        monkeypatch.setenv(env, bad)
        with pytest.raises(ConfigError, match=env):
            server_log(source)
        monkeypatch.setenv(env, "3600" if env == MAX_AGE_ENV else "3")
    # pruning by row count (and by age) deletes the feedback of the deleted predictions: no orphans
    now = time.time()
    log_rows("credit", [("prediction", now - 60 + i, _record(f"r{i}", n=2)) for i in range(3)])
    log_rows("credit", [("prediction", now - 7200, _record("old", n=1))])
    log_rows("credit", [("prediction", now - 30 + i, _record(f"u{i}", n=1)) for i in range(2)])
    feedback(["r0-0", "r0-1", "r1-0", "r2-1", "old-0"], [1, 0, 1, 0, 1])
    assert log.prune(now) == 1 + 2 + 4  # 8 rows left after the old one, cap 3: 5 too many, whole requests go
    kept = [r.prediction_id for r in _rows("credit")]
    assert kept == ["r2-0", "r2-1"]  # the unlabelled first (u0, u1), then the oldest labelled (r0, r1)
    with ensure_tables().connect() as conn:
        labelled = sorted(r[0] for r in conn.execute(sa.select(feedback_table.c.prediction_id)))
    assert labelled == ["r2-1"]


def test_feedback_bool_and_int_labels_are_one_label(db_url):
    log_rows("credit", [("prediction", time.time(), _record("r1"))])
    assert feedback(["r1-0", "r1-1"], [True, False]).stored == ["r1-0", "r1-1"]
    again = feedback(["r1-0", "r1-1", "r1-2"], [1, 0.0, np.True_])  # a retry from a CSV / numpy column
    assert again.unchanged == ["r1-0", "r1-1"] and again.updated == [] and again.stored == ["r1-2"]
    changed = feedback(["r1-0"], [False])
    assert changed.updated == [{"prediction_id": "r1-0", "old": 1, "new": 0}]


def test_retention_limits_come_from_the_project_settings_too(nbprod_home, tmp_path, monkeypatch):
    """prediction_log_max_age / _max_rows are nbprod options: [tool.nbprod], %config, NBPROD_…"""
    from nbprod.config import settings
    from nbprod.errors import ConfigError
    from nbprod.monitoring.predlog import MAX_ROWS_ENV, retention
    from nbprod.monitoring.windows import parse_duration

    assert retention() == {"max_age_s": 30 * 86400.0, "max_rows": 1_000_000}
    (tmp_path / "pyproject.toml").write_text(
        '[tool.nbprod]\nprediction_log_max_age = "12h"\nprediction_log_max_rows = 500\n')
    monkeypatch.chdir(tmp_path)
    assert retention() == {"max_age_s": 12 * 3600.0, "max_rows": 500}
    settings.set(prediction_log_max_rows=7)
    assert retention()["max_rows"] == 7
    settings.reset()
    monkeypatch.setenv(MAX_ROWS_ENV, "many")
    with pytest.raises(ConfigError, match=f"{MAX_ROWS_ENV}='many' in the environment"):
        retention()
    assert parse_duration("60") == parse_duration(60) == 60.0 and parse_duration("1e3") == 1000.0  # seconds as text
