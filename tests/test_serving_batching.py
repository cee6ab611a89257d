"""Adaptive micro-batching (nbprod.serving.batching) on its own, with real asyncio and threads."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from nbprod.serving.batching import INLINE_MAX_ROWS, MicroBatcher


def test_concurrent_requests_share_one_call_bounded_by_max_rows():
    calls: list[int] = []

    def fn(cols, n):
        calls.append(n)
        return cols["x"] * 2

    async def run():
        b = MicroBatcher(fn, max_rows=10, max_wait_s=0.001)
        first = await b.submit({"x": np.array([1.0])}, 1)  # idle: runs at once, alone
        many = await asyncio.gather(*(b.submit({"x": np.array([float(i)] * 3)}, 3) for i in range(6)))
        return first, many

    first, many = asyncio.run(run())
    assert first.tolist() == [2.0] and calls[0] == 1
    assert [m.tolist() for m in many] == [[2.0 * i] * 3 for i in range(6)]  # each caller gets its own rows
    assert len(calls) < 7 and max(calls) <= 10 and sum(calls[1:]) == 18  # merged, never past max_rows


def test_a_failing_request_fails_alone():
    def fn(cols, n):
        if any(v < 0 for v in cols["x"]):
            raise ValueError("negative")
        return cols["x"]

    async def run():
        b = MicroBatcher(fn, max_rows=100)
        return await asyncio.gather(*(b.submit({"x": np.array([v])}, 1) for v in (1.0, -1.0, 2.0)),
                                    return_exceptions=True)

    ok1, bad, ok2 = asyncio.run(run())
    assert ok1.tolist() == [1.0] and ok2.tolist() == [2.0] and isinstance(bad, ValueError)


def test_large_inline_batches_run_off_the_event_loop():
    """The fast path runs inline for small batches; a big one goes to a thread, so the loop keeps
    answering (probes) and the request timeout can fire."""
    threads: dict[int, int] = {}

    def fn(cols, n):
        threads[n] = threading.get_ident()
        return cols["x"]

    async def run():
        loop_thread = threading.get_ident()
        b = MicroBatcher(fn, inline=True)
        await b.submit({"x": np.zeros(5)}, 5)
        big = INLINE_MAX_ROWS + 1
        await b.submit({"x": np.zeros(big)}, big)
        return loop_thread, big

    loop_thread, big = asyncio.run(run())
    assert threads[5] == loop_thread
    assert threads[big] != loop_thread


def test_direct_calls_the_compiled_path_at_once_and_big_requests_still_off_the_loop():
    """``direct=True`` (the router's choice for a compiled version): each small request is its own call,
    made without yielding to the event loop; a request over INLINE_MAX_ROWS still runs on a thread."""
    calls: list[int] = []
    threads: dict[int, int] = {}

    def fn(cols, n):
        calls.append(n)
        threads[n] = threading.get_ident()
        return cols["x"] * 2

    async def run():
        b = MicroBatcher(fn, max_rows=10, direct=True, on_batch=lambda rows: None)
        coro = b.submit({"x": np.array([1.0, 2.0])}, 2)
        try:
            coro.send(None)  # completes in this very step: no future, no task, no loop turn
        except StopIteration as done:
            first = done.value
        else:
            raise AssertionError("a direct call yielded to the event loop")
        many = await asyncio.gather(*(b.submit({"x": np.array([float(i)])}, 1) for i in range(4)))
        big = INLINE_MAX_ROWS + 1
        await b.submit({"x": np.zeros(big)}, big)
        return first, many, threading.get_ident(), big

    first, many, loop_thread, big = asyncio.run(run())
    assert first.tolist() == [2.0, 4.0] and [m.tolist() for m in many] == [[0.0], [2.0], [4.0], [6.0]]
    assert calls[:5] == [2, 1, 1, 1, 1]  # unbatched
    assert threads[2] == loop_thread and threads[big] != loop_thread
