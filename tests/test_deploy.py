"""Deployments on real detached uvicorn servers on 127.0.0.1, a real MLflow store and state DB.

One module-scoped home with three registered versions of credit-risk and a deployment "credit"
(2 workers) that the tests move through canary, shadow, split, promote, rollback, kill -9 and
restore. Each test gets it as it expects to find it — running, v1 (@champion) stable at 100 % —
from the ``credit`` fixture, which reuses the server a previous test left so and starts it afresh
otherwise: every test passes alone and in any order. The finalizer kills every server recorded in
the state DB by pid, so no process outlives the suite. All traffic is bounded and goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest
from _registry_helpers import module_home, pipeline
from conftest import kill_recorded_servers, sigkill

from nbprod.deployments import ServerSettings
from nbprod.errors import DeploymentError, LatencyBudgetExceeded, NbprodError

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with module_home(tmp_path_factory, "deploy") as h:
        yield h
        kill_recorded_servers()


@pytest.fixture(scope="module")
def versions(home):
    """credit-risk v1 (@champion), v2 (@challenger), v3 (same model; its artefacts get corrupted later)."""
    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(2000, 7)
    v1 = registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    v2 = registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    v3 = registry.register(pipeline(X, y, C=0.5), "credit-risk", X, y)
    return v1, v2, v3, X


@pytest.fixture(scope="module")
def started() -> dict:
    """The module's "credit" Deployment (url, token) once started, for the next test to reuse."""
    return {}


def _as_started(row, dep) -> bool:
    return (row.state == "running" and row.url == dep.url
            and [(r["version"], r["role"], r["weight"]) for r in row.routes] == [("1", "stable", 100.0)])


@pytest.fixture
def credit(versions, started):
    """"credit" as every test starts from: running, v1 stable at 100 %, 2 workers, @champion on v1. A
    test may leave it otherwise (a canary, a split, killed, undeployed): then it is undeployed and
    deployed afresh (a new server, a new token)."""
    from nbprod import deployments, registry

    if registry.get_version("credit-risk@champion").version != "1":
        registry.set_alias(registry.get_version("credit-risk/1").uri, "champion")
    dep = started.get("dep")
    if dep is not None and _as_started(deployments.status("credit")["credit"], dep):
        return dep
    if "credit" in {r.name for r in deployments.status()}:
        deployments.undeploy("credit")
    started["dep"] = deployments.deploy("credit-risk@champion", name="credit", server=ServerSettings(workers=2))
    return started["dep"]


# --- a tiny bounded HTTP client ----------------------------------------------------------------

def _body(X, n: int = 1) -> bytes:
    frame = X.dropna().head(n)
    return json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": json.loads(frame.to_json(orient="values"))}}).encode()


def post(dep, body: bytes, *, token: str | None = "use", conn=None) -> tuple[int, str | None, dict]:
    host, port = dep.url.split("//")[1].split(":")
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if token == "use":
        token = dep.token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/invocations", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, r.getheader("X-Model-Version"), (json.loads(data) if data else {})
    finally:
        if own:
            conn.close()


def versions_seen(dep, body, n: int = 30) -> set:
    """Versions answering ``n`` requests on fresh connections (spread over the workers)."""
    seen = set()
    for _ in range(n):
        status, version, _ = post(dep, body)
        assert status == 200
        seen.add(version)
    return seen


