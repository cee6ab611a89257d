"""The request path's metric updates, held in this process and added to prometheus-client's values in batches.

Why: in multiprocess mode (a server with several workers) each ``inc`` or ``observe`` of
prometheus-client is a write into a memory-mapped file under a lock, after a process-id check; a
prediction request made about ten of them, ~10 % of a worker's time on a 1-row request (py-spy,
issue 13). Here a request only appends the amount to a :class:`collections.deque` — atomic under
the GIL, so no lock and any thread may call it — and :func:`flush` adds what piled up to the real
values: one write per value touched (a counter, a histogram's sum and each bucket hit), however
many requests there were.

Who flushes: one daemon thread per process, every :data:`FLUSH_INTERVAL_S` (a thread rather than
the event loop: updates also come from threads — a model's executor, the log writer — the wrappers
exist before any loop runs, and the serving app needs no hook for it); the scrape, before it
collects (so one process's own figures are always exact); and the owner at a clean stop (the
serving app's lifespan end, or :mod:`atexit`). A worker killed outright (SIGKILL, OOM) loses its
updates of the last interval at most.
A fork starts the child with nothing pending (what was pending is the parent's to write) and
its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FLUSH_INTERVAL_S", "INTERVAL_ENV", "PendingCounter", "PendingGauge", "PendingHistogram", "Pending",
           "flush", "watch", "unwatch", "histogram_layout"]

log = logging.getLogger("nbprod.serving")

INTERVAL_ENV = "NBPROD_METRICS_FLUSH_S"


def _interval() -> float:
    """The thread's flush interval: ``NBPROD_METRICS_FLUSH_S`` (seconds) or 0.05. Prometheus scrapes every
    15 s or so, so a scrape of one worker that sees the others 50 ms late is as good as exact; the
    variable exists for tests, which set it high to see what only a scrape or a clean stop writes."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw) if raw else 0.05
    except ValueError:
        value = float("nan")
    if not 0.001 <= value <= 86400:
        log.warning("nbprod: %s=%r is not a number of seconds between 0.001 and 86400; flushing the serving "
                    "metrics every 0.05 s", INTERVAL_ENV, raw)
        value = 0.05
    return value


FLUSH_INTERVAL_S = _interval()
_FEW = 16  # observe_many: up to this many values go in one by one; more as one array


class _Pending:
    """Amounts kept in memory for ``target`` until a flush takes them (:meth:`_take`)."""

    __slots__ = ("target", "_pending")

    def __init__(self, target: Any) -> None:
        self.target = target
        self._pending: deque[float] = deque()

    def drop(self) -> None:
        self._pending.clear()

    def _take(self) -> tuple[int, float]:
        """How many amounts were pending and their sum, taken out one by one (another thread may append)."""
        q = self._pending
        n = len(q)
        total = 0.0
        for _ in range(n):
            total += q.popleft()
        return n, total


class PendingCounter(_Pending):
    """A counter child's ``inc``, kept in memory until :meth:`flush`."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:  # as prometheus-client's Counter.inc: raised to the caller, not to the flush
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._pending.append(amount)

    def flush(self) -> None:
        n, total = self._take()
        if n:
            self.target.inc(total)


class PendingGauge(_Pending):
    """A gauge's ``inc``/``dec``, kept in memory until :meth:`flush` (which adds their net sum);
    anything else (``set``, ``collect``, ...) is the gauge's own, after a flush where it matters."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        self._pending.append(amount)

    def dec(self, amount: float = 1) -> None:
        self._pending.append(-amount)

    def set(self, value: float) -> None:
        self.flush()
        self.target.set(value)

    def flush(self) -> None:
        _, total = self._take()
        if total:
            self.target.inc(total)

    def __getattr__(self, name: str) -> Any:
        if name == "target":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.target, name)


