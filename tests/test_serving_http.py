"""The app under real uvicorn on 127.0.0.1 (in a thread): what only a real socket shows —
clients that go away mid-body, and bodies that never finish."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from _servers import wait_until

from nbprod.serving.app import create_app
from nbprod.serving.spec import DeploymentSpec

pytestmark = pytest.mark.slow  # every test runs the app under a real uvicorn


@pytest.fixture
def live(serving_models, nbprod_home):
    """A real uvicorn serving the classifier on a free loopback port; always stopped."""
    import uvicorn

    spec = DeploymentSpec.single(serving_models["clf"], body_timeout_s=0.5)
    config = uvicorn.Config(create_app(spec, auth=False), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (server.started and server.servers):
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def partial_request(port: int, declared: int, sent: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return s


def test_a_client_that_disconnects_mid_body_is_499_not_a_server_error(live):
    s = partial_request(live, 1000, b'{"dataframe_records": [')

    def metrics() -> str:
        return get(live, "/metrics")[1].decode()

    # the server has the request and waits for the rest of its body (in flight from before reading it)
    wait_until(lambda: "nbprod_in_flight_requests 1.0" in metrics(), 10, "the request in flight")
    s.close()
    wait_until(lambda: 'status="499"' in metrics(), 10, "a 499 after the disconnect")
    text = metrics()
    assert 'nbprod_requests_total{endpoint="invocations",status="499",version="none"} 1.0' in text
    assert 'status="500"' not in text
    assert get(live, "/ping")[0] == 200


def test_a_body_that_never_completes_gets_408_json(live):
    s = partial_request(live, 1000, b'{"dataframe_records": [')
    try:
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < 20:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    err = json.loads(body[: body.rindex(b"}") + 1])
    assert err["error"] == "body_timeout" and err["fix"]
    assert get(live, "/ping")[0] == 200