class Load:
    """A few threads of keep-alive http.client sending single-row requests until stopped (bounded)."""

    def __init__(self, dep, body, threads: int = 3, max_requests: int = 1500, max_seconds: float = 60) -> None:
        self.dep, self.body, self.results, self.timed = dep, body, [], []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(max_requests, max_seconds)) for _ in range(threads)]

    def _run(self, max_requests: int, max_seconds: float) -> None:
        host, port = self.dep.url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        deadline = time.monotonic() + max_seconds
        try:
            for _ in range(max_requests):
                if self.stop_flag.is_set() or time.monotonic() > deadline:
                    break
                started = time.monotonic()
                try:
                    status, version, _ = post(self.dep, self.body, conn=conn)
                except (OSError, http.client.HTTPException) as exc:
                    status, version = f"error {exc!r}", None
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                ended = time.monotonic()
                self.results.append((ended, status, version))
                self.timed.append((started, ended, version))
                time.sleep(0.002)
        finally:
            conn.close()

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        """Poll until ``more`` further requests have completed (bounded)."""
        target = len(self.results) + more
        deadline = time.monotonic() + timeout
        while len(self.results) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.results) >= target, f"the load completed {len(self.results)} of {target} requests"

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


def audit_actions(name: str = "credit") -> list[str]:
    from nbprod import audit

    return [e.action for e in audit.history() if (e.details or {}).get("deployment") == name][::-1]


# --- bad input (no server needed) -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    ({"canary": 150}, "between 0 and 100"),
    ({"canary": 5, "shadow": True}, "alternatives"),
    ({"split": {"1": 70, "2": 70}}, "add up to 100"),
    ({"server": ServerSettings(workers=0)}, "workers"),
    # unbounded, 1,000 workers forked until the machine stalled and the state DB stayed locked
    ({"server": ServerSettings(workers=1000)}, "workers must be a whole number from 1 to"),
    ({"server": {"workers": 2, "threads": 4}}, "unknown server setting"),
    ({"server": 2}, "ServerSettings or a dict"),
    ({"budget_p95_ms": -1}, "budget_p95_ms"),
    ({"server": ServerSettings(ood="ignore")}, "ood"),
    ({"name": "bad name!"}, "not a valid deployment name"),
    ({"canary": True}, "percentage"),  # a bool is not a number here
    ({"budget_p95_ms": True}, "budget_p95_ms"),
    ({"server": ServerSettings(port="abc")}, "port must be an integer"),  # type: ignore[arg-type]
])
def test_bad_options_are_typed_errors_that_say_the_fix(versions, kwargs, fragment):
    from nbprod.deployments import deploy

    with pytest.raises(DeploymentError) as info:
        deploy("credit-risk/1", **kwargs)
    assert fragment in str(info.value)
    assert info.value.fix


def test_canary_without_a_running_deployment_and_unknown_names(versions):
    from nbprod import deployments

    with pytest.raises(DeploymentError, match="no stable version"):
        deployments.deploy("credit-risk/2", name="fresh", canary=5)
    for verb in (deployments.promote, deployments.rollback, deployments.undeploy):
        with pytest.raises(DeploymentError, match="no deployment called 'nope'"):
            verb("nope")
    with pytest.raises(NbprodError):
        deployments.deploy("no-such-model@champion", name="x")
    assert "fresh" not in {r.name for r in deployments.status()}  # nothing half-written


# --- the module deployment ---------------------------------------------------------------------

def test_deploy_starts_a_detached_authenticated_server(credit, versions, home):
    from nbprod.deployments import process, status

    X = versions[3]
    assert credit.token and credit.url.startswith("http://127.0.0.1:")
    assert credit.routes == [{"version": "1", "role": "stable", "weight": 100.0, "uri": "models:/credit-risk/1"}]
    assert os.getsid(credit.pid) != os.getsid(0)  # own session: survives the kernel
    assert (home / "deployments" / "credit" / "server.log").is_file()
    assert "<table" in credit._repr_html_() and credit.token in str(credit)
    # what a notebook saves with the cell (text/plain and text/html) hides the token
    assert credit.token not in repr(credit) and credit.token not in credit._repr_html_()
    assert f"…{credit.token[-4:]}" in repr(credit) and ".token" in credit._repr_html_()
    assert credit.to_dict()["workers"] == 2
    assert post(credit, _body(X), token=None)[0] == 401
    status_code, version, body = post(credit, _body(X, 3))
    assert status_code == 200 and version == "1" and len(body["predictions"]) == 3
    # only the token's sha256 is stored
    from nbprod.serving.spec import hash_token, load_spec

    assert load_spec("credit").token_sha256 == hash_token(credit.token)
    row = status("credit")["credit"]
    assert row.state == "running" and row.workers == "2/2", str(status())
    assert process.is_server_of(credit.pid, "credit")
    assert "deploy" in audit_actions()


