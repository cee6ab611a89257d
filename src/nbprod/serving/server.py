"""Run a model server app under uvicorn: in this process, or in uvicorn's worker processes.

With ``workers=1`` the app object is built here and handed to uvicorn. With ``workers > 1`` uvicorn
spawns processes that each import a *factory* (``"module:function"``), so the spec source (and the
token's hash, never the token) travel in environment variables (:func:`worker_settings` reads
them back); each worker loads the models and polls the state DB on its own, and the kernel
balances connections between them.

This module serves what it is given and knows nothing above serving: ``nbprod serve`` and the
packaged image go through :func:`nbprod.service.serve`, which builds the app with the prediction
log, ``/feedback``, the deployment events and the alert loop, and names its own factory.

Why the workers are forked: on a 2-core machine a spawned worker spent ~0.5 CPU-s importing what the
app needs (SQLAlchemy, numpy, Starlette, the serving stack) before it could answer, each of them again,
after the supervisor's own start — most of a first deploy (BENCHMARKS.md, Serving). With ``workers > 1``
the supervisor now imports that once (``preload``) and forks its first workers from it: they start
with it imported and only build their app. They fork before any thread of ours runs (``on_started``
starts those after), a forked worker runs its own exit handlers as a spawned one would, and the
workers uvicorn starts later (a worker that died, ``SIGHUP``) are spawned as before.

Why each serving process calls ``gc.freeze()`` once its app is built and its models loaded (at its
first connection, :mod:`.connections`), and collects its youngest generation every 10,000 allocations
instead of 700: a worker's heap is ~65,000 tracked objects after start-up (the app, the models, the
imported modules), and every full collection of the cyclic GC re-scanned them all — ~45 ms in which that
worker answers nothing; and a request allocates hundreds of containers, nearly all freed by reference
counting, so most young collections found nothing. Under wrk the GC took 1.7% of a worker's CPU, 0.25%
after both (BENCHMARKS.md, Serving).
The price: a start-up object that later becomes cyclic garbage (the models first loaded, once a new
version replaces them) is freed by reference counting only, so at most that first set can stay.

Connections are bounded (:mod:`.connections`): a connection that does not complete a request's
headers in time is closed, idle keep-alive connections close 5 to 6 s after their last answer, and a
process never holds more connections than its file-descriptor limit allows.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import signal
from typing import Any, Callable

import uvicorn
from uvicorn.supervisors import Multiprocess

try:  # uvicorn >= 0.30 (its worker health checks): the first workers are forked (module docstring)
    from uvicorn.supervisors.multiprocess import SIGNALS, Process
except ImportError:  # older uvicorn: spawned workers, each importing the app itself
    SIGNALS, Process = {}, None  # type: ignore[assignment,misc]

from ..errors import ConfigError
from .connections import ACCEPT_BURST, GC_FREEZE_ENV, http_protocol
from .spec import ENV_VAR, DeploymentSpec, SpecSource, StaticSource, hash_token, source_from_env, source_to_env

__all__ = ["run", "worker_settings", "app_from_env", "as_source", "preload_modules", "AUTH_ENV", "FACTORY",
           "PRELOAD"]

AUTH_ENV = "NBPROD_SERVE_AUTH"  # JSON: {"auth": bool, "token_sha256": str | null}
FACTORY = "nbprod.serving.server:app_from_env"  # the bare app (no monitoring) in each worker
#: What every worker of the bare app imports before it answers (its supervisor imports them once, then forks).
PRELOAD = ("nbprod.serving.app", "uvicorn.lifespan.on", "uvloop", "uvicorn.loops.uvloop")


def as_source(source: SpecSource | DeploymentSpec | str) -> SpecSource:
    """A :class:`SpecSource` for a source, a spec, or a model directory / URI."""
    if isinstance(source, str):
        return StaticSource.model(source)
    if isinstance(source, DeploymentSpec):
        return StaticSource(source)
    return source


def worker_settings() -> tuple[SpecSource, bool, str | None]:
    """In a worker process: the spec source, whether auth is on, and the token's sha256 the
    parent (:func:`run`) put in the environment."""
    auth = json.loads(os.environ.get(AUTH_ENV) or "{}")
    return source_from_env(), bool(auth.get("auth", True)), auth.get("token_sha256")


def app_from_env():
    """uvicorn factory of the bare app (``nbprod.serving.server:app_from_env``): serving only."""
    from .app import create_app  # the app's side: `import nbprod.serving.server` stays light (PRELOAD)

    source, auth, token_sha256 = worker_settings()
    app = create_app(source, auth=auth)
    app.state.serving.token_sha256 = token_sha256
    return app


def preload_modules(names: tuple[str, ...]) -> None:
    """Import ``names`` (one not installed is skipped: uvloop is optional)."""
    for name in names:
        try:
            __import__(name)  # the import statement's path: ``python -X importtime`` shows it
        except ImportError:
            pass


def _metrics_mode() -> None:
    """prometheus-client picks its value class (in memory, or the multiprocess files) when it is first
    imported; here it was imported before :func:`multiprocess_dir` set the directory, so a forked worker
    would count in memory only. Pick again now that the variable is set."""
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def _forked_worker(config: uvicorn.Config, target: Callable[..., None], sockets: list) -> None:
    """A forked worker's life (uvicorn's ``subprocess_started``, for a child that was not spawned)."""
    for sig in SIGNALS:  # the supervisor's handlers queue signals for its own loop; uvicorn's server sets its own
        signal.signal(sig, signal.SIG_DFL)
    atexit._clear()  # the supervisor's exit handlers are its own
    config.configure_logging()
    try:
        target(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends a forked child with os._exit: run the worker's own


class _ForkingSupervisor(Multiprocess):
    """uvicorn's supervisor, with its first workers forked from this process (module docstring); the
    ones it starts later to replace a worker are spawned, as uvicorn does, since threads run by then."""

    def __init__(self, config: uvicorn.Config, sockets: list, on_started: Callable[[], None] | None) -> None:
        super().__init__(config, sockets)
        self._on_started = on_started

    def init_processes(self) -> None:
        fork = multiprocessing.get_context("fork")
        for _ in range(self.processes_num):
            assert Process is not None  # run() checked
            process = Process(self.config, self.sockets)
            process.process = fork.Process(target=_forked_worker, kwargs={  # type: ignore[assignment]
                "config": self.config, "target": process.target, "sockets": self.sockets})
            process.start()
            self.processes.append(process)
        if self._on_started is not None:
            self._on_started()


#: Worker processes a server may start per core. A model server is CPU-bound: one or two per core is what it
#: uses. Unbounded, a typo (``--workers 1000``) forked until a 2-core machine stalled (load 1,000), and the
#: workers' start-up locked the state DB for every other nbprod command.
WORKERS_PER_CORE = 4


def max_workers() -> int:
    """The most worker processes a server starts on this machine: :data:`WORKERS_PER_CORE` per core, at least 8."""
    return max(8, WORKERS_PER_CORE * (os.cpu_count() or 1))


def check_workers(workers: Any) -> None:
    """Raise a ConfigError unless ``workers`` is a whole number from 1 to :func:`max_workers`."""
    limit = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= limit:
        raise ConfigError(f"workers must be a whole number from 1 to {limit} on this machine "
                          f"({os.cpu_count() or 1} cores), got {workers!r}",
                          "use one or two per core, e.g. workers=2")


def check_port(port: Any) -> None:
    """Raise a ConfigError unless ``port`` is a whole number from 1 to 65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port must be an integer between 1 and 65535, got {port!r}", "pass e.g. --port 8080")


