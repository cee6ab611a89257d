"""The server's HTTP connections: bounds on those uvicorn leaves open, and one write per response.

Why: uvicorn closes a keep-alive connection 5 s after its last response (``timeout_keep_alive``),
but a connection that never completes a request's headers — opened and left idle, or sending its
headers a byte at a time — stays open forever. Each holds a file descriptor; at the process's
limit (``ulimit -n``, often 1,024) ``accept()`` fails and every new client, predictions included,
waits until it times out. :func:`http_protocol` gives uvicorn's HTTP protocol — httptools when it
is installed (``uvicorn[standard]``), else h11 — with two bounds:

- **header timeout**: a connection must complete a request's headers within ``header_timeout_s``
  of opening, and of its previous response; otherwise it is closed (by one sweep per second or
  less per process, :class:`_Sweeper`, so within a second after the bound). A request whose headers
  arrived is not affected (its body has the app's ``body_timeout_s``, 408).
- **connection cap**: at most ``max_connections`` per process, below the descriptor limit; a new
  connection beyond it closes the connection that has been idle longest (no request in progress),
  or itself when every other one is busy — so a flood of idle sockets can never lock out a client.

And it sends each response's status line, headers and (first) body in one write, where uvicorn writes
them in two: one ``send`` and one TCP segment less per answer, the same bytes (:class:`_OneWrite`).

Two more of uvicorn's per-request costs, with the same behaviour for clients (httptools): idle keep-alive
connections are closed by the same sweep (``timeout_keep_alive`` to one sweep period after the last
answer, never before) instead of a timer armed at every response and cancelled at the next request; and
uvicorn's proxy-headers layer (``FORWARDED_ALLOW_IPS``, default the loopback: ``client`` and ``scheme`` from a
trusted peer's ``X-Forwarded-For`` / ``-Proto``) runs only for a request it would change — never on an
untrusted peer's connection, and on a trusted one only when such a header came. nbprod itself reads
neither ``client`` nor ``scheme`` (Starlette's trailing-slash redirects and user routes may).

Why the cap leaves room for two accept bursts: asyncio accepts up to ``backlog`` connections per
wake-up before any of them reaches ``connection_made`` (where the cap is enforced), and the
descriptors of the connections it closes are freed one loop turn later. Were the process to hit
its limit anyway, ``accept()`` would pause for a second. So the server listens with
:data:`ACCEPT_BURST` and the cap is the limit minus a reserve minus two bursts.

Settings (environment, read in every worker): ``NBPROD_HEADER_TIMEOUT`` (seconds, default 10)
and ``NBPROD_MAX_CONNECTIONS`` (default: the soft ``RLIMIT_NOFILE`` minus a reserve of an eighth,
at least 64, for model files, the state DB and logs, minus two accept bursts).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
import weakref
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BoundedH11Protocol", "http_protocol", "HTTP_ENV", "header_timeout_s", "max_connections",
           "HEADER_TIMEOUT_ENV", "MAX_CONNECTIONS_ENV", "DEFAULT_HEADER_TIMEOUT_S", "ACCEPT_BURST", "ONE_WRITE",
           "GC_FREEZE_ENV", "GEN0_THRESHOLD"]

HEADER_TIMEOUT_ENV = "NBPROD_HEADER_TIMEOUT"
#: Set by :func:`nbprod.serving.server.run` for its processes: their first connection freezes the heap
#: (``gc.freeze``), the app and models built, so the cyclic GC stops re-scanning them (server.py) ...
GC_FREEZE_ENV = "NBPROD_GC_FREEZE"
#: ... and collects its youngest generation every 10,000 allocations instead of 700 (server.py).
GEN0_THRESHOLD = 10_000
HTTP_ENV = "NBPROD_HTTP"  # h11 | httptools | auto (httptools when installed)
MAX_CONNECTIONS_ENV = "NBPROD_MAX_CONNECTIONS"
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: uvicorn's ``backlog``: the listen queue, and how many connections asyncio accepts per wake-up.
ACCEPT_BURST = 128


def header_timeout_s() -> float:
    """Seconds a connection may take to send a request's headers (``NBPROD_HEADER_TIMEOUT``)."""
    try:
        value = float(os.environ.get(HEADER_TIMEOUT_ENV) or DEFAULT_HEADER_TIMEOUT_S)
    except ValueError:
        return DEFAULT_HEADER_TIMEOUT_S
    return value if value > 0 else DEFAULT_HEADER_TIMEOUT_S


