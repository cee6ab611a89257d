"""Retraining that closes the loop from an alert (issue 15, part 5): `nbprod serve --on-alert RULE FILE`.

A real uvicorn server's alert loop sees its error rate fire, starts the pipeline once for the
incident with the alert's window as parameters, and the real webhook receiver's message names the
run; the run finishes in its own process and the audit log shows the chain. Then the guards, on
the real state DB and real runner processes: never two runs at once, a cooldown, once per incident.
"""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest
from _monitoring_helpers import ALERT_PIPELINE as PIPELINE
from _monitoring_helpers import hour_start, traffic
from _servers import NBPROD, receiver, request, server, wait_until


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "retrain.yaml"
    path.write_text(PIPELINE)
    return path


def _runs(name: str = "retrain-on-alert") -> list[dict]:
    from nbprod.pipelines import store

    return store.list_runs(name)


def _entries() -> list:
    from nbprod.audit import history

    return list(reversed(history().entries))  # oldest first


@pytest.mark.slow
def test_an_error_rate_alert_starts_the_pipeline_once_and_the_webhook_names_its_run(
        serving_models, env, stack, pipeline_file):
    url, received = stack.enter_context(receiver())
    env = {**env, "NBPROD_ALERT_WEBHOOK": url, "NBPROD_ALERT_INTERVAL": "0.3"}
    # the on-alert rule is the loop's only rule: --on-alert adds it
    port = stack.enter_context(server(["--model-dir", serving_models["clf"], "--no-auth",
                                       "--on-alert", "error_rate > 20%", str(pipeline_file)], env))
    name = serving_models["clf"].rstrip("/").split("/")[-1]  # a --model-dir server logs under its directory's name
    good = {"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))}
    assert [request(port, "POST", "/invocations", good)[0] for _ in range(6)] == [200] * 6
    bad = [request(port, "POST", "/invocations", {"dataframe_records": "not rows"})[0] for _ in range(6)]
    assert all(400 <= s < 500 for s in bad)

    msg = wait_until(lambda: received and received[0], 120, "the alert's webhook post")
    assert "error_rate > 20%" in msg["text"] and "Retraining: pipeline retrain-on-alert run" in msg["text"]
    run_id = msg["text"].split("Retraining: pipeline retrain-on-alert run ", 1)[1].split()[0]

    from nbprod.pipelines import get_run

    run = wait_until(lambda: (r := get_run(run_id)).status not in ("QUEUED", "RUNNING") and r, 180,
                     "the retraining run to end")
    assert run.status == "FINISHED", str(run)
    # the alert's window as the pipeline's parameters, its logged inputs as the data
    assert run.params["deployment"] == name and run.params["alert_rule"] == "error_rate > 20%"
    assert run.params["window_start"] < run.params["window_end"]
    import pandas as pd

    data = pd.read_parquet(run.params["data"])
    assert 0 < len(data) <= 12 and set(data.columns) == set(serving_models["df"].columns)
    # the audit log shows the chain: the alert started the run, its step, its end
    entries = _entries()
    started = [e for e in entries if e.action == "alert.pipeline" and e.details.get("run_id") == run_id]
    chain = [e.action for e in entries if e.details.get("run_id") == run_id]
    assert len(started) == 1 and started[0].details["status"] == "started"
    assert chain == ["alert.pipeline", "pipeline.wait", "pipeline.run"]

    # the loop keeps checking the firing rule: no second run, no second post for the same incident
    from _monitoring_helpers import alert_rows

    seen: set = set()

    def checked_three_more_times() -> bool:
        seen.update(r.updated_at for r in alert_rows(name))
        return len(seen) >= 4

    wait_until(checked_three_more_times, 120, "three more checks")
    assert [r["run_id"] for r in _runs()] == [run_id] and len(received) == 1


@pytest.mark.slow
def test_a_bad_on_alert_stops_serve_before_it_starts(serving_models, env, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  a: {verb: nosuch}\n")
    for flags, says in [(["--on-alert", "error_rate > 20%", str(broken)], "nosuch"),
                        (["--on-alert", "errors_rat > 20%", str(broken)], "unknown metric"),
                        (["--on-alert", "error_rate > 20%", str(tmp_path / "missing.yaml")], "missing.yaml")]:
        done = subprocess.run([NBPROD, "serve", "--model-dir", serving_models["clf"], "--no-auth", "--port", "1",
                               *flags], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr, done.stderr


def _window(now: float) -> dict:
    return {"start": now - 3600, "end": now}


def _finished(run_id: str) -> bool:
    """The run ended and its runner let go of the pipeline's lock (it releases it right after)."""
    from nbprod import state
    from nbprod.pipelines import get_run, store

    with state.connect() as conn:
        held = store.holder(conn, "retrain-on-alert")
    return get_run(run_id).status not in ("QUEUED", "RUNNING") and held is None


@pytest.mark.slow  # starts real runner processes
def test_never_two_runs_at_once_and_a_cooldown(nbprod_home, pipeline_file):
    import time

    from nbprod.pipelines import store
    from nbprod.pipelines.trigger import start

    now = time.time()
    kw = {"deployment": "credit", "rule": "error_rate > 20%", "value": 0.5, "window": _window(now)}
    # a runner holds the pipeline (here: this process, as `nbprod pipeline run` would): nothing starts
    store.acquire("retrain-on-alert", "r-manual")
    try:
        held = start(pipeline_file, cooldown=0, **kw)
    finally:
        store.release("retrain-on-alert")
    assert not held.started and "in progress" in held.reason and _runs() == []
    first = start(pipeline_file, cooldown=0, **kw)
    assert first.started, first.reason
    # while it is queued or running, a second firing starts nothing
    second = start(pipeline_file, cooldown=0, **kw)
    assert not second.started and first.run_id in second.reason
    wait_until(lambda: _finished(first.run_id), 180, "the first run to end")
    assert [r["status"] for r in _runs()] == ["FINISHED"]
    # ended, but within the cooldown: nothing starts; after it (cooldown 0) a new incident starts a run
    cooled = start(pipeline_file, cooldown="1h", **kw)
    assert not cooled.started and "cooldown" in cooled.reason
    third = start(pipeline_file, cooldown=0, **kw)
    assert third.started and third.run_id != first.run_id
    wait_until(lambda: _finished(third.run_id), 180, "the third run to end")
    rows = [e.details for e in _entries() if e.action == "alert.pipeline"]
    assert [d["status"] for d in rows] == ["not started", "started", "not started", "not started", "started"]


def test_a_firing_while_a_runner_starts_says_so_without_run_none(nbprod_home, pipeline_file):
    """A runner takes the lock before its run id exists: the reason names its process, not "run None"."""
    import os
    import time

    from nbprod.pipelines import store
    from nbprod.pipelines.trigger import start

    store.acquire("retrain-on-alert", None)
    try:
        held = start(pipeline_file, cooldown=0, deployment="credit", rule="error_rate > 20%", value=0.5,
                     window=_window(time.time()))
    finally:
        store.release("retrain-on-alert")
    assert not held.started and _runs() == []
    assert held.reason == f"a run of it is in progress (process {os.getpid()}); not started twice"


@pytest.mark.slow  # a real server and its traffic (about a minute)
def test_on_fire_is_called_once_per_incident_and_its_line_joins_the_message(nbprod_home, stack):
    from nbprod.monitoring.alerts import check_deployment

    traffic("credit", start=hour_start(2), hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    url, received = stack.enter_context(receiver())
    calls = []

    def on_fire(deployment, rule, value, window):
        calls.append((deployment, rule.text, value, window["start"] < window["end"]))
        return "Retraining: pipeline p run abc started"

    first = check_deployment("credit", ["p95_ms > 100", "p95_ms > 1000"], webhook=url, on_fire=on_fire)
    assert calls == [("credit", "p95_ms > 100", 250.0, True)]
    assert first.alerts.firing[0].action == "Retraining: pipeline p run abc started"
    assert received[0]["text"].endswith("Retraining: pipeline p run abc started")
    # the same incident, checked again: no second call; a failing hook never stops the check
    check_deployment("credit", "p95_ms > 100", webhook=url, on_fire=on_fire)
    assert len(calls) == 1 and len(received) == 1

    def broken(*_):
        raise RuntimeError("boom")

    again = check_deployment("credit", "p95_ms > 200", webhook=url, on_fire=broken)
    assert again.alerts.firing[0].action == "on-alert action failed: RuntimeError: boom"
    assert len(received) == 2 and "boom" in received[1]["text"]


@pytest.mark.slow  # CLI processes and a real runner process
def test_monitor_check_on_alert_starts_the_pipeline_from_cron_once_per_incident(nbprod_home, env, pipeline_file):
    traffic("credit", start=hour_start(2), hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    cmd = [NBPROD, "monitor", "credit", "--check", "--on-alert", "p95_ms > 100", str(pipeline_file)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # a rule fires: exit 1, as for --check alone
    assert "p95_ms > 100: Retraining: pipeline retrain-on-alert run " in done.stdout, done.stdout
    run_id = done.stdout.split("Retraining: pipeline retrain-on-alert run ", 1)[1].split()[0]
    wait_until(lambda: _finished(run_id), 180, "the run to end")
    import pandas as pd

    from nbprod.pipelines import get_run

    run = get_run(run_id)
    assert run.status == "FINISHED" and run.params["deployment"] == "credit"
    assert len(pd.read_parquet(run.params["data"])) == 60  # the window's logged rows
    # the next cron check finds the same incident: nothing new starts
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "Retraining" not in again.stdout and len(_runs()) == 1
    refused = subprocess.run([NBPROD, "monitor", "credit", "--on-alert", "p95_ms > 100", str(pipeline_file)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "needs --check" in refused.stderr


def test_a_deployment_never_inherits_the_deployers_on_alert_pipelines(nbprod_home, monkeypatch):
    """A deployment's server gets only the rule -> pipeline pairs recorded with it (here none), never the
    ones of whoever happened to deploy or restore it (tests/test_deploy_on_alert.py: recorded ones)."""
    from nbprod.deployments import process

    monkeypatch.setenv("NBPROD_ALERT_PIPELINES", json.dumps({"error_rate > 0.1": "/abs/pipeline.yaml"}))
    assert "NBPROD_ALERT_PIPELINES" not in process._child_env({"rules": ["error_rate > 0.1"], "interval_s": 60,
                                                                "window": "1h"})
