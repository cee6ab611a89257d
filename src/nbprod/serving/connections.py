"""Bounds on connections that uvicorn leaves open: idle and half-sent ones, and how many at once.

Why: uvicorn closes a keep-alive connection 5 s after its last response (``timeout_keep_alive``),
but a connection that never completes a request's headers — opened and left idle, or sending its
headers a byte at a time — stays open forever. Each holds a file descriptor; at the process's
limit (``ulimit -n``, often 1,024) ``accept()`` fails and every new client, predictions included,
waits until it times out. :func:`http_protocol` gives uvicorn's HTTP protocol — httptools when it
is installed (``uvicorn[standard]``), else h11 — with two bounds:

- **header timeout**: a connection must complete a request's headers within ``header_timeout_s``
  of opening, and of its previous response; otherwise it is closed. A request whose headers
  arrived is not affected (its body has the app's ``body_timeout_s``, 408).
- **connection cap**: at most ``max_connections`` per process, below the descriptor limit; a new
  connection beyond it closes the connection that has been idle longest (no request in progress),
  or itself when every other one is busy — so a flood of idle sockets can never lock out a client.

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
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BoundedH11Protocol", "http_protocol", "HTTP_ENV", "header_timeout_s", "max_connections",
           "HEADER_TIMEOUT_ENV", "MAX_CONNECTIONS_ENV", "DEFAULT_HEADER_TIMEOUT_S", "ACCEPT_BURST"]

HEADER_TIMEOUT_ENV = "NBPROD_HEADER_TIMEOUT"
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


class _Bounded:
    """The two bounds (module doc), on top of one of uvicorn's HTTP protocols (h11 or httptools):
    both keep ``cycle``, ``connections``, ``transport`` and ``loop`` and call ``on_response_complete``."""

    cycle: Any
    connections: Any
    transport: Any
    loop: Any

    _header_timeout_s: float | None = None
    _max_connections: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        cls = type(self)
        if cls._header_timeout_s is None:
            cls._header_timeout_s, cls._max_connections = header_timeout_s(), max_connections()
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()
        self._evict_if_over()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    # -- the header timeout ---------------------------------------------------------------------
    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        """Start the clock for the next request's headers (a new request changes ``self.cycle``).

        One timer per connection, not one per response: a keep-alive connection answers thousands of
        requests a second, and cancelling and scheduling a timer for each cost more than the rest of
        this class. The clock restarts here (``_armed_cycle``, ``_idle_since``); a timer already
        pending stays, and when it fires it looks at the clock and waits again for what is left."""
        if self.transport.is_closing():
            self._disarm()
            return
        self._armed_cycle = self.cycle
        self._idle_since = self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_timeout_s or DEFAULT_HEADER_TIMEOUT_S,
                                                      self._header_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.cycle is not self._armed_cycle or not self._idle() or self.transport.is_closing():
            return  # a request's headers arrived since the clock started: its response re-arms the clock
        left = self._idle_since + (self._header_timeout_s or DEFAULT_HEADER_TIMEOUT_S) - self.loop.time()
        if left > 0:  # the clock restarted after this timer was set: wait for the rest
            self._header_timer = self.loop.call_later(left, self._header_timeout)
            return
        self.transport.close()  # idle, or headers still incomplete: free the descriptor

    # -- the connection cap ---------------------------------------------------------------------
    def _evict_if_over(self) -> None:
        live = [c for c in self.connections if not c.transport.is_closing()]
        over = len(live) - (self._max_connections or 10_000)
        if over <= 0:
            return
        idle = sorted((c for c in live if c is not self and isinstance(c, _Bounded) and c._idle()),
                      key=lambda c: c._idle_since)
        for conn in idle[:over]:
            conn.transport.close()
        if len(idle) < over:  # every other connection is busy: this one waits for none of them
            self.transport.close()


class BoundedH11Protocol(_Bounded, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol (pure Python) with a header timeout and a per-process connection cap."""


try:  # uvicorn[standard]: the C parser
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - h11 only
    HttpToolsProtocol = None  # type: ignore[misc, assignment]

if HttpToolsProtocol is not None:
    class BoundedHttpToolsProtocol(_Bounded, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol (C parser) with a header timeout and a per-process connection cap."""


def http_protocol() -> type:
    """The HTTP protocol class a server runs: httptools (uvicorn's C parser, what ``uvicorn[standard]``
    installs) with the bounds when it is installed, else h11 with them. ``NBPROD_HTTP=h11`` or
    ``httptools`` chooses; a missing httptools falls back to h11. A module-level class, so uvicorn
    can hand it to its worker processes."""
    choice = (os.environ.get(HTTP_ENV) or "auto").strip().lower()
    if choice in ("auto", "httptools") and HttpToolsProtocol is not None:
        return BoundedHttpToolsProtocol
    return BoundedH11Protocol