def max_connections() -> int:
    """Open connections allowed per process: ``NBPROD_MAX_CONNECTIONS``, else below the fd limit."""
    raw = os.environ.get(MAX_CONNECTIONS_ENV)
    if raw and raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 10_000
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 10_000
    return max(16, soft - max(64, soft // 8) - 2 * ACCEPT_BURST)


class _OneWrite:
    """The transport a response cycle writes through: a response's status line and headers wait for its
    first body write and leave with it, in one write (one send, one TCP segment for a small answer).

    Why: uvicorn's cycles (httptools and h11) write the headers with one ``transport.write`` and the body
    with another — two syscalls and two loopback segments per answer; one write saves ~3.5 µs of the
    server's CPU per answer, and a wake-up of the client (BENCHMARKS.md, Serving). The bytes and their
    order are exactly uvicorn's; only the headers wait, and never past the current turn of the event loop
    (``_flush`` is scheduled when they are held), nor past a ``close()`` (headers first, then the close,
    as before). A HEAD answer has no body to wait for: its headers go at once. Anything else a cycle asks
    of its transport goes to the real one."""

    __slots__ = ("_transport", "_cycle", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._cycle: Any = cycle  # until the response's first write (its status line and headers) is seen
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:  # the body (or its first part) after held headers: both in one write
            self._held = None
            self._transport.writelines((held, data))  # uvloop: one writev; asyncio: one send of the join
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:  # uvicorn writes nothing else between start and headers
            self._cycle = None  # seen: and the cycle (whose transport this is) is freed by reference counting
            if data and cycle.scope["method"] != "HEAD":
                self._held = data
                self._loop.call_soon(self._flush)
                return
        self._transport.write(data)

    def _flush(self) -> None:
        """The headers' latest moment: the end of the loop turn that held them (a body still to come)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _writes_through_transport(protocol: type, hook: str) -> bool:
    """Whether uvicorn's ``protocol`` is the one :class:`_OneWrite` was made for (uvicorn 0.55): its
    response cycle takes the transport it writes to as ``transport`` and its ``send`` marks
    ``response_started`` before it writes the headers, and the protocol creates the cycle in ``hook``.
    Another uvicorn whose internals differ gets uvicorn's own writes (``ONE_WRITE`` says which;
    tests/test_connections.py fails if the pinned uvicorn falls back)."""
    module = sys.modules.get(protocol.__module__)
    cycle: Any = getattr(module, "RequestResponseCycle", None)
    try:
        params = inspect.signature(cycle.__init__).parameters
        names = set(cycle.send.__code__.co_names)
    except (AttributeError, TypeError, ValueError):
        return False
    return (callable(getattr(protocol, hook, None)) and "transport" in params
            and {"response_started", "response_complete", "transport", "write", "scope"} <= names)


#: What uvicorn 0.55's httptools ``on_response_complete`` touches: counts, resumes reading, starts a
#: pipelined request, else arms the keep-alive timer (which the sweep replaces).
_RESPONSE_COMPLETE_NAMES = {"server_state", "total_requests", "transport", "is_closing", "_unset_keepalive_if_required",
                            "flow", "resume_reading", "pipeline", "pop", "_start_asgi_task", "timeout_keep_alive_task",
                            "loop", "call_later", "timeout_keep_alive", "timeout_keep_alive_handler"}


def _arms_keep_alive_timer_only(protocol: type) -> bool:
    """Whether ``protocol.on_response_complete`` is the one the sweep's keep-alive replaces (uvicorn 0.55,
    httptools), and its ``on_message_begin`` makes a new ``scope`` per request (``_kept_alive``). Another
    uvicorn keeps its own timer (tests/test_connections.py fails if the pinned uvicorn does)."""
    try:
        names = set(protocol.on_response_complete.__code__.co_names)  # type: ignore[attr-defined]
        begin = set(protocol.on_message_begin.__code__.co_names)  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return names == _RESPONSE_COMPLETE_NAMES and "scope" in begin


class _Sweeper:
    """The header timeout of one server's connections (module doc): one timer per process, not one per
    connection and response. Every ``period`` it looks at each connection; one that has been idle (no
    request whose headers arrived) since a sweep at least ``timeout`` ago is closed.

    Why a sweep: a keep-alive connection answers thousands of requests a second, and even one clock
    restart per response (what this replaced) cost ~2% of a small prediction. A connection is idle with
    the same ``cycle`` object between two sweeps only if no request's headers arrived in between (each
    request makes a new cycle), so a sweep needs nothing from the responses. A connection closes after
    ``timeout`` to ``timeout + period`` idle, never before: its idle clock starts at the first sweep that
    sees it idle (or when it opened).

    The keep-alive timeout too, for a protocol whose ``_SWEEPS_KEEP_ALIVE`` is set (httptools): a connection
    idle after a response, with no byte of a next request since, closes ``keep_alive`` to ``keep_alive +
    period`` after that response (uvicorn: exactly ``keep_alive``, by a timer armed at every response and
    cancelled at the next request — ~2% of a small prediction); once a next request began, the header
    timeout applies, as with uvicorn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: Any, timeout: float,
                 keep_alive: float | None = None) -> None:
        self.loop, self.connections, self.timeout = loop, connections, timeout
        #: idle after a response: the header timeout applies too (the next request's), whichever is first
        self.keep_alive = None if keep_alive is None else min(keep_alive, timeout)
        self.period = min(timeout / 4, (keep_alive or timeout) / 4, 1.0)
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.period, self.sweep)

    def sweep(self) -> None:
        self.handle = None
        now, bounded = self.loop.time(), False
        for conn in list(self.connections):
            if not isinstance(conn, _Bounded) or conn.transport.is_closing():
                continue
            bounded = True
            cycle = conn.cycle
            if cycle is not None and not cycle.response_complete:
                conn._swept_cycle = _BUSY  # a request in progress: its response starts the clock again
            elif cycle is not conn._swept_cycle:  # idle since after the previous sweep
                conn._swept_cycle, conn._idle_since = cycle, now
            elif now - conn._idle_since >= (self.keep_alive if self.keep_alive is not None
                                            and conn._kept_alive() else self.timeout):
                conn.transport.close()  # idle, or headers still incomplete: free the descriptor
        if bounded:  # no connection left: the next one starts the sweeps again
            self.start()


