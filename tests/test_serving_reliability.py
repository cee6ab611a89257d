"""What a hostile client, a crash and a state-DB outage must not break (issue #11, points 3, 8, 9).

Real `nbprod serve` processes on 127.0.0.1: one under a lowered file-descriptor limit flooded with
idle sockets, one whose state DB is a PostgreSQL address nobody listens on, and a 2-worker
deployment whose PostgreSQL goes away (through a TCP relay this test cuts) while its workers are
killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
from _servers import NBPROD, free_port, request, server_workers
from _serving_models import rows
from conftest import CI_PG_URL, _pg_server, kill_recorded_servers, require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@contextlib.contextmanager
def serve(args: list[str], env: dict, *, nofile: int | None = None):
    """`nbprod serve ...` in its own process group (its RLIMIT_NOFILE lowered to ``nofile``)."""
    port = free_port()

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    proc = subprocess.Popen([NBPROD, "serve", *args, "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(OSError):
                if request(port, "GET", "/ping")[0] == 200:
                    break
            assert time.monotonic() < deadline, "server not ready after 60 s"
            time.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
        proc.stderr.close()


# --- point 8: idle and half-sent connections ----------------------------------------------------


def test_idle_sockets_beyond_the_fd_limit_do_not_lock_out_predictions(serving_models, env):
    """1.5x the server's descriptor limit in idle connections: predictions are still answered."""
    env = dict(env, NBPROD_HEADER_TIMEOUT="120")  # the cap, not the timeout, must make room here
    with serve(["--model-dir", serving_models["clf"], "--no-auth"], env, nofile=512) as port:
        idle: list[socket.socket] = []
        try:
            for _ in range(768):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(3):
                status, _headers, body = request(port, "POST", "/invocations", rows(serving_models))
                assert status == 200, body
            assert request(port, "GET", "/ping")[0] == 200
        finally:
            for s in idle:
                s.close()


def _closed_by_server(sock: socket.socket, timeout: float = 60) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_half_sent_headers_and_idle_connections_are_closed_after_a_bound(serving_models, env):
    env = dict(env, NBPROD_HEADER_TIMEOUT="2")
    with serve(["--model-dir", serving_models["clf"], "--no-auth"], env) as port:
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # keep-alive: answered, then closed
        body = json.dumps(rows(serving_models)).encode()
        for _ in range(2):  # one connection, two requests: keep-alive still works
            kept.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = kept.getresponse()
            assert response.status == 200 and response.read()
        try:
            assert _closed_by_server(slow), "a connection that never finished its headers stayed open"
            assert _closed_by_server(idle), "a connection that never sent a byte stayed open"
            assert _closed_by_server(kept.sock), "an idle keep-alive connection stayed open"
        finally:
            for s in (slow, idle):
                s.close()
            kept.close()


# --- point 9: the state DB down -------------------------------------------------------------------


def test_feedback_and_idempotency_answer_503_without_internals_when_the_state_db_is_down(
        pg_through_relay, serving_models, env):
    relay = pg_through_relay
    env = dict(env, NBPROD_DB_URL=os.environ["NBPROD_DB_URL"])
    body = json.dumps(rows(serving_models)).encode()

    def keyed() -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json",
                                                    "Idempotency-Key": uuid.uuid4().hex})
        r = conn.getresponse()
        answer = r.status, dict(r.getheaders()), r.read()
        conn.close()
        return answer

    with serve(["--model-dir", serving_models["clf"], "--no-auth"], env) as port:
        assert keyed()[0] == 200  # the idempotency store is the state DB
        relay.stop()  # ... which is now gone
        answers = [request(port, "POST", "/feedback", {"prediction_ids": ["x-0"], "labels": [1]}), keyed()]
        for status, headers, raw in answers:
            assert status == 503, raw
            assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) > 0
            error = json.loads(raw)
            assert set(error) == {"error", "message", "fix"} and "state DB" in error["message"]
            text = raw.decode()
            for internal in ("127.0.0.1", str(relay.port), "5432", "psycopg", "postgresql", "search_path",
                             "nbprod_rel_", "Error:"):
                assert internal not in text, f"{internal!r} in {text}"
        assert [json.loads(raw)["error"] for _s, _h, raw in answers] == ["feedback_unavailable", "store_unavailable"]
        assert request(port, "POST", "/invocations", rows(serving_models))[0] == 200  # predictions need no state DB


# --- point 3: the state DB down + workers crash ---------------------------------------------------


class Relay:
    """A TCP relay 127.0.0.1:port -> ``target``: ``stop()`` cuts every connection and refuses new
    ones (the database is gone for whoever uses this port); ``start()`` brings it back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.socks: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            socks, self.socks = self.socks, set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def pg_through_relay(nbprod_home, monkeypatch):
    """The state DB on PostgreSQL (a schema of its own) reached through a :class:`Relay`."""
    pytest.importorskip("psycopg", reason="psycopg (v3) not installed: pip install 'nbprod[postgres]'")
    import sqlalchemy as sa

    from nbprod import state
    from nbprod.config import settings

    server = _pg_server()
    require(server is not None, "no PostgreSQL: set NBPROD_TEST_PG_URL or run one at " + CI_PG_URL)
    url = sa.make_url(server)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relay.start()
    schema = f"nbprod_rel_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    relayed = url.set(host="127.0.0.1", port=relay.port).update_query_dict({"options": f"-csearch_path={schema}"})
    monkeypatch.setenv("NBPROD_DB_URL", relayed.render_as_string(hide_password=False))
    settings.reset()
    try:
        yield relay
    finally:
        relay.stop()
        relay.start()  # the finalizer reads the state DB to find the servers to kill
        kill_recorded_servers()
        state.dispose()
        relay.stop()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def _predict(port: int, token: str, body: bytes) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json",
                                                    "Authorization": f"Bearer {token}"})
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


def test_workers_killed_while_the_state_db_is_down_come_back_and_serve(pg_through_relay, tmp_path):
    from _registry_helpers import pipeline

    from nbprod import registry
    from nbprod.datasets import credit
    from nbprod.deployments import deploy, process
    from nbprod.serving.spec import load_spec, save_spec

    relay = pg_through_relay
    X, y = credit(600, 3)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    dep = deploy("credit-risk@champion", name="credit", server={"workers": 2})
    port = int(dep.url.rstrip("/").rsplit(":", 1)[1])
    frame = X.dropna().head(2)
    body = json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": json.loads(frame.to_json(orient="values"))}}).encode()
    assert _predict(port, dep.token, body) == 200
    workers = server_workers(dep.pid)
    assert len(workers) == 2

    relay.stop()  # PostgreSQL is gone for the server
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while _predict(port, dep.token, body) != 200:  # only a replacement worker can answer this
        assert process.alive(dep.pid), "the server stopped when its workers could not reach the state DB"
        assert time.monotonic() < deadline, "no replacement worker served within 120 s"
        time.sleep(0.2)
    assert not server_workers(dep.pid) & workers

    relay.start()  # the DB is back: the workers' poll picks up a change written now
    spec = load_spec("credit")
    spec.ood = "reject" if spec.ood == "flag" else "flag"
    generation = save_spec("credit", spec)
    deadline, seen = time.monotonic() + 60, 0
    while seen < 10:  # ten answers in a row (over new connections, so from either worker) on the new spec
        status, _headers, raw = request(port, "GET", "/health")
        seen = seen + 1 if status == 200 and json.loads(raw)["generation"] == generation else 0
        assert time.monotonic() < deadline, f"the workers never read generation {generation} after the DB came back"
        if not seen:
            time.sleep(0.2)