def histogram_layout(child: Any) -> tuple[tuple[float, ...], list, Any] | None:
    """A prometheus-client histogram child's upper bounds (last +Inf), bucket values and sum value,
    or None when it is not laid out that way (then it is written to directly, as before)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        return None
    return tuple(bounds), buckets, total


class PendingHistogram:
    """A histogram child's ``observe``, kept in memory until :meth:`flush`, which buckets the values as
    ``observe`` does (first upper bound >= value; a NaN adds to the sum and to no bucket)."""

    __slots__ = ("target", "observe", "_bounds", "_buckets", "_sum", "_one", "_many")

    def __init__(self, target: Any) -> None:
        layout = histogram_layout(target)
        if layout is None:
            raise TypeError(f"not a prometheus-client histogram child: {type(target).__name__}")
        bounds, self._buckets, self._sum = layout
        self.target = target
        self._bounds = np.asarray(bounds, dtype=np.float64)
        self._one: deque[float] = deque()
        self._many: deque[np.ndarray] = deque()
        self.observe: Callable[[float], None] = self._one.append  # the cheapest call there is

    def observe_many(self, values: np.ndarray) -> None:
        """Every value of a float array: a few as single observations, more as a copy of the array (the
        flush buckets everything at once: one numpy pass per flush, not per request)."""
        if len(values) <= _FEW:
            self._one.extend(values.tolist())
        else:
            self._many.append(np.array(values, dtype=np.float64))  # a copy: the caller's array may change

    def drop(self) -> None:
        self._one.clear()
        self._many.clear()

    def flush(self) -> None:
        one, many = self._one, self._many
        n, m = len(one), len(many)
        if not n and not m:
            return
        parts = [many.popleft() for _ in range(m)]
        if n:
            parts.append(np.asarray([one.popleft() for _ in range(n)], dtype=np.float64))
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        k = len(self._bounds)
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=k + 1)[:k]  # NaN: past +Inf
        self._sum.inc(float(values.sum()))
        for i in np.flatnonzero(counts).tolist():
            self._buckets[i].inc(int(counts[i]))


Pending = PendingCounter | PendingGauge | PendingHistogram


# --- the process's flusher --------------------------------------------------------------------------------

class _State:
    """What this process flushes, and how (re-made in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one flush at a time: a scrape's flush waits for the thread's to end
        self.owners: weakref.WeakSet[Any] = weakref.WeakSet()  # objects with ``pending()``: their buffers
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()


_state = _State()


def flush(owner: Any) -> None:
    """Add everything ``owner``'s buffers hold to their prometheus-client values, now."""
    with _state.lock:
        for p in list(owner.pending()):
            p.flush()


def watch(owner: Any) -> None:
    """Flush ``owner``'s buffers every :data:`FLUSH_INTERVAL_S` from now on (held weakly)."""
    _state.owners.add(owner)
    if _state.thread is None:
        _start()


def unwatch(owner: Any) -> None:
    _state.owners.discard(owner)


def _start() -> None:
    state = _state
    state.thread = threading.Thread(target=_run, args=(state,), name="nbprod-metrics-flush", daemon=True)
    state.thread.start()


def _run(state: _State) -> None:
    failing = False
    while not state.stop.wait(FLUSH_INTERVAL_S):
        for owner in list(state.owners):
            try:
                flush(owner)
                failing = False
            except Exception as exc:  # noqa: BLE001 - a metrics write never ends the flushing (nor a request)
                if not failing:
                    log.warning("nbprod: cannot write the serving metrics (%s: %s)", type(exc).__name__, exc)
                failing = True


_held_at_fork: list[bool] = []


def _before_fork() -> None:
    """No flush in progress while the process forks: the child would inherit prometheus-client's value
    lock held by a thread it does not have. Bounded: a flush that hangs does not hang the fork."""
    _held_at_fork.append(_state.lock.acquire(timeout=5))


def _after_fork_in_parent() -> None:
    if _held_at_fork.pop():
        _state.lock.release()


def _after_fork_in_child() -> None:
    global _state
    _held_at_fork.clear()
    owners = list(_state.owners)
    _state = _State()  # the parent's lock may have been held by its thread, which the child does not have
    for owner in owners:
        for p in owner.pending():
            p.drop()  # the parent writes these itself
        _state.owners.add(owner)
    if owners:
        _start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