_BUSY = object()  # a connection's ``_swept_cycle`` while a request is in progress
#: The sweeper of each server (its ``server_state``) in this process.
_SWEEPERS: weakref.WeakKeyDictionary[Any, _Sweeper] = weakref.WeakKeyDictionary()


class _Bounded:
    """The two bounds (module doc), on top of one of uvicorn's HTTP protocols (h11 or httptools):
    both keep ``cycle``, ``connections``, ``server_state``, ``transport`` and ``loop``."""

    cycle: Any
    connections: Any
    server_state: Any
    transport: Any
    loop: Any

    _header_timeout_s: float | None = None
    _max_connections: int | None = None
    #: Whether the sweep closes this protocol's idle keep-alive connections (it arms no timer per response).
    _SWEEPS_KEEP_ALIVE = False
    timeout_keep_alive: float
    app: Any
    client: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        cls = type(self)
        if cls._header_timeout_s is None:  # this process's first connection (a forked worker's too)
            cls._header_timeout_s, cls._max_connections = header_timeout_s(), max_connections()
            if os.environ.get(GC_FREEZE_ENV) == "1":
                gc.freeze()  # the app is built and its models loaded (uvicorn accepts after the lifespan)
                gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
        self._swept_cycle: Any = None  # what the last sweep saw (None: no request yet, like ``cycle``)
        self._idle_since = self.loop.time()
        sweeper = _SWEEPERS.get(self.server_state)
        if sweeper is None or sweeper.loop is not self.loop:
            sweeper = _SWEEPERS[self.server_state] = _Sweeper(
                self.loop, self.connections, self._header_timeout_s or DEFAULT_HEADER_TIMEOUT_S,
                self.timeout_keep_alive if self._SWEEPS_KEEP_ALIVE else None)
        sweeper.start()
        self._proxied: Any = None  # uvicorn's proxy-headers layer, when this connection's peer is trusted
        app = self.app
        if isinstance(app, ProxyHeadersMiddleware):
            self._direct = app.app
            if (self.client[0] if self.client else None) in app.trusted_hosts:
                self._proxied = app  # a trusted proxy: its X-Forwarded-* rewrite the scope (uvicorn's layer)
            else:
                self.app = app.app  # the layer would change nothing for this peer: skip it
        self._evict_if_over()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _kept_alive(self) -> bool:
        """Idle after a response, no byte of a next request since (the keep-alive timeout's case)."""
        return False

    # -- the connection cap ---------------------------------------------------------------------
    def _evict_if_over(self) -> None:
        live = [c for c in self.connections if not c.transport.is_closing()]
        over = len(live) - (self._max_connections or 10_000)
        if over <= 0:
            return
        now = self.loop.time()  # idle since: the sweep's clock, or now if a request ended since the last sweep
        idle = sorted((c for c in live if c is not self and isinstance(c, _Bounded) and c._idle()),
                      key=lambda c: c._idle_since if c.cycle is c._swept_cycle else now)
        for conn in idle[:over]:
            conn.transport.close()
        if len(idle) < over:  # every other connection is busy: this one waits for none of them
            self.transport.close()