def check_address(host: str, port: Any) -> None:
    """Raise a ConfigError unless a server can listen on ``host:port`` now: a port out of range, one in use
    and a host that is not this machine's each ended in uvicorn's own error or traceback, after the bearer
    token and the address were printed as if the server were up. (Another process may still take the port
    in the moment between this check and the server's bind: uvicorn reports that one.)"""
    import socket

    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind(address)
    except OSError as exc:
        import errno

        fix = ("pass another --port, or stop what listens there (nbprod status lists the deployments' ports)"
               if exc.errno == errno.EADDRINUSE else
               "pass --host 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or an address of this machine")
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}", fix) from None


def run(source: SpecSource, build: Callable[[], Any], *, factory: str = FACTORY, host: str = "127.0.0.1",
        port: int = 8080, workers: int = 1, token: str | None = None, auth: bool = True,
        log_level: str = "warning", preload: tuple[str, ...] = PRELOAD,
        on_started: Callable[[], None] | None = None) -> None:
    """Serve until interrupted (blocking).

    ``workers <= 1``: uvicorn runs the app ``build()`` returns, in this process. Otherwise each
    worker calls ``factory`` (a ``"module:function"`` uvicorn imports), which reads ``source``,
    ``auth`` and the token's hash back with :func:`worker_settings` — the token itself never
    leaves this process; this process imports the modules ``preload`` names (what the factory's
    app needs) and forks the workers from itself (module docstring).

    ``on_started``: called once the server's processes exist, before it serves — where a
    background thread of the server may start (never before its workers are forked).
    """

    # httptools (or h11) with a header timeout and a connection cap below the fd limit (see .connections);
    # idle keep-alive connections close 5 s (h11) or 5 to 6 s (httptools: the sweep) after their last answer;
    # h11: headers are at most 16 KiB;
    # the event loop: uvloop when installed (uvicorn's "auto")
    common: dict[str, Any] = dict(host=host, port=port, log_level=log_level, access_log=False,
                                  http=http_protocol(), timeout_keep_alive=5,
                                  h11_max_incomplete_event_size=16 * 1024, backlog=ACCEPT_BURST,
                                  timeout_graceful_shutdown=5, lifespan="on",
                                  ws="none")  # no WebSocket routes: each worker skips importing websockets
    check_workers(workers)
    check_address(host, port)
    os.environ[GC_FREEZE_ENV] = "1"  # each serving process freezes its start-up heap (module docstring)
    if workers <= 1:
        app = build()
        if on_started is not None:
            on_started()
        uvicorn.run(app, **common)
        return
    os.environ[ENV_VAR] = source_to_env(source)
    os.environ[AUTH_ENV] = json.dumps({"auth": auth, "token_sha256": hash_token(token) if token else None})
    from .metrics import multiprocess_dir

    with multiprocess_dir():  # one /metrics scrape sums every worker (nbprod.serving.metrics)
        if Process is None or "fork" not in multiprocessing.get_all_start_methods():
            if on_started is not None:
                on_started()
            uvicorn.run(factory, factory=True, workers=workers, **common)
            return
        config = uvicorn.Config(factory, factory=True, workers=workers, **common)
        sock = config.bind_socket()  # a port in use fails here, before the imports
        _metrics_mode()
        preload_modules(preload)
        try:
            _ForkingSupervisor(config, [sock], on_started).run()
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
