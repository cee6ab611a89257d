"""The sidebar's REST API (``nbprod.jupyter``) on a real Jupyter server, a real MLflow store and real
uvicorn deployments on 127.0.0.1.

One module-scoped home: credit-risk v1 (@champion) and v2 (@challenger), and ONE deployment
("credit") that the action tests move through canary -> promote -> rollback -> refused rollback ->
split -> undeploy, in file order. Each test gets its own Jupyter server (pytest-jupyter); the
finalizer kills every recorded model server.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from _registry_helpers import module_home, pipeline
from conftest import kill_recorded_servers

# pytest-jupyter's fixtures for this module only: as a plugin (pytest_plugins) its autouse event loop
# would wrap every test of the session, the Playwright ones in tests/ui too. The tests are plain
# functions that run their requests on that loop (``call``).
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def call(jp_asyncio_loop):
    """Run a request (a coroutine) on the Jupyter server's event loop and return its result."""
    return jp_asyncio_loop.run_until_complete


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"nbprod.jupyter": True}}}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with module_home(tmp_path_factory, "jupyter") as h:
        yield h
        kill_recorded_servers()


@pytest.fixture(scope="module")
def versions(home):
    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(1500, 3)
    v1 = registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion",
                           metrics={"roc_auc": 0.81, "accuracy": 0.77, "log_loss": 0.4})
    v2 = registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    return v1, v2


@pytest.fixture(scope="module")
def credit(versions):
    import nbprod

    first = nbprod.deploy("credit-risk@champion", name="credit", budget_p95_ms=5000)
    nbprod.deploy("credit-risk@challenger", name="credit", canary=20)
    return first  # holds the token


async def _get(jp_fetch, *parts, **params):
    answer = await jp_fetch("nbprod", "api", *parts, params=params or None)
    assert answer.code == 200
    return json.loads(answer.body)


async def _post(jp_fetch, name: str, action: str, body: dict | None = None):
    try:
        answer = await jp_fetch("nbprod", "api", "deployments", name, action, method="POST",
                                body=json.dumps(body or {}), request_timeout=120)
    except HTTPClientError as exc:
        return exc.code, json.loads(exc.response.body)
    return answer.code, json.loads(answer.body)


def _weights(deployment: dict) -> dict[str, float]:
    return {r["version"]: r["weight"] for r in deployment["routes"]}


def _last_audit(action: str) -> dict:
    import nbprod

    return next(e.to_dict() for e in nbprod.audit.history("credit-risk").entries if e.action == action)


# --- reads ---------------------------------------------------------------------------------------

def test_models_lists_versions_with_aliases_and_key_metrics(call, jp_fetch, versions):
    body = call(_get(jp_fetch, "models"))
    by_version = {v["version"]: v for v in body["versions"] if v["name"] == "credit-risk"}
    assert by_version["1"]["aliases"] == ["champion"] and by_version["2"]["aliases"] == ["challenger"]
    assert by_version["1"]["key_metrics"] == {"roc_auc": 0.81, "accuracy": 0.77}  # what `nbprod models` shows
    assert by_version["2"]["key_metrics"] == {}


def test_deployments_show_split_health_budget_and_alert_states(call, jp_fetch, credit):
    body = call(_get(jp_fetch, "deployments"))
    row = next(d for d in body["deployments"] if d["name"] == "credit")
    assert row["state"] == "running"
    assert _weights(row) == {"1": 80, "2": 20}
    assert row["budget_p95_ms"] == 5000
    health = row["health"]
    assert set(health["figures"]) >= {"p95_ms", "error_rate", "requests", "drift_share"}
    assert health["drift"] and health["alerts"] == [] and health["firing"] == []
    assert "token" not in json.dumps(row).lower() or "token_sha256" not in json.dumps(row)