def test_canary_with_latency_gate_then_promote_and_rollback_under_load(credit, versions):
    from nbprod import deployments, registry

    X = versions[3]
    body = _body(X)
    earlier = len(audit_actions())  # other tests' rows: this test's own come after them
    canary = deployments.deploy("credit-risk@challenger", name="credit", canary=30, budget_p95_ms=5000,
                                token=credit.token)
    assert canary.weights == {"1": 70.0, "2": 30.0} and canary.token is None
    assert canary.latency["p95_ms"] > 0 and canary.last_change_s is not None
    tags = registry.get_version("credit-risk/2").tags
    assert float(tags["nbprod.latency_p95_ms"]) == canary.latency["p95_ms"]
    assert versions_seen(credit, body, 60) == {"1", "2"}

    with Load(credit, body) as load:
        load.wait_for(30)
        t_start = time.monotonic()
        promoted = deployments.promote("credit")
        t_promoted = time.monotonic()  # every worker acknowledged: what starts now goes to v2
        assert versions_seen(credit, body) == {"2"}  # every worker, fresh connections
        load.wait_for(20)
        t_rollback = time.monotonic()
        rolled = deployments.rollback("credit")
        t_rolled = time.monotonic()
        assert versions_seen(credit, body) == {"1"}
        load.wait_for(30)
    assert len(load.results) > 30  # bounded load that ran before, during and after both changes
    assert any(t < t_start for t, _, _ in load.results) and any(t > t_rolled for t, _, _ in load.results)
    bad = [r for r in load.results if r[1] != 200]
    assert not bad, bad[:5]
    # by when a request started, not by timing windows: between the two calls only v2 answered,
    # after the rollback returned only v1
    after_promote = {v for start, end, v in load.timed if start > t_promoted and end < t_rollback}
    after_rollback = {v for start, _, v in load.timed if start > t_rolled}
    assert after_promote == {"2"} and after_rollback == {"1"}
    assert promoted.routes[0]["version"] == "2" and promoted.last_change_s is not None
    assert rolled.routes == [{"version": "1", "role": "stable", "weight": 100.0, "uri": "models:/credit-risk/1"}]
    assert rolled.last_change_s is not None
    # promote set @champion to v2; the rollback moved it back
    assert registry.get_version("credit-risk@champion").version == "1"
    actions = audit_actions()[earlier:]
    assert actions.index("promote") < actions.index("rollback")


def test_a_second_rollback_is_refused_not_rolled_forward(credit, versions):
    """After promote v2 and rollback to v1, another rollback must not bring v2 back."""
    from nbprod import deployments
    from nbprod.serving.spec import load_spec

    deployments.deploy("credit-risk@challenger", name="credit", canary=30)
    deployments.promote("credit")
    deployments.rollback("credit")
    before = load_spec("credit")
    with pytest.raises(DeploymentError, match="already rolled back") as info:
        deployments.rollback("credit")
    assert "nbprod.deploy('models:/credit-risk/2'" in info.value.fix
    after = load_spec("credit")
    assert after.generation == before.generation and [r.version for r in after.routes] == ["1"]
    assert versions_seen(credit, _body(versions[3]), 10) == {"1"}