class BoundedH11Protocol(_Bounded, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol (pure Python) with a header timeout, a per-process connection cap, and
    each response's headers and body in one write (:class:`_OneWrite`)."""

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle  # a new request's cycle, made in this call (h11 handles one request at a time)
        if cycle is not None and cycle.transport is self.transport and ONE_WRITE["h11"]:
            cycle.transport = _OneWrite(self.transport, cycle, self.loop)


try:  # uvicorn[standard]: the C parser
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - h11 only
    HttpToolsProtocol = None  # type: ignore[misc, assignment]

if HttpToolsProtocol is not None:
    class BoundedHttpToolsProtocol(_Bounded, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol (C parser) with a header timeout, a per-process connection cap,
        and each response's headers and body in one write (:class:`_OneWrite`)."""

        def on_headers_complete(self) -> None:
            if self._proxied is not None:  # a trusted peer: uvicorn's proxy layer for requests it would change
                self.app = self._direct
                for name, _value in self.headers:
                    if name == b"x-forwarded-proto" or name == b"x-forwarded-for":
                        self.app = self._proxied
                        break
            super().on_headers_complete()
            cycle = self.cycle  # the request's cycle (also a pipelined one, queued)
            if cycle is not None and cycle.transport is self.transport and ONE_WRITE["httptools"]:
                cycle.transport = _OneWrite(self.transport, cycle, self.loop)

        def _kept_alive(self) -> bool:
            cycle = self.cycle  # uvicorn's on_message_begin (a next request's first byte) makes a new scope
            return cycle is not None and self.scope is cycle.scope

    if _arms_keep_alive_timer_only(HttpToolsProtocol):
        def _on_response_complete(self: Any) -> None:
            """uvicorn's ``on_response_complete`` without its keep-alive timer: the sweep closes idle
            connections (:class:`_Sweeper`), so nothing is armed here, nor to cancel at the next request."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()  # unpause data reads if needed
            if self.pipeline:  # start a pipelined request
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)

        BoundedHttpToolsProtocol.on_response_complete = _on_response_complete  # type: ignore[method-assign]
        BoundedHttpToolsProtocol._SWEEPS_KEEP_ALIVE = True

#: Whether each protocol sends a response in one write (``_writes_through_transport``: False on an
#: uvicorn whose internals this module does not know, which then writes as uvicorn does).
ONE_WRITE = {"h11": _writes_through_transport(H11Protocol, "handle_events"),
             "httptools": HttpToolsProtocol is not None
             and _writes_through_transport(HttpToolsProtocol, "on_headers_complete")}


def http_protocol() -> type:
    """The HTTP protocol class a server runs: httptools (uvicorn's C parser, what ``uvicorn[standard]``
    installs) with the bounds when it is installed, else h11 with them. ``NBPROD_HTTP=h11`` or
    ``httptools`` chooses; a missing httptools falls back to h11. A module-level class, so uvicorn
    can hand it to its worker processes."""
    choice = (os.environ.get(HTTP_ENV) or "auto").strip().lower()
    if choice in ("auto", "httptools") and HttpToolsProtocol is not None:
        return BoundedHttpToolsProtocol
    return BoundedH11Protocol
