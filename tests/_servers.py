"""Real processes and servers on 127.0.0.1 for the tests: `nbprod serve` in its own process group,
a webhook receiver, plain HTTP requests, and polling on a condition (never a fixed sleep).

Plain helpers (context managers and functions); the fixtures built on them live in conftest.py.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

NBPROD = str(Path(sys.executable).parent / "nbprod")

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition",
               interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server started in its own process group: SIGTERM, then SIGKILL after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def cmdline(pid: int) -> bytes:
    """A process's command line as /proc holds it (NUL-separated); b"" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def server_workers(pid: int) -> set[int]:
    """The live uvicorn workers of the server process ``pid``: forked (the first ones, with the server's own
    command line) or spawned (replacements), never multiprocessing's resource tracker."""
    from nbprod.deployments import process

    return {child for child in process.children(pid) if b"resource_tracker" not in cmdline(child)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: dict | None = None, token: str | None = None):
    """One request on a fresh connection: ``(status, headers, body bytes)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def ping(port: int) -> bool:
    """Whether a server on ``port`` answers ``GET /ping`` with 200 (False while nothing listens)."""
    try:
        return request(port, "GET", "/ping")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def serving(args: list[str], env: dict) -> Iterator[tuple[int, subprocess.Popen]]:
    """Start `nbprod serve ...` in its own process group; yield (port, process) once /ping answers; always
    stop the whole group."""
    port = free_port()
    proc = subprocess.Popen([NBPROD, "serve", *args, "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        return ping(port)

    try:
        wait_until(ready, 60, "server answering /ping")
        yield port, proc
    finally:
        stop_group(proc)
        proc.stderr.close()


@contextlib.contextmanager
def server(args: list[str], env: dict) -> Iterator[int]:
    """:func:`serving`, yielding only the port."""
    with serving(args, env) as (port, _proc):
        yield port


@contextlib.contextmanager
def receiver(status: int = 200, hold: threading.Event | None = None) -> Iterator[tuple[str, list[Any]]]:
    """A real HTTP server on 127.0.0.1 recording the JSON posted to it; always shut down.
    ``hold``: each request is recorded, then answered only once the event is set (bounded)."""
    received: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(json.loads(body))
            if hold is not None:
                hold.wait(10)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
