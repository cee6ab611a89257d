"""Retraining that closes the loop, end to end (issue 15): drifted traffic → alert → retraining job →
evaluate → canary → promote, with the audit log showing the chain.

Real everything: ``nbprod deploy … --on-alert 'drift_share > 0.1' retrain.yaml`` (a CLI process) starts a
detached uvicorn server on 127.0.0.1 whose alert loop checks every 0.3 s; the test sends it the credit
data with nbprod.datasets' documented ``income`` shift; the rule fires once and the real webhook
receiver's message names the retraining run; that run (its own ``nbprod pipeline resume`` process) takes
the alert's window as parameters, checks the window's logged inputs for drift, runs the shipped
``notebooks/train.ipynb`` through papermill, evaluates the challenger against the live @champion on a
labelled drifted holdout, registers it, canaries it on the deployment's own traffic (the test keeps
sending it) and promotes it.

The gate passes honestly: the champion is a poor model (fitted on shuffled labels, as in
tests/test_pipeline.py), the challenger a real one; both are scored on the same holdout by the
evaluate verb. The window's inputs carry no labels, so the notebook trains on fresh labelled rows (its
``n_rows``/``seed``), as the shipped pipeline does; the window's rows feed the drift step.
Bounded: the canary holds for 10 of its own requests; every wait polls with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from pathlib import Path

import pytest
from _registry_helpers import poor_champion
from _servers import NBPROD, receiver, request, wait_until
from conftest import kill_recorded_servers

ROOT = Path(__file__).resolve().parents[1]
RULE = "drift_share > 0.1"  # the income shift moves 1 of the model's 8 input columns (0.125)

PIPELINE = """\
name: retrain-on-drift
params:
  deployment: none          # the alert fills these: the alerting deployment,
  alert_rule: none          # its rule,
  window_start: none        # its window,
  window_end: none
  data: none                # and the window's logged inputs (a parquet file)
  holdout: holdout.parquet  # labelled drifted rows, beside this file (the runner works in its folder)
steps:
  drift:                    # the window's rows against the champion's training profile (recorded)
    verb: drift
    reference: credit-risk@champion
    current: ${{params.data}}
  train:                    # the shipped training notebook, a tracked papermill job; registers a version
    notebook: {notebook}
    parameters:
      n_rows: 1500
      seed: 3
      model_name: credit-risk
    outputs: [model_uri, metrics.roc_auc]
  evaluate:                 # the challenger must beat the live champion on labelled drifted rows
    verb: evaluate
    model: ${{train.model_uri}}
    data: ${{params.holdout}}
    label: default
    against: "@champion"
    thresholds:
      roc_auc:
        min_absolute_change: 0.05
  register:
    verb: register
    after: [evaluate]
    model: ${{train.model_uri}}
    alias: challenger
  canary:                   # half the alerting deployment's traffic; gates on its own live figures
    verb: canary
    model: ${{register.model_uri}}
    deployment: ${{params.deployment}}
    percent: 50
    hold:
      requests: 10
      timeout: 600
    gates:
      p95_ms: 10000         # a loaded 2-core machine: the gate is on errors, latency only loosely
      error_rate: 0.05
  promote:
    verb: promote
    deployment: ${{canary.deployment}}