def test_deployments_show_recent_figures_and_the_recorded_alert_states(call, jp_fetch, credit, versions):
    """After traffic and an alert check, the row carries the log's p95 / error rate / drift verdict and
    the firing rule, as recorded (the handler evaluates no rule itself)."""
    import time

    from nbprod import monitor
    from nbprod.datasets import credit as frame
    from nbprod.monitoring.alerts import check

    X, _ = frame(400, 11)
    for i in range(0, 400, 40):
        credit.predict(X.iloc[i:i + 40])
    deadline = time.monotonic() + 30
    while monitor("credit", window="5m", since=time.time() - 300).latest("p95_ms")[0] is None:
        assert time.monotonic() < deadline, "the server did not log the predictions"
        time.sleep(0.2)
    check(monitor("credit", window="1h", since=time.time() - 3600), ["p95_ms > 0.001", "error_rate > 50%"])
    row = next(d for d in call(_get(jp_fetch, "deployments"))["deployments"] if d["name"] == "credit")
    figures = row["health"]["figures"]
    assert figures["p95_ms"]["value"] > 0 and figures["error_rate"]["value"] == 0
    assert row["health"]["drift"] in ("drift", "no drift")
    assert row["health"]["firing"] == ["p95_ms > 0.001"]
    assert {a["rule"]: a["firing"] for a in row["health"]["alerts"]} == {"p95_ms > 0.001": True,
                                                                          "error_rate > 50%": False}