def test_latency_gate_refuses_a_version_over_budget_and_the_old_split_keeps_serving(credit, versions):
    from nbprod import deployments, registry
    from nbprod.serving.spec import load_spec

    before = [(r.version, r.role, r.weight) for r in load_spec("credit").routes]
    earlier = len(audit_actions())
    with pytest.raises(LatencyBudgetExceeded) as info:
        deployments.deploy("credit-risk/2", name="credit", canary=10, budget_p95_ms=0.001, token=credit.token)
    assert "over the budget" in str(info.value)
    assert [(r.version, r.role, r.weight) for r in load_spec("credit").routes] == before
    # without the token the gate measures on a temporary side server; same refusal
    with pytest.raises(LatencyBudgetExceeded):
        deployments.deploy("credit-risk/2", name="credit", canary=10, budget_p95_ms=0.001)
    assert [(r.version, r.role, r.weight) for r in load_spec("credit").routes] == before
    assert versions_seen(credit, _body(versions[3]), 10) == {"1"}
    latency = json.loads(registry.get_version("credit-risk/2").tags["nbprod.latency"])
    assert latency["ok"] is False and latency["budget_p95_ms"] == 0.001
    assert "deploy.refused" in audit_actions()[earlier:]


def test_shadow_gets_a_copy_and_split_uses_both(credit, versions):
    from nbprod import deployments

    body = _body(versions[3])
    shadow = deployments.deploy("credit-risk/2", name="credit", shadow=True)
    assert {r["role"] for r in shadow.routes} == {"stable", "shadow"}
    assert versions_seen(credit, body, 20) == {"1"}  # shadow answers are never returned
    host, port = credit.url.split("//")[1].split(":")
    metrics = ""
    for _ in range(10):  # each worker has its own metrics; at least one saw shadow rows
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        c.close()
        if 'nbprod_predicted_rows_total{role="shadow",version="2"}' in metrics:
            break
    assert 'nbprod_predicted_rows_total{role="shadow",version="2"}' in metrics

    split = deployments.deploy("credit-risk", name="credit", split={"1": 50, "2": 50})
    assert split.weights == {"1": 50.0, "2": 50.0}
    assert versions_seen(credit, body, 60) == {"1", "2"}
    back = deployments.rollback("credit")  # drops the B side
    assert back.weights == {"1": 100.0}


def test_canary_that_fails_to_load_falls_back_and_is_audited(credit, versions):
    """v3's artefacts are corrupted: the server leaves it out, serves v1, and deploy.fallback is audited."""
    from nbprod import deployments, registry
    from nbprod.registry.versions import local_model_dir

    mdir = local_model_dir(registry.get_version("credit-risk/3"))
    victim = next(p for p in sorted(mdir.rglob("*")) if p.is_file() and p.suffix in (".pkl", ".skops", ".joblib"))
    victim.write_bytes(b"corrupted")
    d = deployments.deploy("credit-risk/3", name="credit", canary=50)
    assert d.weights == {"1": 50.0, "3": 50.0}
    assert versions_seen(credit, _body(versions[3]), 30) == {"1"}  # no failed request
    for _ in range(100):  # the server writes the audit row from a background thread
        if "deploy.fallback" in audit_actions():
            break
        time.sleep(0.05)
    from nbprod import audit

    rows = [e for e in audit.history() if e.action == "deploy.fallback"]
    assert rows and rows[0].details["kind"] == "version_load_failed" and rows[0].details["version"] == "3"
    deployments.rollback("credit")

    # the same broken version as a NEW deployment: the server refuses to start, nothing is left behind
    with pytest.raises(DeploymentError, match="exited before it was ready"):
        deployments.deploy("credit-risk/3", name="broken", server={"auth": False})
    assert "broken" not in {r.name for r in deployments.status()}
    assert "deploy.failed" in audit_actions("broken")
    # with forked workers too (issue 13): the error quotes the server's log, where the workers wrote why
    with pytest.raises(DeploymentError, match="exited before it was ready") as failed:
        deployments.deploy("credit-risk/3", name="broken2", server={"auth": False, "workers": 2})
    assert "Traceback" in failed.value.problem or "rror" in failed.value.problem.split("ready:", 1)[1], failed.value
    assert "broken2" not in {r.name for r in deployments.status()}
    assert "deploy.failed" in audit_actions("broken2")