"""


@contextlib.contextmanager
def _drifted_traffic(port: int):
    """Requests of 10 rows of the income-shifted credit data, sent until the block ends; yields the count."""
    from nbprod.datasets import credit

    X, _ = credit(1000, 7, shift="income")
    bodies = [{"dataframe_records": json.loads(X.iloc[i:i + 10].to_json(orient="records"))}
              for i in range(0, len(X), 10)]
    stop, sent = threading.Event(), {"ok": 0, "other": []}

    def send() -> None:
        i = 0
        while not stop.is_set():
            try:
                status = request(port, "POST", "/invocations", bodies[i % len(bodies)])[0]
            except OSError as exc:  # a server being restarted for the canary: the next request retries
                sent["other"].append(repr(exc))
                stop.wait(0.2)
                continue
            if status == 200:
                sent["ok"] += 1
            else:
                sent["other"].append(status)
            i += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(timeout=60)


def _ended(run_id: str) -> bool:
    from nbprod import state
    from nbprod.pipelines import get_run, store

    with state.connect() as conn:
        held = store.holder(conn, "retrain-on-drift")
    return get_run(run_id).status not in ("QUEUED", "RUNNING") and held is None


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_drifted_traffic_alerts_and_the_retraining_pipeline_trains_evaluates_canaries_and_promotes(
        nbprod_home, env, tmp_path):
    from nbprod import deployments
    from nbprod.audit import history
    from nbprod.datasets import credit
    from nbprod.pipelines import get_run
    from nbprod.pipelines import store as pipeline_store
    from nbprod.registry.store import client

    assert str(poor_champion().version) == "1"
    folder, elsewhere = tmp_path / "retraining", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    hx, hy = credit(1500, 2, shift="income")
    hx.assign(default=hy).to_parquet(folder / "holdout.parquet")
    retrain = folder / "retrain.yaml"
    retrain.write_text(PIPELINE.format(notebook=ROOT / "notebooks" / "train.ipynb"))

    with contextlib.ExitStack() as stack:
        stack.callback(kill_recorded_servers)
        url, received = stack.enter_context(receiver())
        # deployed from another folder: the server works there, the retraining run in the file's folder
        done = subprocess.run([NBPROD, "deploy", "credit-risk@champion", "--name", "credit", "--no-auth",
                               "--alert-interval", "0.3", "--on-alert", RULE, str(retrain)],
                              cwd=elsewhere, env={**env, "NBPROD_ALERT_WEBHOOK": url},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        row = deployments.status("credit")["credit"]
        assert row.alerts["on_alert"] == {RULE: str(retrain)}
        # what the JupyterLab sidebar's API answers (nbprod.jupyter: status(health=True).to_dict()) has them
        listed = deployments.status(health=True).to_dict()["deployments"]
        assert [d["alerts"]["on_alert"] for d in listed if d["name"] == "credit"] == [{RULE: str(retrain)}]
        port = int(row.url.rstrip("/").rsplit(":", 1)[1])

        sent = stack.enter_context(_drifted_traffic(port))
        msg = wait_until(lambda: received and received[0], 240, "the drift alert's webhook post")
        assert RULE in msg["text"] and "Retraining: pipeline retrain-on-drift run" in msg["text"], msg
        run_id = msg["text"].split("Retraining: pipeline retrain-on-drift run ", 1)[1].split()[0]
        wait_until(lambda: _ended(run_id), 900, "the retraining run to end")
        log = (nbprod_home / "pipelines" / f"{run_id}.log")
        run = get_run(run_id)
        assert run.status == "FINISHED", f"{run}\n{log.read_text() if log.exists() else ''}"
        assert sent["ok"] > 0

    # the new version serves all of the deployment's traffic and is the champion
    import nbprod

    assert str(nbprod.get_version("credit-risk@champion").version) == "2"
    routes = deployments.store.read("credit")[0].routes
    assert [(r.version, r.role) for r in routes] == [("2", "stable")]
    # the run: every step done, the alert's window as its parameters, its tags naming the alert
    assert [s["status"] for s in run.steps] == ["done"] * 6
    assert run.params["deployment"] == "credit" and run.params["alert_rule"] == RULE
    assert run.params["window_start"] < run.params["window_end"] and Path(run.params["data"]).exists()
    assert run.outputs("drift")["drift_share"] > 0.1  # the window's rows, tested again in the run
    evaluated = run.outputs("evaluate")
    assert evaluated["ok"] and evaluated["champion"].endswith("/1") and evaluated["candidate"].endswith("/2")
    tags = client().get_run(run_id).data.tags
    assert tags["nbprod.trigger"] == "alert" and tags["nbprod.alert_rule"] == RULE
    assert tags["nbprod.alert_deployment"] == "credit"
    assert [r["run_id"] for r in pipeline_store.list_runs("retrain-on-drift")] == [run_id]  # the alert fired once
    assert sum("Retraining" in m["text"] for m in received) == 1

    # the audit log shows the chain, in order, naming the same deployment and run
    entries = list(reversed(history().entries))  # oldest first
    started = [i for i, e in enumerate(entries) if e.action == "alert.pipeline"]
    assert len(started) == 1
    fired = entries[started[0]].details
    assert fired["status"] == "started" and fired["run_id"] == run_id and fired["deployment"] == "credit"
    assert fired["rule"] == RULE and fired["value"] > 0.1
    chain = [e.action for e in entries[started[0]:] if e.details.get("run_id") == run_id]
    assert chain == ["alert.pipeline", "pipeline.drift", "pipeline.notebook", "pipeline.evaluate",
                     "pipeline.register", "pipeline.canary", "pipeline.promote", "pipeline.run"], chain
    # the deployment's own rows between them: the canary of v2 on `credit`, then its promotion
    after = [(e.action, e.details.get("mode"), e.model_uri) for e in entries[started[0]:]
             if e.details.get("deployment") == "credit" and e.action in ("deploy", "promote", "rollback")]
    assert after == [("deploy", "canary", "models:/credit-risk/2"), ("promote", None, "models:/credit-risk/2")], after
