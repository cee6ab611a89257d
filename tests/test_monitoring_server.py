"""End to end through a real server (uvicorn on 127.0.0.1): predictions are logged, feedback is posted,
and monitor() reports realised accuracy, error rate and drift against the version's training profile."""

from __future__ import annotations

import json
import time

import pytest
from _servers import request, server

pytestmark = pytest.mark.slow  # starts `nbprod serve` (real uvicorn)

TOKEN = "tok-mon"


def _logged(n: int, timeout: float = 15.0) -> int:
    from nbprod.monitoring.logread import rows

    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = len(rows())  # one per predicted row (a request is one record)
        if count >= n:
            return count
        time.sleep(0.1)
    return count


def test_predictions_feedback_and_monitor_through_a_real_server(serving_models, env):
    from nbprod.data.profile import profile
    from nbprod.monitoring.monitor import monitor
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    df, y = serving_models["df"], serving_models["y"]
    path = serving_models["proba"]  # an unregistered model dir: its training profile is passed as reference=
    reference = env["NBPROD_HOME"] + "/profile.json"
    from pathlib import Path

    Path(reference).parent.mkdir(parents=True, exist_ok=True)
    Path(reference).write_text(profile(df).to_json(), encoding="utf-8")
    save_spec("credit", DeploymentSpec("credit", [Route(path, "1", 100, "stable")]))
    ids, labels = [], []
    with server(["--deployment", "credit", "--token", TOKEN], env) as port:
        for start in range(0, 200, 20):
            chunk = df.iloc[start:start + 20]
            body = {"dataframe_records": json.loads(chunk.to_json(orient="records"))}
            status, _, data = request(port, "POST", "/invocations", body, token=TOKEN)
            assert status == 200
            ids += json.loads(data)["prediction_ids"]
            labels += [int(v) for v in y.iloc[start:start + 20]]
        assert request(port, "POST", "/invocations", {"bad": 1}, token=TOKEN)[0] == 400  # an error row
        assert _logged(201) == 201  # 200 rows + 1 failed request, written by the background writer
        # feedback: auth like every endpoint; unknown ids are reported back
        fb = {"prediction_ids": ids + ["nope-0"], "labels": labels + [1]}
        assert request(port, "POST", "/feedback", fb)[0] == 401
        status, _, data = request(port, "POST", "/feedback", fb, token=TOKEN)
        answer = json.loads(data)
        assert status == 200 and answer["stored"] == 200 and answer["unknown"] == ["nope-0"] and not answer["ok"]
        relabel = {"prediction_ids": ids[:1], "labels": [1 - labels[0]]}
        status, _, data = request(port, "POST", "/feedback", relabel, token=TOKEN)
        assert status == 200 and json.loads(data)["updated"][0]["prediction_id"] == ids[0]
        status, _, data = request(port, "POST", "/feedback", {"labels": [1]}, token=TOKEN)
        assert status == 400 and json.loads(data)["error"] == "bad_feedback"
        # a bad label: the same stable code (it was the class name, "DataError"), the message says what
        missing = {"prediction_ids": ids[:1], "labels": [None]}
        status, _, data = request(port, "POST", "/feedback", missing, token=TOKEN)
        refused = json.loads(data)
        assert status == 400 and refused["error"] == "bad_feedback" and "missing" in refused["message"]
        huge = {"prediction_ids": ["x" * 10_000], "labels": [1]}  # refused, not echoed back whole
        status, _, data = request(port, "POST", "/feedback", huge, token=TOKEN)
        assert status == 400 and json.loads(data)["error"] == "bad_feedback" and len(data) < 500
        scraped = request(port, "GET", "/metrics")[2].decode()
        assert "nbprod_dropped_log_rows_total 0.0" in scraped
        spent = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                 if line.startswith("nbprod_prediction_log_cpu_seconds_total{")}
        assert set(spent) == {"convert", "insert", "prune"} and spent["convert"] > 0 and spent["insert"] > 0, spent
    report = monitor("credit", window="1h", since="2h", min_rows=50, reference=reference)
    accuracy, status, window = report.latest("accuracy")
    assert status == "ok" and 0.6 < accuracy <= 1.0
    assert report.latest("roc_auc")[1] == "ok"
    assert report.latest("error_rate")[0] == pytest.approx(1 / 11)
    assert report.latest("p95_ms")[0] > 0
    assert report.last_drift is not None and report.last_drift.reference == "profile profile.json"


def test_latency_gate_traffic_is_logged_as_gate_and_left_out_of_the_monitor(serving_models, env):
    """The gate's test requests are not production traffic (issue 12, point 3): the monitor counted
    them, and showed the canary's version as "first seen" before the canary started."""
    from collections import Counter

    from nbprod.deployments.gate import _datatype, measure
    from nbprod.monitoring.logread import rows
    from nbprod.monitoring.monitor import monitor
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    df = serving_models["df"]
    save_spec("credit", DeploymentSpec("credit", [Route(serving_models["proba"], "1", 100, "stable")]))
    complete = df.dropna().head(10)
    bodies = [{"inputs": [{"name": str(c), "shape": [1], "datatype": _datatype(complete[c].iloc[i:i + 1]),
                           "data": json.loads(complete[c].iloc[i:i + 1].to_json(orient="values"))}
                          for c in complete.columns]} for i in range(len(complete))]
    with server(["--deployment", "credit", "--token", TOKEN], env) as port:
        for start in range(0, 40, 10):  # production: 4 requests, 40 rows
            body = {"dataframe_records": json.loads(df.iloc[start:start + 10].to_json(orient="records"))}
            assert request(port, "POST", "/invocations", body, token=TOKEN)[0] == 200
        figures = measure("127.0.0.1", port, "credit", "1", bodies, token=TOKEN, requests=20)
        assert figures.requests == 20
        assert _logged(40 + 25) == 65  # the gate sends 5 warm-up requests more than it measures
    assert dict(Counter(r.role for r in rows())) == {"stable": 40, "gate": 25}
    report = monitor("credit", window="1h", since="2h", min_rows=5)
    assert report.latest("requests")[0] == 4 and report.latest("rows")[0] == 40
    assert any("25 latency-gate test request(s) left out" in n for n in report.notes)
    counted = monitor("credit", window="1h", since="2h", min_rows=5, include_gate=True)
    assert counted.latest("requests")[0] == 29 and counted.latest("rows")[0] == 65
