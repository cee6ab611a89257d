"""The server under real uvicorn on 127.0.0.1: the CLI, auth, and a live traffic switch via the state DB."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _serving_models import build

TOKEN = "tok-123"
NBPROD = str(Path(sys.executable).parent / "nbprod")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build(tmp_path_factory.mktemp("serving-server-models"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, token: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


@contextlib.contextmanager
def server(args: list[str], env: dict):
    """Start `nbprod serve ...` in its own process group; always stop the whole group."""
    port = free_port()
    proc = subprocess.Popen([NBPROD, "serve", *args, "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if request(port, "GET", "/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server not ready after 60 s")
            time.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        proc.stderr.close()


@pytest.fixture
def env(nbprod_home):
    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_TOKEN")}
    e["NBPROD_HOME"] = str(nbprod_home)
    return e


def rows(models, n=2):
    return {"dataframe_records": json.loads(models["df"].head(n).to_json(orient="records"))}


def test_serve_model_dir_with_token(models, env):
    with server(["--model-dir", models["clf"], "--token", TOKEN], env) as port:
        status, headers, body = request(port, "POST", "/invocations", rows(models), token=TOKEN)
        assert status == 200 and headers["x-model-version"] == "1"
        assert len(json.loads(body)["prediction_ids"]) == 2
        assert request(port, "POST", "/invocations", rows(models))[0] == 401
        assert request(port, "POST", "/invocations", {"bad": 1}, token=TOKEN)[0] == 400
        assert request(port, "GET", "/ping")[0] == 200
        assert b"nbprod_requests_total" in request(port, "GET", "/metrics")[2]


def test_traffic_switch_through_the_state_db_reaches_every_worker_without_errors(models, env):
    from nbprod.serving.spec import DeploymentSpec, Route, load_spec, save_spec

    def spec(version: str) -> DeploymentSpec:
        return DeploymentSpec("credit", [Route(models["clf"], version, 100, "stable")])

    assert save_spec("credit", spec("1")) == 1
    assert load_spec("credit").generation == 1
    with server(["--deployment", "credit", "--workers", "2", "--no-auth"], env) as port:
        statuses: list[int] = []
        versions: list[str] = []
        stop = threading.Event()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps(rows(models, 1)).encode()
            deadline = time.monotonic() + 30  # bounded even if the test body fails
            while not stop.is_set() and time.monotonic() < deadline:
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                statuses.append(r.status)
                versions.append(r.getheader("X-Model-Version"))
                time.sleep(0.002)
            conn.close()

        def wait_for(version: str) -> None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                # fresh connections land on either worker
                if all(request(port, "POST", "/invocations", rows(models, 1))[1]["x-model-version"] == version
                       for _ in range(10)):
                    return
                time.sleep(0.05)
            raise AssertionError(f"version {version} never served")

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            assert save_spec("credit", spec("2")) == 2  # promote
            wait_for("2")
            assert save_spec("credit", spec("1")) == 3  # roll back
            wait_for("1")
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert statuses and set(statuses) == {200}
        assert {"1", "2"} <= set(versions)
        info = json.loads(request(port, "GET", "/version")[2])
        assert info["generation"] == 3 and info["deployment"] == "credit"


def test_an_idempotency_key_gives_one_answer_across_workers(models, env):
    """Keys live in the state DB: fresh connections (spread over 2 workers by the kernel), sequential or
    concurrent, all get the one stored answer for a key."""
    body = json.dumps(rows(models, 1)).encode()

    def post(key: str) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json", "Idempotency-Key": key})
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("X-Prediction-Id")
        finally:
            conn.close()

    with server(["--model-dir", models["clf"], "--workers", "2", "--no-auth"], env) as port:
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
