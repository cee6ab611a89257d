"""Where nbprod's partitioned work runs: a Dask scheduler, or Dask's local scheduler in this process.

Why Dask and not a pool of nbprod's own: the same task graph runs on a laptop (no cluster: Dask's
threaded local scheduler), on a ``distributed.LocalCluster`` and on a real scheduler
(``tcp://host:8786``), so ``nbprod score`` / ``profile`` / ``sweep`` do not change with the size
of the job. Every verb that fans out goes through :func:`connect` and :func:`run`.

``dask`` and ``distributed`` are imported here only when a verb runs: ``import nbprod`` does
not load them (tests/test_import.py).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

from .errors import ConfigError

__all__ = ["connect", "session", "run", "describe"]


@contextlib.contextmanager
def connect(dask: Any = None) -> Iterator[Any]:
    """The ``distributed.Client`` to run on, or None for Dask's local scheduler.

    ``dask``: None (the ``distributed.Client`` already open in this process, else Dask's local
    scheduler), False (always the local scheduler), a scheduler address (``"tcp://host:8786"``), a
    ``distributed.Client`` (used as it is, left open) or a cluster object (``LocalCluster``...).
    A client this function opens is closed when the block ends.
    """
    if dask is False:
        yield None
        return
    if dask is None:  # the user's own client, if one is open (never imports distributed to find out)
        yield _default_client()
        return
    import distributed

    if isinstance(dask, distributed.Client):
        yield dask
        return
    if isinstance(dask, str) or hasattr(dask, "scheduler_address"):
        if isinstance(dask, str):
            _reachable(dask)
        try:
            client = distributed.Client(dask, set_as_default=False, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {dask!r}: {exc}",
                              "start one (`dask scheduler` and `dask worker tcp://…`) or pass its address, "
                              "e.g. --dask tcp://scheduler:8786; leave --dask out to run in this process") from exc
        try:
            yield client
        finally:
            client.close()
        return
    raise ConfigError(f"dask={dask!r} is neither a scheduler address nor a distributed.Client",
                      "pass 'tcp://host:8786', a distributed.Client or a LocalCluster (or None to run locally)")


def _reachable(address: str) -> None:
    """Raise a ConfigError unless ``address`` is a scheduler address something listens on (TCP and TLS ones are
    tried with a plain connect). Checked before a ``distributed.Client`` exists: one whose start failed closes
    itself when collected, after the error was shown, and held the process 40 s at its exit ("Exception
    ignored in Client.__del__ … timed out"); a malformed address raised a bare ValueError."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    fix = ("start one (`dask scheduler` and `dask worker tcp://…`) or pass its address, "
           "e.g. --dask tcp://scheduler:8786; leave --dask out to run in this process")
    try:
        scheme, location = parse_address(address)
        host_port = parse_host_port(location) if scheme in ("tcp", "tls") else None
    except ValueError as exc:
        raise ConfigError(f"{address!r} is not a Dask scheduler address: {exc}", fix) from None
    if host_port is not None:
        try:
            socket.create_connection(host_port, timeout=20).close()
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address!r}: {exc.strerror or exc}", fix) from None


def _default_client() -> Any:
    import sys

    if "distributed" not in sys.modules:
        return None
    import distributed

    try:
        return distributed.Client.current()  # the client of `with client.as_current()`, else the default one
    except ValueError:
        return None


@contextlib.contextmanager
def session(dask: Any = None) -> Iterator[Any]:
    """``--dask ADDRESS`` around a whole command: every verb inside runs on that scheduler
    (``local`` or None: Dask's local scheduler)."""
    if not dask or dask == "local":
        yield None
        return
    with connect(dask) as client, client.as_current():
        yield client


def describe(client: Any) -> str:
    """Where the work ran, for results: ``local`` or the scheduler's address and worker count."""
    if client is None:
        return "local (Dask threads)"
    return f"{client.scheduler.address} ({len(client.nthreads())} workers)"


def run(tasks: Sequence[Any], client: Any, *, desc: str, progress: bool = True, local: str = "threads",
        on_result: Callable[[int], None] | None = None) -> list:
    """Compute ``tasks`` (``dask.delayed`` objects) and return their results in order.

    With a client the tasks run on its workers; without one on Dask's threaded local scheduler.
    ``local``: the local scheduler without a client (``threads``; ``processes`` for work that
    keeps per-process state, such as an MLflow run per notebook job). ``progress``: a progress bar
    (tqdm: a widget in a notebook, text in a terminal) that moves
    as each task finishes. ``on_result(i)``: called (cheaply: it runs in the scheduling loop) as
    task ``i`` finishes, e.g. to start using its output while the others run. The first failing
    task's exception is raised; the remaining tasks are cancelled.
    """
    if not tasks:
        return []
    bar = _bar(len(tasks), desc) if progress else None
    try:
        if client is not None:
            return _run_distributed(tasks, client, bar, on_result)
        return _run_local(tasks, bar, local, on_result)
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="part")


def _run_distributed(tasks: Sequence[Any], client: Any, bar: Any, on_result: Callable[[int], None] | None) -> list:
    import distributed

    futures = client.compute(list(tasks))
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        with client.as_current():  # as_completed looks for the current client; ours need not be the default
            for future in distributed.as_completed(futures):
                if future.status == "error":
                    future.result()  # raises the task's own exception
                if on_result is not None:
                    on_result(index[future.key])
                if bar is not None:
                    bar.update(1)
        return client.gather(futures)
    finally:
        client.cancel([f for f in futures if not f.done()])


def _run_local(tasks: Sequence[Any], bar: Any, scheduler: str, on_result: Callable[[int], None] | None) -> list:
    import dask
    from dask.callbacks import Callback

    keys = {t.key: i for i, t in enumerate(tasks)}

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001 - dask's callback signature
            if key not in keys:
                return
            if on_result is not None:
                on_result(keys[key])
            if bar is not None:
                bar.update(1)

    with _Progress():
        return list(dask.compute(*tasks, scheduler=scheduler))
