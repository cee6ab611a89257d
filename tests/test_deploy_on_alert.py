"""Retraining from a deployment's own alert loop: ``nbprod deploy … --on-alert RULE PIPELINE``.

The rule → pipeline pairs are recorded with the deployment's alert settings (state DB), so the
server started by the deploy, a restart (``--restore``) and a promote keep them; the shell's
``NBPROD_ALERT_PIPELINES`` never reaches a deployed server. End to end on real detached uvicorn
servers on 127.0.0.1, a real webhook receiver and real ``nbprod pipeline resume`` runner processes;
the pipeline is one cheap ``wait`` step (as in tests/test_pipeline_alert.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from html import escape
from pathlib import Path

import pytest
from _monitoring_helpers import ALERT_PIPELINE as PIPELINE
from _monitoring_helpers import alert_rows
from _registry_helpers import pipeline
from _servers import NBPROD, receiver, request, wait_until
from conftest import kill_recorded_servers, sigkill

from nbprod.errors import ConfigError, PipelineError, RuleError

RULE = "error_rate > 20%"


@pytest.fixture
def pipeline_file(tmp_path) -> Path:
    path = tmp_path / "retrain.yaml"
    path.write_text(PIPELINE)
    return path


# --- refused before anything is deployed -------------------------------------------------------

@pytest.mark.parametrize("on_alert, error, fragment", [
    ({"errors_rat > 20%": "retrain.yaml"}, RuleError, "unknown metric"),
    ({RULE: "missing.yaml"}, PipelineError, "no pipeline file"),
    ({RULE: "broken.yaml"}, PipelineError, "nosuch"),
    ([(RULE,)], ConfigError, "a rule and a pipeline file"),
    ("error_rate > 20% retrain.yaml", ConfigError, "must map alert rules to pipeline files"),
])
def test_a_bad_on_alert_is_a_typed_error_and_nothing_is_deployed(nbprod_home, tmp_path, pipeline_file, monkeypatch,
                                                                   on_alert, error, fragment):
    from nbprod.deployments import deploy, store

    (tmp_path / "broken.yaml").write_text("name: x\nsteps:\n  a: {verb: nosuch}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as info:
        deploy("credit-risk@champion", name="bad", on_alert=on_alert)  # checked before the model is looked up
    assert fragment in str(info.value) and info.value.fix
    assert store.read("bad") is None and not (nbprod_home / "deployments" / "bad").exists()


def test_a_bad_on_alert_from_the_cli_and_the_magic(nbprod_home, env, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from nbprod.deployments import store

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  a: {verb: nosuch}\n")
    done = subprocess.run([NBPROD, "deploy", "credit-risk@champion", "--name", "bad", "--on-alert", RULE,
                           str(tmp_path / "missing.yaml")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing.yaml" in done.stderr, done.stderr
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    try:
        with pytest.raises(PipelineError, match="nosuch"):
            shell.run_line_magic("nbprod", f"deploy credit-risk@champion --name bad --on-alert '{RULE}' {broken}")
        with pytest.raises(Exception, match="pass one of them"):
            shell.run_line_magic("nbprod", f"deploy credit-risk@champion --no-alerts --on-alert '{RULE}' {broken}")
        with pytest.raises(Exception, match="on-alert pipelines"):
            shell.run_line_magic("nbprod", f"deploy --restore --on-alert '{RULE}' {broken}")
    finally:
        shell.run_line_magic("unload_ext", "nbprod")
    assert store.read("bad") is None


def test_a_deployed_server_gets_its_recorded_pipelines_never_the_shells(nbprod_home, monkeypatch):
    from nbprod.deployments import process

    monkeypatch.setenv("NBPROD_ALERT_PIPELINES", json.dumps({"p95_ms > 1": "/shell/pipeline.yaml"}))
    env = process._child_env({"rules": [], "interval_s": 5.0, "window": "1h",
                              "on_alert": {RULE: "/recorded/retrain.yaml"}})
    assert json.loads(env["NBPROD_ALERT_PIPELINES"]) == [[RULE, "/recorded/retrain.yaml"]]
    assert env["NBPROD_ALERT_RULES"] == "" and env["NBPROD_ALERT_INTERVAL"] == "5.0"
    assert "NBPROD_ALERT_PIPELINES" not in process._child_env(None)  # a gate server: none


def test_a_later_deploy_keeps_replaces_or_removes_the_recorded_pipelines(nbprod_home, tmp_path, pipeline_file):
    """What a deploy call records (:func:`alerting.merge`) and when a running server must restart to apply it."""
    from nbprod.deployments import alerting

    other = tmp_path / "other.yaml"
    other.write_text(PIPELINE)
    first = alerting.merge(alerting.given(None, {RULE: str(pipeline_file)}), None)
    assert first == {"rules": [], "interval_s": 60.0, "window": "1h", "on_alert": {RULE: str(pipeline_file)}}
    # no on_alert given (a canary, new rules): kept; rules=[] removes the rules only
    kept = alerting.merge(alerting.given(alerting.AlertSettings(rules=["p95_ms > 100"])), first)
    assert kept["on_alert"] == first["on_alert"] and kept["rules"] == ["p95_ms > 100"]
    assert alerting.merge(alerting.given(alerting.AlertSettings(rules=[])), kept)["on_alert"] == first["on_alert"]
    # another file for the rule: a change the running server applies when it restarts (pending)
    moved = alerting.merge(alerting.given(None, [(RULE, str(other))]), first)
    assert moved["on_alert"] == {RULE: str(other)} and alerting.key(moved) != alerting.key(first)
    view = alerting.view({"alerts": moved, "alerts_server": alerting.served(first, None)})
    assert view["on_alert"] == {RULE: str(other)} and view["pending"] is True
    # {} removes them; with no rules left there is no alert loop at all
    assert alerting.merge(alerting.given(None, {}), first) is None


# --- end to end: deploy, fire, restore, promote --------------------------------------------------

def _kill_9(pid: int) -> None:
    from nbprod.deployments import process

    workers = process.children(pid)
    os.killpg(pid, signal.SIGKILL)
    for p in workers:
        sigkill(p)
    wait_until(lambda: not process.alive(pid), 10, "the killed server to be gone")


def _post(port: int, n: int, good: dict | None) -> None:
    """``n`` requests: ``good`` rows (answered 200) or a malformed body (a 4xx: an error in the log)."""
    for _ in range(n):
        status = request(port, "POST", "/invocations", good or {"dataframe_records": "not rows"})[0]
        assert status == 200 if good else 400 <= status < 500


def _run_id(text: str) -> str:
    return text.split("Retraining: pipeline retrain-on-alert run ", 1)[1].split()[0]


def _ended(run_id: str) -> bool:
    """The run ended and its runner let go of the pipeline's lock."""
    from nbprod import state
    from nbprod.pipelines import get_run, store

    with state.connect() as conn:
        held = store.holder(conn, "retrain-on-alert")
    return get_run(run_id).status not in ("QUEUED", "RUNNING") and held is None