def test_kill_9_shows_dead_and_restore_brings_back_the_split(credit, versions):
    from nbprod import deployments
    from nbprod.deployments import process

    body = _body(versions[3])
    earlier = len(audit_actions())
    # the CLI without --workers: the 2-worker deployment keeps its count, and says nothing about it
    from nbprod.commands import parse

    command, args = parse("nbprod", ["deploy", "credit-risk/2", "--name", "credit", "--canary", "40"])
    canary = command.run(args, None)
    assert canary.workers == 2 and canary.warnings == [], canary.warnings
    old = deployments.status("credit")["credit"]
    assert old.state == "running" and old.workers == "2/2"
    # one worker dies: status says degraded; uvicorn replaces it and it registers again
    from nbprod.deployments import store

    worker = next(p for p, a in store.acks("credit").items() if a["parent"] == old.pid and process.alive(p))
    sigkill(worker)
    for _ in range(200):
        if not process.alive(worker):
            break
        time.sleep(0.01)
    assert deployments.status("credit")["credit"].state == "degraded"
    for _ in range(300):
        if deployments.status("credit")["credit"].state == "running":
            break
        time.sleep(0.1)
    assert deployments.status("credit")["credit"].state == "running"
    assert versions_seen(credit, body, 20) <= {"1", "2"}
    workers = process.children(old.pid)
    os.killpg(old.pid, signal.SIGKILL)
    for p in workers:
        sigkill(p)
    for _ in range(200):
        if not process.alive(old.pid):
            break
        time.sleep(0.02)
    table = deployments.status()
    assert table["credit"].state == "dead" and not table.ok
    assert "dead" in str(table) and "dead" in table._repr_html_()

    restored = deployments.restore()
    row = restored["credit"]
    assert row.state == "running" and row.pid != old.pid and row.workers == "2/2"
    assert [(r["version"], r["weight"]) for r in row.routes] == [("1", 60.0), ("2", 40.0)]
    credit.url = row.url
    assert versions_seen(credit, body, 60) == {"1", "2"}  # same split, same token
    assert "deploy.restore" in audit_actions()[earlier:]


def test_commands_and_undeploy(credit, versions):
    import nbprod.commands as commands
    from nbprod.commands import Context, build_parser

    if "deploy" not in commands.MODULES:
        commands.MODULES.append("deploy")  # until the lead registers the module
    parser, cmds = build_parser("nbprod")
    earlier = len(audit_actions())
    args = parser.parse_args(["status"])
    table = cmds["status"].run(args, Context())
    assert "credit" in str(table)
    pid = table["credit"].pid
    args = parser.parse_args(["undeploy", "credit"])
    table = cmds["undeploy"].run(args, Context())
    assert table["credit"].state == "stopped"
    from nbprod.deployments import process

    assert not process.alive(pid)
    assert "undeploy" in audit_actions()[earlier:]
    with pytest.raises(commands.UsageProblem):
        parser.parse_args(["deploy", "credit-risk", "--split", "1:50"])


def test_a_stopped_deployment_refuses_traffic_changes(credit, versions):
    """After undeploy: promote/rollback say it is stopped (nothing moves, @champion stays) and a second
    undeploy writes no second audit row."""
    from nbprod import deployments, registry

    deployments.undeploy("credit")
    champion = registry.get_version("credit-risk@champion").version
    assert deployments.status("credit")["credit"].state == "stopped"
    for verb in (deployments.promote, deployments.rollback):
        with pytest.raises(DeploymentError, match="is stopped") as info:
            verb("credit")
        assert "nbprod.deploy(" in info.value.fix
    assert registry.get_version("credit-risk@champion").version == champion
    assert deployments.status("credit")["credit"].state == "stopped"
    count = audit_actions().count("undeploy")
    assert deployments.undeploy("credit")["credit"].state == "stopped"
    assert audit_actions().count("undeploy") == count
