"""The server under real uvicorn on 127.0.0.1: the CLI, auth, and a live traffic switch via the state DB."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from _servers import request, server, wait_until
from _serving_models import rows

pytestmark = pytest.mark.slow  # every test starts `nbprod serve` (real uvicorn workers)

TOKEN = "tok-123"


def test_serve_model_dir_with_token(serving_models, env):
    with server(["--model-dir", serving_models["clf"], "--token", TOKEN], env) as port:
        status, headers, body = request(port, "POST", "/invocations", rows(serving_models), token=TOKEN)
        assert status == 200 and headers["x-model-version"] == "1"
        assert len(json.loads(body)["prediction_ids"]) == 2
        assert request(port, "POST", "/invocations", rows(serving_models))[0] == 401
        assert request(port, "POST", "/invocations", {"bad": 1}, token=TOKEN)[0] == 400
        assert request(port, "GET", "/ping")[0] == 200
        assert b"nbprod_requests_total" in request(port, "GET", "/metrics")[2]


def test_traffic_switch_through_the_state_db_reaches_every_worker_without_errors(serving_models, env):
    from nbprod.serving.spec import DeploymentSpec, Route, load_spec, save_spec

    def spec(version: str) -> DeploymentSpec:
        return DeploymentSpec("credit", [Route(serving_models["clf"], version, 100, "stable")])

    assert save_spec("credit", spec("1")) == 1
    assert load_spec("credit").generation == 1
    with server(["--deployment", "credit", "--workers", "2", "--no-auth"], env) as port:
        statuses: list[int] = []
        versions: list[str] = []
        stop = threading.Event()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps(rows(serving_models, 1)).encode()
            deadline = time.monotonic() + 120  # bounded even if the test body fails (stop is set in finally)
            while not stop.is_set() and time.monotonic() < deadline:
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                statuses.append(r.status)
                versions.append(r.getheader("X-Model-Version"))
                time.sleep(0.002)
            conn.close()

        def served_by_every_worker(version: str) -> bool:
            # fresh connections land on either worker
            return all(request(port, "POST", "/invocations", rows(serving_models, 1))[1]["x-model-version"] == version
                       for _ in range(10))

        def more_answers(n: int) -> None:
            """Wait until the load threads have seen ``n`` more answers than now."""
            target = len(statuses) + n
            wait_until(lambda: len(statuses) >= target, 15, f"{n} more answers under load")

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            more_answers(20)  # the load runs before the promote ...
            assert save_spec("credit", spec("2")) == 2  # promote
            wait_until(lambda: served_by_every_worker("2"), 15, "version 2 served by every worker")
            assert save_spec("credit", spec("1")) == 3  # roll back
            wait_until(lambda: served_by_every_worker("1"), 15, "version 1 served by every worker")
            more_answers(20)  # ... and keeps running after the rollback
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert statuses and set(statuses) == {200}
        assert {"1", "2"} <= set(versions)
        # every worker reaches generation 3 (wait_for("1") also passes on a worker still at generation 1)
        deadline = time.monotonic() + 15
        while True:
            infos = [json.loads(request(port, "GET", "/version")[2]) for _ in range(10)]
            if {i["generation"] for i in infos} == {3} or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert {(i["generation"], i["deployment"]) for i in infos} == {(3, "credit")}


def test_an_idempotency_key_gives_one_answer_across_workers(serving_models, env):
    """Keys live in the state DB: fresh connections (spread over 2 workers by the kernel), sequential or
    concurrent, all get the one stored answer for a key."""
    body = json.dumps(rows(serving_models, 1)).encode()

    def post(key: str) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json", "Idempotency-Key": key})
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("X-Prediction-Id")
        finally:
            conn.close()

    with server(["--model-dir", serving_models["clf"], "--workers", "2", "--no-auth"], env) as port:
        sequential = [post("one-key") for _ in range(20)]
        assert {s for s, _ in sequential} == {200} and len({i for _, i in sequential}) == 1
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(post("burst-key"))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 8 and {s for s, _ in results} == {200}
        assert len({i for _, i in results}) == 1
