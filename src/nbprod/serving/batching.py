"""Adaptive micro-batching: concurrent requests to one version share one predict call.

Why: the cost of a predict is mostly per call, not per row (scikit-learn: 4.9 ms for 1 row,
6.4 ms for 1,000). Under concurrent load, requests that arrive while a batch is being computed
queue up and go together in the next call, so throughput grows with load. Adaptive: an idle server
adds no wait at all (a lone request runs at once); only when the previous call carried more than
one request does the batcher wait up to ``max_wait_s`` for more, and never past ``max_rows``.

The fast path runs inline on the event loop (tens of microseconds) for batches up to
``INLINE_MAX_ROWS`` rows — with ``direct=True`` (what the router gives a compiled version) a request
of at most that many rows calls it at once, unbatched: its per-call cost is smaller than what
batching costs per request; a larger batch runs on the loop's default executor, so probes keep
answering and the request timeout (504) still applies. The pyfunc path runs on one worker thread
per version, so a slow model never blocks the loop. A failing batch is retried one
request at a time, so a request the model rejects fails alone.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

__all__ = ["MicroBatcher", "INLINE_MAX_ROWS", "LATER"]

INLINE_MAX_ROWS = 2000  # the fast path on more rows takes milliseconds: too long for the event loop

#: What :meth:`MicroBatcher.now` gives when the submission has to wait: ``await submit()`` it then.
LATER: Any = object()


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        if all(isinstance(v, np.ndarray) for v in vals):
            out[k] = np.concatenate(vals)
        else:
            merged: list = []
            for v in vals:
                merged.extend(v.tolist() if isinstance(v, np.ndarray) else v)
            out[k] = merged
    return out


def _slice(result: Any, a: int, b: int) -> Any:
    if hasattr(result, "iloc"):
        return result.iloc[a:b]
    return result[a:b]


class MicroBatcher:
    """Collects ``(columns, n)`` submissions and calls ``fn(columns, n)`` on merged batches."""

    def __init__(self, fn: Callable[[dict, int], Any], *, max_rows: int = 512, max_wait_s: float = 0.001,
                 inline: bool = True, on_batch: Callable[[int], None] | None = None, direct: bool = False) -> None:
        self.fn = fn
        self.direct = direct and inline
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.inline = inline
        self.on_batch = on_batch
        self._queue: list[tuple[dict, int, asyncio.Future]] = []
        self._running = False
        self._last_requests = 0
        self._executor = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbprod-predict")

    def now(self, cols: dict, n: int) -> Any:
        """The answer of a ``direct`` submission that needs no waiting, computed here (no coroutine):
        what :meth:`submit` would return; :data:`LATER` when it would queue (then ``await submit()``)."""
        if self.direct and n <= INLINE_MAX_ROWS and not self._running:
            if self.on_batch is not None:
                self.on_batch(n)
            return self.fn(cols, n)
        return LATER

    async def submit(self, cols: dict, n: int) -> Any:
        if self.direct and n <= INLINE_MAX_ROWS and not self._running:
            # ``direct``: the compiled fast path, called right here. Merging requests saves a few
            # microseconds of numpy per call, and costs more than that in futures, a task and loop
            # turns per request (measured: benchmarks/bench_serve.py); so no batching, no waiting.
            if self.on_batch is not None:
                self.on_batch(n)
            return self.fn(cols, n)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.append((cols, n, fut))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await fut

    def _take(self) -> list[tuple[dict, int, asyncio.Future]]:
        batch: list[tuple[dict, int, asyncio.Future]] = []
        rows = 0
        while self._queue:
            cols, n, fut = self._queue[0]
            if batch and rows + n > self.max_rows:
                break
            self._queue.pop(0)
            if fut.done():  # the caller timed out or went away
                continue
            batch.append((cols, n, fut))
            rows += n
        return batch

    async def _call(self, cols: dict, n: int) -> Any:
        if self.inline and n <= INLINE_MAX_ROWS:
            return self.fn(cols, n)
        if self.inline:
            return await asyncio.get_running_loop().run_in_executor(None, self.fn, cols, n)
        # After close() the version's own thread is gone (``_executor`` is None): a request routed to
        # it just before a traffic change still gets its answer, on the loop's default executor.
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.fn, cols, n)

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self._last_requests > 1 and self.max_wait_s > 0:
                    await asyncio.sleep(self.max_wait_s)  # under load: let the batch fill a little
                else:
                    await asyncio.sleep(0)  # let requests already read off sockets join
                batch = self._take()
                self._last_requests = len(batch)
                if not batch:
                    continue
                total = sum(n for _, n, _ in batch)
                if self.on_batch is not None:
                    self.on_batch(total)
                try:
                    result = await self._call(_merge([c for c, _, _ in batch]), total)
                    at = 0
                    for _, n, fut in batch:
                        if not fut.done():
                            fut.set_result(_slice(result, at, at + n))
                        at += n
                except Exception as exc:  # noqa: BLE001 - delivered to the callers
                    if len(batch) == 1:
                        if not batch[0][2].done():
                            batch[0][2].set_exception(exc)
                        continue
                    for cols, n, fut in batch:  # isolate the request that fails
                        try:
                            r = await self._call(cols, n)
                            if not fut.done():
                                fut.set_result(r)
                        except Exception as one:  # noqa: BLE001
                            if not fut.done():
                                fut.set_exception(one)
        finally:
            self._running = False

    def close(self) -> None:
        """Release the version's thread. Called when a traffic change drops the version while
        requests routed to it may still be in flight: a batch already handed to the thread finishes
        (no ``cancel_futures``), and later submissions run on the default executor, so no request
        routed before the change fails because of it."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
