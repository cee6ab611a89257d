"""The model server's HTTP connections (serving/connections.py) on a real uvicorn on 127.0.0.1.

One write per response: nbprod's protocol and uvicorn's own, side by side on the same raw-socket
conversations, must send the same bytes; nbprod's in one ``transport.write`` per complete response
(uvicorn: two, headers then body). Every other path (streaming, HEAD, 204/304, the 500 path,
``Connection: close``, pipelining, 100-continue, a client gone, a paused transport) sends the same bytes
as uvicorn's. The writes are counted on the connection's real transport, wrapped before uvicorn sees it.

The header timeout: one sweep per server, no timer per response; connections that never complete
their headers, or sit idle, still close, busy ones do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from _servers import free_port, wait_until
from uvicorn.protocols.http.h11_impl import H11Protocol

from nbprod.serving import connections
from nbprod.serving.connections import GEN0_THRESHOLD, BoundedH11Protocol, _Bounded, _Sweeper

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from nbprod.serving.connections import BoundedHttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without httptools
    HttpToolsProtocol = BoundedHttpToolsProtocol = None  # type: ignore[misc, assignment]

pytestmark = [pytest.mark.timeout(120)]

IMPLS = ["httptools", "h11"]
BIG = 8 * 1024 * 1024  # beyond the socket buffers: the transport pauses writing while the client does not read


class _Counted:
    """A connection's real transport, counting the writes that carry bytes (one per send, or writev)."""

    def __init__(self, transport: asyncio.Transport, writes: list[int]) -> None:
        self._transport, self.writes = transport, writes

    def write(self, data: bytes) -> None:
        if data:
            self.writes.append(len(data))
        self._transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        if any(parts):
            self.writes.append(sum(len(p) for p in parts))
        self._transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _counting(protocol: type, writes: list[list[int]], timeout: float = 10.0, made: list | None = None) -> type:
    """``protocol`` with each connection's writes recorded (one list per connection, in order), and each
    connection's protocol in ``made``."""

    class Counting(protocol):  # type: ignore[misc, valid-type]
        _header_timeout_s, _max_connections = timeout, 1000

        def connection_made(self, transport: asyncio.Transport) -> None:
            mine: list[int] = []
            writes.append(mine)
            if made is not None:
                made.append(self)
            super().connection_made(_Counted(transport, mine))

    return Counting