def _started_for(run_id: str) -> list:
    from nbprod.audit import history

    return [e for e in history().entries if e.action == "alert.pipeline" and e.details.get("run_id") == run_id]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_deployments_alert_loop_starts_the_pipeline_and_restore_and_promote_keep_it(
        nbprod_home, env, tmp_path, pipeline_file, monkeypatch):
    from nbprod import deployments, registry
    from nbprod.audit import history
    from nbprod.datasets import credit
    from nbprod.pipelines import get_run
    from nbprod.registry.store import client

    X, y = credit(600, 5)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    good = {"dataframe_records": json.loads(X.dropna().head(2).to_json(orient="records"))}
    with contextlib.ExitStack() as stack:
        stack.callback(kill_recorded_servers)
        url, received = stack.enter_context(receiver())
        # the deploying shell has on-alert pipelines of its own: they must not reach the deployment
        shell = {**env, "NBPROD_ALERT_WEBHOOK": url, "NBPROD_ALERT_PIPELINE_COOLDOWN": "0",
                 "NBPROD_ALERT_PIPELINES": json.dumps([["p95_ms > 0", str(tmp_path / "elsewhere.yaml")]])}
        done = subprocess.run([NBPROD, "deploy", "credit-risk@champion", "--name", "credit", "--no-auth",
                               "--alert-interval", "0.3", "--on-alert", RULE, pipeline_file.name],
                              cwd=tmp_path, env=shell, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"start {pipeline_file} when {RULE} fires" in done.stdout, done.stdout

        # recorded with the deployment (the file's absolute path), shown by status
        row = deployments.status("credit")["credit"]
        assert row.alerts["on_alert"] == {RULE: str(pipeline_file)} and row.alerts["rules"] == []
        assert row.alerts["webhook"] is True and not row.alerts["pending"]
        assert f"{RULE} → retrain.yaml every 0.3s" in str(deployments.status())
        from nbprod.widgets.view import card_html

        card = card_html(row.to_dict())  # the notebook panel's card (%nbprod status), as the sidebar shows it
        assert f"on alert: {escape(RULE)} → retrain.yaml" in card and f"title='{pipeline_file}'" in card
        assert deployments.store.read("credit")[2]["alerts"]["on_alert"] == {RULE: str(pipeline_file)}

        port = row.url.rsplit(":", 1)[1]
        _post(int(port), 6, good)
        _post(int(port), 6, None)
        msg = wait_until(lambda: received and received[0], 180, "the alert's webhook post")
        assert RULE in msg["text"] and "Retraining: pipeline retrain-on-alert run" in msg["text"], msg
        first = _run_id(msg["text"])
        wait_until(lambda: _ended(first), 300, "the retraining run to end")
        run = get_run(first)
        assert run.status == "FINISHED", str(run)
        # the alert is its reason: its parameters, its MLflow tags, the audit row that started it
        assert run.params["deployment"] == "credit" and run.params["alert_rule"] == RULE
        tags = client().get_run(first).data.tags
        assert tags["nbprod.trigger"] == "alert" and tags["nbprod.alert_rule"] == RULE
        assert tags["nbprod.alert_deployment"] == "credit"
        started = _started_for(first)
        assert len(started) == 1 and started[0].details["deployment"] == "credit"
        assert started[0].details["status"] == "started" and started[0].details["path"] == str(pipeline_file)
        assert not any(e.action == "alert.pipeline" and "elsewhere" in str(e.details.get("path"))
                       for e in history().entries)

        # a canary, promoted: the settings stay recorded and the server keeps running them
        deployments.deploy("credit-risk@challenger", name="credit", canary=20)
        promoted = deployments.promote("credit")
        assert promoted.alerts["on_alert"] == {RULE: str(pipeline_file)} and not promoted.alerts["pending"]

        # SIGKILL, restored from a shell with other on-alert pipelines: the recorded ones come back
        pid = deployments.status("credit")["credit"].pid
        _kill_9(pid)
        monkeypatch.setenv("NBPROD_ALERT_PIPELINES", json.dumps([["p95_ms > 0", "/shell/other.yaml"]]))
        monkeypatch.setenv("NBPROD_ALERT_WEBHOOK", url)
        monkeypatch.setenv("NBPROD_ALERT_PIPELINE_COOLDOWN", "0")
        restored = deployments.restore("credit")["credit"]
        assert restored.state == "running" and restored.pid != pid
        assert restored.alerts["on_alert"] == {RULE: str(pipeline_file)} and not restored.alerts["pending"]
        port = int(restored.url.rsplit(":", 1)[1])
        # the incident ends (enough good traffic), a new one starts: the restored server starts a second run
        _post(port, 40, good)
        wait_until(lambda: any(r.rule == RULE and not r.firing for r in alert_rows("credit")), 180,
                   "the incident to resolve")
        _post(port, 20, None)
        wait_until(lambda: any(m["text"].startswith("RESOLVED") for m in received), 60, "the resolution's post")
        second = wait_until(lambda: [m for m in received[1:] if "Retraining" in m["text"]], 180,
                            "the second incident's webhook post")
        assert len(second) == 1 and "Retraining: pipeline retrain-on-alert run" in second[0]["text"], second
        again = _run_id(second[0]["text"])
        assert again != first
        wait_until(lambda: _ended(again), 300, "the second run to end")
        assert get_run(again).status == "FINISHED" and len(_started_for(again)) == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_pipeline_file_removed_after_deploy_is_reported_when_its_rule_fires(nbprod_home, tmp_path,
                                                                              pipeline_file, monkeypatch):
    """The deployment still (re)starts; the firing says why nothing started, in the message and the audit log."""
    from nbprod import deployments, registry
    from nbprod.audit import history
    from nbprod.datasets import credit

    X, y = credit(600, 5)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    good = {"dataframe_records": json.loads(X.dropna().head(2).to_json(orient="records"))}
    with contextlib.ExitStack() as stack:
        stack.callback(kill_recorded_servers)
        url, received = stack.enter_context(receiver())
        monkeypatch.setenv("NBPROD_ALERT_WEBHOOK", url)
        dep = deployments.deploy("credit-risk@champion", name="gone", server={"auth": False},
                                 alerts={"interval": 0.3}, on_alert={RULE: str(pipeline_file)})
        assert dep.alerts["on_alert"] == {RULE: str(pipeline_file)}
        pipeline_file.unlink()
        _kill_9(dep.pid)
        restored = deployments.restore("gone")["gone"]
        assert restored.state == "running"
        port = int(restored.url.rsplit(":", 1)[1])
        _post(port, 4, good)
        _post(port, 6, None)
        msg = wait_until(lambda: received and received[0], 180, "the alert's webhook post")
        assert "Retraining: retrain.yaml not started: no pipeline file" in msg["text"], msg
    rows = [e.details for e in history().entries if e.action == "alert.pipeline"]
    assert len(rows) == 1 and rows[0]["status"] == "not started" and rows[0]["deployment"] == "gone"
    assert "no pipeline file" in rows[0]["reason"]