def test_audit_answers_the_recent_rows_newest_first(call, jp_fetch, credit):
    body = call(_get(jp_fetch, "audit"))
    seqs = [e["seq"] for e in body["entries"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) <= 50
    assert any(e["action"] == "deploy" for e in body["entries"])
    only = call(_get(jp_fetch, "audit", model="credit-risk"))
    assert only["model"] == "credit-risk" and only["entries"]


def test_jobs_answers_the_recorded_notebook_jobs(call, jp_fetch, home, tmp_path):
    import nbformat

    from nbprod import jobs

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    job = jobs.run(tmp_path / "tiny.ipynb", progress=False)  # a real kernel through papermill
    answered = call(_get(jp_fetch, "jobs"))["jobs"]
    assert answered[0]["run_id"] == job.run_id and answered[0]["status"] == "FINISHED"
    assert answered[0]["notebook"].endswith("tiny.ipynb") and answered[0]["seconds"] > 0


def test_a_slow_call_is_logged_as_a_warning(call, jp_fetch, jp_serverapp, home, monkeypatch):
    """jupyter_server logs a successful request at debug level only: a sidebar waiting a minute for its
    first data left no trace in the server's log."""
    import logging

    from nbprod.jupyter import handlers

    monkeypatch.setattr(handlers, "SLOW_S", 0.0)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep(logging.WARNING)
    jp_serverapp.log.addHandler(keep)
    try:
        call(_get(jp_fetch, "jobs"))
    finally:
        jp_serverapp.log.removeHandler(keep)
    assert any(m.startswith("nbprod: GET ") and "/nbprod/api/jobs took " in m for m in seen), seen


# --- actions, in file order on the one deployment -------------------------------------------------

def test_promote_sends_all_traffic_to_the_canary_and_audits_it(call, jp_fetch, credit):
    code, body = call(_post(jp_fetch, "credit", "promote"))
    assert code == 200, body
    assert _weights(body) == {"2": 100} and body["token"] is None
    assert _last_audit("promote")["details"]["to"] == "2"


def test_rollback_returns_traffic_and_a_second_one_is_refused_as_json(call, jp_fetch, credit):
    import nbprod

    code, body = call(_post(jp_fetch, "credit", "rollback"))
    assert code == 200, body
    assert _weights(body) == {"1": 100}
    assert nbprod.status("credit")["credit"].routes[0]["version"] == "1"
    assert _last_audit("rollback")["details"]["to"] == "1"
    code, body = call(_post(jp_fetch, "credit", "rollback"))
    assert code == 409
    assert body["error"] == "DeploymentError"
    assert "already rolled back" in body["problem"] and "nbprod.deploy(" in body["fix"]


def test_split_sets_the_weights_and_bad_weights_are_refused(call, jp_fetch, credit):
    code, body = call(_post(jp_fetch, "credit", "split", {"split": {"1": 70, "2": 30}}))
    assert code == 200, body
    assert _weights(body) == {"1": 70, "2": 30}
    code, body = call(_post(jp_fetch, "credit", "split", {"split": {"1": 70, "2": 70}}))
    assert code == 409 and "add up to 100" in body["problem"] and body["fix"]
    code, body = call(_post(jp_fetch, "credit", "split", {}))
    assert code == 409 and "split must map" in body["problem"]


def test_unknown_deployment_and_bad_body_are_json_4xx(call, jp_fetch, credit):
    code, body = call(_post(jp_fetch, "nope", "rollback"))
    assert code == 409 and "no deployment called 'nope'" in body["problem"] and "credit" in body["fix"]
    try:
        call(jp_fetch("nbprod", "api", "deployments", "credit", "split", method="POST", body="[1,"))
    except HTTPClientError as exc:
        assert exc.code == 400 and json.loads(exc.response.body)["problem"].startswith("the request body")
    else:
        pytest.fail("a malformed body was accepted")


def test_undeploy_stops_the_server(call, jp_fetch, credit):
    code, body = call(_post(jp_fetch, "credit", "undeploy"))
    assert code == 200, body
    assert body["deployments"][0]["state"] == "stopped"
    rows = call(_get(jp_fetch, "deployments"))["deployments"]
    assert next(d for d in rows if d["name"] == "credit")["state"] == "stopped"


# --- authentication -------------------------------------------------------------------------------

def test_requests_without_auth_are_refused(call, http_server_client, jp_base_url, home):
    base = f"{jp_base_url}nbprod/api/"
    client = http_server_client
    got = call(client.fetch(base + "models", raise_error=False))
    assert got.code == 403 and json.loads(got.body)["error"] == "http 403"
    posted = call(client.fetch(base + "deployments/credit/rollback", method="POST", body="{}", raise_error=False))
    assert posted.code == 403


def test_a_cookie_session_needs_the_xsrf_token_to_post(call, jp_serverapp, http_server_client, jp_base_url, home):
    """A browser session (login cookie) is what XSRF protects: without the _xsrf token a POST is refused
    before the action runs; with it, the same POST reaches the API (here: a JSON 409, nothing deployed)."""
    base = jp_base_url
    client = http_server_client
    token = jp_serverapp.identity_provider.token
    login = call(client.fetch(f"{base}api/status?{urllib.parse.urlencode({'token': token})}", raise_error=False))
    page = call(client.fetch(f"{base}login", raise_error=False))  # a page: it hands out the _xsrf cookie
    cookies = [c.split(";")[0] for r in (login, page) for c in r.headers.get_list("Set-Cookie")]
    assert any(c.startswith("username-") for c in cookies), cookies
    xsrf = next(c.split("=", 1)[1] for c in cookies if c.startswith("_xsrf="))
    url = f"{base}nbprod/api/deployments/nope/rollback"
    refused = call(client.fetch(url, method="POST", body="{}", raise_error=False,
                                headers={"Cookie": "; ".join(c for c in cookies if not c.startswith("_xsrf="))}))
    assert refused.code == 403 and "xsrf" in json.loads(refused.body)["problem"].lower()
    allowed = call(client.fetch(url, method="POST", body="{}", raise_error=False,
                                headers={"Cookie": "; ".join(cookies), "X-XSRFToken": xsrf}))
    assert allowed.code == 409 and "no deployment called 'nope'" in json.loads(allowed.body)["problem"]


# --- the install ---------------------------------------------------------------------------------

def test_the_install_enables_the_server_extension_and_the_prebuilt_labextension():
    """``make install`` (an editable install) builds labextension/ and puts both extensions where Jupyter looks."""
    import re
    import subprocess
    import sys

    def listed(*command: str) -> str:
        done = subprocess.run([sys.executable, "-m", "jupyter", *command], capture_output=True, text=True, timeout=120)
        return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)

    labextensions = listed("labextension", "list")
    assert re.search(r"^\s*nbprod v\S+ enabled OK \(python, nbprod\)", labextensions, re.M), labextensions
    assert re.search(r"^\s*nbprod\.jupyter enabled", listed("server", "extension", "list"), re.M)


def test_jobs_that_cannot_be_read_answer_the_problem_not_an_empty_list(call, jp_fetch, home, monkeypatch):
    from nbprod.config import settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")  # a tracking server that is not there
    settings.reset()
    try:
        with pytest.raises(HTTPClientError) as refused:
            call(jp_fetch("nbprod", "api", "jobs"))
    finally:
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        settings.reset()
    body = json.loads(refused.value.response.body)
    assert refused.value.code == 422 and body["error"] == "TrackingServerError"
    assert "cannot reach the MLflow tracking server" in body["problem"] and "MLFLOW_TRACKING_URI" in body["fix"]