class _App:
    """A raw ASGI app with one path per case (raw, so the ASGI messages are exactly the case's)."""

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None  # set by the test (through the loop) to let /held go on
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.loop = asyncio.get_running_loop()
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = b'{"predictions":[0],"echo":"' + body[:40] + b'"}'
        length = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        if path == "/cl":
            await send({"type": "http.response.start", "status": 200, "headers": length})
            await send({"type": "http.response.body", "body": answer})
        elif path == "/cl-parts":
            await send({"type": "http.response.start", "status": 200, "headers": length})
            await send({"type": "http.response.body", "body": answer[:10], "more_body": True})
            await send({"type": "http.response.body", "body": answer[10:], "more_body": False})
        elif path == "/chunked":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"one", "more_body": True})
            await send({"type": "http.response.body", "body": b"two", "more_body": False})
        elif path in ("/204", "/304"):
            await send({"type": "http.response.start", "status": int(path[1:]), "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/empty":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/close":
            await send({"type": "http.response.start", "status": 200, "headers": [*length, (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": answer})
        elif path == "/error":
            raise RuntimeError("before the response: uvicorn's 500")
        elif path == "/error-after-start":
            await send({"type": "http.response.start", "status": 200, "headers": length})
            raise RuntimeError("after the headers: uvicorn closes the connection")
        elif path == "/held":  # headers, then the body only once the test saw the headers arrive
            self.release = asyncio.Event()
            await send({"type": "http.response.start", "status": 200, "headers": length})
            await self.release.wait()
            await send({"type": "http.response.body", "body": answer})
        elif path == "/gone":  # headers, then the client goes away before the body
            await send({"type": "http.response.start", "status": 200, "headers": length})
            assert (await receive())["type"] == "http.disconnect"
            await send({"type": "http.response.body", "body": answer})
        elif path == "/big":
            big = bytes(range(256)) * (BIG // 256)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(2 * BIG).encode())]})
            await send({"type": "http.response.body", "body": big, "more_body": True})
            await send({"type": "http.response.body", "body": big[::-1]})
        elif path == "/busy":  # a request in progress until the test releases it
            self.release = asyncio.Event()
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": length})
            await send({"type": "http.response.body", "body": answer})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})

    def go_on(self) -> None:
        """Let ``/held`` or ``/busy`` send its answer."""
        assert self.loop is not None
        wait_until(lambda: self.release is not None, 10, "the app waiting")
        self.loop.call_soon_threadsafe(self.release.set)  # type: ignore[union-attr]


@contextlib.contextmanager
def _serve(protocol: type, app: Any, *, loop: str = "auto", **settings: Any) -> Iterator[int]:
    """A real uvicorn on 127.0.0.1 in a thread, with ``protocol`` (no Date header: bytes comparable)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, loop=loop, lifespan="off",
                            log_level="critical", date_header=False, ws="none",
                            **{"timeout_keep_alive": 30, **settings})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "uvicorn started")
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def _exchange(port: int, data: bytes, *, expect: int = 1, close_after: bytes | None = None,
              head: bool = False) -> bytes:
    """Send ``data`` on a new connection and read until ``expect`` responses arrived or the server closed.

    ``close_after``: close as soon as these bytes arrived (a client gone mid-response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        got = b""
        while True:
            if close_after is not None and close_after in got:
                return got
            if _complete(got, head) >= expect:
                return got
            chunk = sock.recv(1 << 20)
            if not chunk:
                return got
            got += chunk


def _complete(raw: bytes, head_only: bool = False) -> int:
    """How many whole responses ``raw`` holds (Content-Length or chunked; ``head_only``: answers to HEAD)."""
    count = 0
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            return count
        lines = head.lower().split(b"\r\n")
        if lines[0].startswith(b"http/1.1 100"):
            raw = rest
            continue
        length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), None)
        if b"transfer-encoding: chunked" in lines:
            end = rest.find(b"0\r\n\r\n")
            if end < 0:
                return count
            raw = rest[end + 5:]
        elif length is not None and not head_only:
            if len(rest) < length:
                return count
            raw = rest[length:]
        else:
            raw = rest
        count += 1


def _request(method: str, path: str, body: bytes = b"", headers: str = "", version: str = "1.1") -> bytes:
    return (f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)


def _both(impl: str) -> tuple[type, type]:
    if impl == "httptools":
        if HttpToolsProtocol is None:
            pytest.skip("httptools is not installed (uvicorn[standard])")
        return HttpToolsProtocol, BoundedHttpToolsProtocol
    return H11Protocol, BoundedH11Protocol


def _side_by_side(impl: str, conversation: Any, loop: str = "auto") -> tuple[Any, list, Any, list]:
    """``conversation(port, app, made)`` against uvicorn's protocol and nbprod's: (answer, writes) of each."""
    results: list[Any] = []
    for protocol in _both(impl):
        writes: list[list[int]] = []
        made: list = []
        app = _App()
        with _serve(_counting(protocol, writes, made=made), app, loop=loop) as port:
            answer = conversation(port, app, made)
            wait_until(lambda w=writes: w and all(w), 10, "the server's writes")
        results += [answer, [len(w) for w in writes]]
    return tuple(results)  # type: ignore[return-value]


def test_the_pinned_uvicorn_gets_one_write_per_response():
    """Fails when the guard falls back to uvicorn's two writes with the uvicorn this project pins:
    then ``_writes_through_transport`` no longer recognises uvicorn's internals and needs a look."""
    assert connections.ONE_WRITE["h11"] is True
    if HttpToolsProtocol is not None:
        assert connections.ONE_WRITE["httptools"] is True


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_complete_response_leaves_in_one_write_with_uvicorns_bytes(impl, loop):
    request = _request("POST", "/cl", b'{"x": 1}')
    theirs, their_writes, ours, our_writes = _side_by_side(impl, lambda port, app, made: _exchange(port, request), loop)
    assert ours == theirs and ours.startswith(b"HTTP/1.1 200 OK\r\n") and ours.endswith(b'"echo":"{"x": 1}"}')
    assert their_writes == [2] and our_writes == [1]


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_keep_alive_and_pipelined_requests_get_uvicorns_bytes_in_one_write_each(impl):
    paths = ["/cl", "/empty", "/404", "/cl"]
    pipelined = b"".join(_request("POST", p, f"body{i}".encode()) for i, p in enumerate(paths))

    def conversation(port: int, app: _App, made: list) -> list[bytes]:
        answers = [_exchange(port, pipelined, expect=len(paths))]  # all in one send: pipelined
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:  # one at a time: keep-alive
            for i, path in enumerate(paths):
                sock.sendall(_request("POST", path, f"body{i}".encode()))
                got = b""
                while _complete(got) < 1:
                    got += sock.recv(1 << 16)
                answers.append(got)
        return answers

    theirs, their_writes, ours, our_writes = _side_by_side(impl, conversation)
    assert ours == theirs and _complete(ours[0]) == len(paths)
    # each response: uvicorn's headers and body (an empty body is no write), nbprod's one write
    assert their_writes == [2 + 1 + 1 + 2] * 2 and our_writes == [len(paths)] * 2


CASES = {  # name: (request, nbprod's writes, uvicorn's writes, whether the server closes)
    "parts of a Content-Length body": (_request("GET", "/cl-parts"), 2, 3, False),
    "chunked": (_request("GET", "/chunked"), 2, 3, False),
    "HEAD": (_request("HEAD", "/cl"), 1, 1, False),
    "204": (_request("GET", "/204"), 1, 1, False),
    "304": (_request("GET", "/304"), 1, 1, False),
    "Content-Length 0": (_request("GET", "/empty"), 1, 1, False),
    "Connection: close from the app": (_request("GET", "/close"), 1, 2, True),
    "Connection: close from the client": (_request("GET", "/cl", headers="Connection: close\r\n"), 1, 2, True),
    "HTTP/1.0": (_request("GET", "/cl", version="1.0"), 1, 2, True),
    "500 before the response": (_request("GET", "/error"), 1, 2, True),
    "error after the headers": (_request("GET", "/error-after-start"), 1, 1, True),
}


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_other_response_path_sends_uvicorns_bytes(impl, case):
    request, our_count, their_count, closes = CASES[case]
    if impl == "h11" and case == "chunked":
        their_count = 4  # h11 writes the closing chunk on its own (its EndOfMessage)
        our_count = 3
    if impl == "h11" and case == "500 before the response":
        their_count, our_count = 3, 2  # h11's 500 is chunked (no Content-Length): headers, data, closing chunk

    def conversation(port: int, app: _App, made: list) -> bytes:  # until the server closes, or one answer
        return _exchange(port, request, expect=99 if closes else 1, head=case == "HEAD")

    theirs, their_writes, ours, our_writes = _side_by_side(impl, conversation)
    assert ours == theirs and ours.startswith(b"HTTP/1.")
    assert their_writes == [their_count] and our_writes == [our_count]


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_headers_never_wait_for_a_body_that_comes_later(impl):
    """An app that sends its headers and waits: the client gets them at once, as from uvicorn."""

    def conversation(port: int, app: _App, made: list) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(_request("GET", "/held"))
            got = b""
            while b"\r\n\r\n" not in got:  # the headers alone (a timeout here: they were held)
                got += sock.recv(4096)
            app.go_on()
            while _complete(got) < 1:
                got += sock.recv(4096)
            return got

    theirs, their_writes, ours, our_writes = _side_by_side(impl, conversation)
    assert ours == theirs and their_writes == our_writes == [2]


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_a_client_gone_after_the_headers_gets_nothing_more(impl):
    def conversation(port: int, app: _App, made: list) -> bytes:
        return _exchange(port, _request("GET", "/gone"), close_after=b"\r\n\r\n")

    theirs, their_writes, ours, our_writes = _side_by_side(impl, conversation)
    assert ours == theirs and their_writes == our_writes == [1]  # the headers; the body is not sent


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_100_continue_and_a_paused_transport_send_uvicorns_bytes(impl):
    body = b'{"x": 2}'

    def conversation(port: int, app: _App, made: list) -> list[bytes]:
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            head = _request("POST", "/cl", body, headers="Expect: 100-continue\r\n")[:-len(body)]
            sock.sendall(head)
            got = b""
            while b"100 Continue\r\n\r\n" not in got:  # the interim answer before the body is sent
                got += sock.recv(4096)
            sock.sendall(body)
            while _complete(got) < 1:
                got += sock.recv(4096)
            answers.append(got)
            sock.sendall(_request("GET", "/big"))  # 16 MiB the client reads only once the server paused
            wait_until(lambda: made[0].flow.write_paused, 30, "the server's writes paused")
            got = b""
            while _complete(got) < 1:
                got += sock.recv(1 << 20)
            answers.append(got)
        return answers

    theirs, their_writes, ours, our_writes = _side_by_side(impl, conversation)
    assert ours == theirs and len(ours[1]) > 2 * BIG
    assert their_writes == [1 + 2 + 3] and our_writes == [1 + 1 + 2]  # 100 Continue, /cl, /big


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_a_finished_cycle_is_freed_by_reference_counting(impl):
    """The wrapper and the cycle it writes for make no reference cycle: with the cyclic GC off, 100
    answered requests leave no more of uvicorn's cycles alive than uvicorn's own protocol does."""
    import gc

    def conversation(port: int, app: _App, made: list) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            gc.collect()
            gc.disable()
            try:
                for _ in range(100):
                    sock.sendall(_request("POST", "/cl", b"x"))
                    got = b""
                    while _complete(got) < 1:
                        got += sock.recv(65536)
                return sum(1 for o in gc.get_objects() if type(o).__name__ == "RequestResponseCycle")
            finally:
                gc.enable()

    theirs, _their_writes, ours, _our_writes = _side_by_side(impl, conversation)
    assert ours <= theirs <= 2


# --- the header timeout: one sweep per server ------------------------------------------------------


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_half_sent_idle_and_finished_connections_close_and_busy_ones_stay(impl):
    """Header timeout 1 s: a connection with half its headers, one that never sent a byte and one idle
    after its answers are closed; one whose request is in progress past the timeout is not, and
    closes once idle after its answer. Keep-alive requests in a row keep their connection open."""
    writes: list[list[int]] = []
    app = _App()
    with _serve(_counting(_both(impl)[1], writes, timeout=1.0), app) as port:
        busy = socket.create_connection(("127.0.0.1", port), timeout=20)
        busy.sendall(_request("GET", "/busy"))
        wait_until(lambda: app.release is not None, 10, "the busy request in the app")
        half = socket.create_connection(("127.0.0.1", port), timeout=20)
        half.sendall(b"GET /cl HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        idle = socket.create_connection(("127.0.0.1", port), timeout=20)
        used = socket.create_connection(("127.0.0.1", port), timeout=20)
        kept = socket.create_connection(("127.0.0.1", port), timeout=20)
        for sock in (used, kept):
            sock.sendall(_request("GET", "/cl"))
            sock.settimeout(20)
            assert _complete(sock.recv(4096)) == 1
        start = time.monotonic()
        while not (_closed(half) and _closed(idle) and _closed(used)):  # polls; kept sends a request a time
            kept.sendall(_request("GET", "/cl"))
            kept.settimeout(20)
            assert _complete(kept.recv(4096)) == 1, "a keep-alive connection in use was closed"
            assert time.monotonic() - start < 30, "idle connections not closed within 30 s"
            time.sleep(0.01)  # the polling interval
        assert not _closed(busy), "a connection with a request in progress was closed"
        app.go_on()
        busy.settimeout(20)
        assert _complete(busy.recv(4096)) == 1
        wait_until(lambda: _closed(busy), 30, "the busy connection closed once idle")
        for sock in (busy, half, idle, used, kept):
            sock.close()


class _FakeLoop:
    """The sweep's event loop on a fake clock: ``advance_to`` runs the due timers, earliest first (and those
    they arm meanwhile), and leaves the clock at ``end``."""

    def __init__(self) -> None:
        self.now, self.timers = 0.0, []

    def time(self) -> float:
        return self.now

    def call_later(self, delay, fn):
        self.timers.append((self.now + delay, fn))
        return object()

    def advance_to(self, end: float) -> None:
        while self.timers and min(t[0] for t in self.timers) <= end:
            due = min(self.timers, key=lambda t: t[0])
            self.timers.remove(due)
            self.now = due[0]
            due[1]()
        self.now = end


class _FakeTransport:
    closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _FakeCycle:
    def __init__(self, complete: bool = True) -> None:
        self.response_complete = complete


def test_the_sweep_closes_after_the_timeout_never_before_and_arms_no_timer_per_response():
    """The sweep (fake clock): 1,000 responses on one connection arm nothing; the connection closes
    between ``timeout`` and ``timeout + period`` after its last response; a busy one stays open."""

    class Conn(_Bounded):
        def __init__(self, loop: _FakeLoop) -> None:
            self.loop, self.cycle, self.transport, self.connections = loop, None, _FakeTransport(), connections_
            self._swept_cycle, self._idle_since = None, loop.time()
            connections_.add(self)

    loop, connections_ = _FakeLoop(), set()
    sweeper = _Sweeper(loop, connections_, 10.0)  # type: ignore[arg-type]
    assert sweeper.period == 1.0
    conn, busy = Conn(loop), Conn(loop)
    sweeper.start()
    for _ in range(1000):  # 1,000 requests on one connection within 4 s
        conn.cycle = _FakeCycle()
        last = loop.now
        loop.advance_to(loop.now + 0.004)
    assert len(loop.timers) == 1  # the sweep's own, nothing per response
    busy.cycle = _FakeCycle(complete=False)  # a request in progress
    loop.advance_to(last + 9.99)
    assert not conn.transport.closed  # not before the timeout
    loop.advance_to(last + 11.0)  # within timeout + period of the last response
    assert conn.transport.closed and not busy.transport.closed
    loop.advance_to(loop.now + 60)
    assert not busy.transport.closed
    busy.cycle.response_complete = True
    done = loop.now
    loop.advance_to(loop.now + 9.99)
    assert not busy.transport.closed
    loop.advance_to(done + 11.0)
    assert busy.transport.closed
    loop.advance_to(loop.now + 5.0)
    assert loop.timers == []  # no connection left: the sweeps stop (the next connection starts them)


def test_the_pinned_uvicorn_has_its_keep_alive_timeout_swept():
    """Fails when the pinned uvicorn's httptools ``on_response_complete`` is no longer the one the sweep's
    keep-alive replaces (then it arms uvicorn's timer per response again, and needs a look)."""
    if HttpToolsProtocol is None:
        pytest.skip("httptools is not installed (uvicorn[standard])")
    assert BoundedHttpToolsProtocol._SWEEPS_KEEP_ALIVE is True
    assert BoundedH11Protocol._SWEEPS_KEEP_ALIVE is False  # h11 keeps uvicorn's timer


@pytest.mark.slow
def test_an_idle_keep_alive_connection_closes_by_the_sweep_with_no_timer_per_response():
    """httptools, keep-alive 1 s, header timeout 10 s: after its answers a connection arms no timer
    (uvicorn: one per response), and closes once idle for the keep-alive timeout — not the header timeout's
    10 s; a connection whose next request began after its answer is held to the header timeout (the fake
    clock test below shows both bounds)."""
    if HttpToolsProtocol is None:
        pytest.skip("httptools is not installed (uvicorn[standard])")
    writes: list[list[int]] = []
    made: list = []
    app = _App()
    with _serve(_counting(BoundedHttpToolsProtocol, writes, timeout=10.0, made=made), app,
                timeout_keep_alive=1) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        for _ in range(3):
            sock.sendall(_request("GET", "/cl"))
            got = b""
            while _complete(got) < 1:
                got += sock.recv(4096)
        proto = made[0]
        assert proto.timeout_keep_alive_task is None and proto._kept_alive()
        # within the keep-alive timeout and a sweep, before the header timeout (10 s) would
        wait_until(lambda: _closed(sock), 8, "the idle keep-alive connection closed")
        sock.close()


def test_the_sweep_closes_kept_alive_connections_after_the_keep_alive_timeout_never_before():
    """The sweep's keep-alive (fake clock): a connection idle after its response closes between
    ``keep_alive`` and ``keep_alive + period`` after it; one whose next request's headers began is held to
    the header timeout, as uvicorn's ``data_received`` cancelling its keep-alive timer did."""

    class Conn(_Bounded):
        def __init__(self, loop: _FakeLoop, begun: bool) -> None:
            self.loop, self.cycle, self.transport, self.begun = loop, _FakeCycle(), _FakeTransport(), begun
            self._swept_cycle, self._idle_since = None, loop.time()
            conns.add(self)

        def _kept_alive(self) -> bool:
            return not self.begun

    loop, conns = _FakeLoop(), set[Any]()
    sweeper = _Sweeper(loop, conns, 10.0, keep_alive=5.0)  # type: ignore[arg-type]
    assert sweeper.period == 1.0
    idle, begun = Conn(loop, begun=False), Conn(loop, begun=True)
    sweeper.start()
    loop.advance_to(4.99)
    assert not idle.transport.closed
    loop.advance_to(6.0)
    assert idle.transport.closed and not begun.transport.closed
    loop.advance_to(9.99)
    assert not begun.transport.closed
    loop.advance_to(11.0)
    assert begun.transport.closed


def _client_scope_app(seen: list) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append((scope["client"][0], scope["scheme"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    return app


PROXIED = {  # request headers: what a trusted peer's X-Forwarded-* make of the scope
    "none": "",
    "for": "X-Forwarded-For: 203.0.113.7\r\n",
    "proto": "X-Forwarded-Proto: https\r\n",
    "both, upper case": "X-FORWARDED-FOR: 198.51.100.2, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("trusted", ["127.0.0.1", "10.0.0.1"])
def test_proxy_headers_give_uvicorns_client_and_scheme_and_skip_its_layer_when_they_change_nothing(impl, trusted):
    """uvicorn's proxy-headers layer (``FORWARDED_ALLOW_IPS``, default the loopback) rewrites ``client`` and
    ``scheme`` from X-Forwarded-For/-Proto of a trusted peer: nbprod's protocol gives the app the same, on
    keep-alive requests with and without those headers, and runs that layer only for a request it would
    change (an untrusted peer's connection never)."""
    results = []
    for protocol in _both(impl):
        seen: list = []
        made: list = []
        with _serve(_counting(protocol, [], made=made), _client_scope_app(seen),
                    forwarded_allow_ips=trusted) as port:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                for headers in [*PROXIED.values(), ""]:
                    sock.sendall(_request("GET", "/", headers=headers))
                    got = b""
                    while _complete(got) < 1:
                        got += sock.recv(4096)
            apps = [type(p.app).__name__ for p in made]
        results.append(seen)
    theirs, ours = results
    assert ours == theirs and len(ours) == len(PROXIED) + 1
    if trusted == "127.0.0.1":
        assert ours[1] == ("203.0.113.7", "http") and ours[2] == ("127.0.0.1", "https")
        assert ours[3] == ("198.51.100.2", "https") and ours[-1] == ("127.0.0.1", "http")
    else:
        assert set(ours) == {("127.0.0.1", "http")}
    if impl == "httptools" or trusted != "127.0.0.1":  # the layer not left in place after a plain request
        assert apps == ["function"]


# --- the start-up heap frozen in a serving process ----------------------------------------------------

_FREEZE_SCRIPT = r'''
import gc, json, sys
from nbprod.serving.server import run

built = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"frozen": gc.get_freeze_count(), "app_tracked": any(o is built[0] for o in gc.get_objects()),
                       "gen0": gc.get_threshold()[0]})
    length = str(len(body)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
    await send({"type": "http.response.body", "body": body.encode()})


def build():
    built.append({"a model": [1, 2, 3]})  # what the app builds at start-up
    return app


run(None, build, port=int(sys.argv[1]), workers=1, log_level="critical")
'''


@pytest.mark.slow
def test_a_serving_process_freezes_its_start_up_heap_before_it_answers(tmp_path):
    """``server.run``: by the first answer, what the process built at start-up is out of the cyclic GC's
    generations (``gc.freeze``), so full collections no longer re-scan it, and young collections are rarer."""
    import http.client
    import json
    import subprocess
    import sys

    script = tmp_path / "serve.py"
    script.write_text(_FREEZE_SCRIPT)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stderr=subprocess.PIPE)
    try:
        def answer() -> dict | None:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                return json.loads(conn.getresponse().read())
            except OSError:
                return None

        got = wait_until(answer, 60, "the server's answer")
        assert got is not None
        assert got["frozen"] > 1000 and got["app_tracked"] is False and got["gen0"] == GEN0_THRESHOLD
    finally:
        proc.terminate()
        proc.wait(15)
        proc.stderr.close()  # type: ignore[union-attr]
