"""Run a model server app under uvicorn: in this process, or in uvicorn's worker processes.

With ``workers=1`` the app object is built here and handed to uvicorn. With ``workers > 1`` uvicorn
spawns processes that each import a *factory* (``"module:function"``), so the spec source (and the
token's hash, never the token) travel in environment variables (:func:`worker_settings` reads
them back); each worker loads the models and polls the state DB on its own, and the kernel
balances connections between them.

This module serves what it is given and knows nothing above serving: ``nbprod serve`` and the
packaged image go through :func:`nbprod.service.serve`, which builds the app with the prediction
log, ``/feedback``, the deployment events and the alert loop, and names its own factory.

Connections are bounded (:mod:`.connections`): a connection that does not complete a request's
headers in time is closed, idle keep-alive connections close 5 s after their last answer, and a
process never holds more connections than its file-descriptor limit allows.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import uvicorn

from .connections import ACCEPT_BURST, http_protocol
from .spec import ENV_VAR, DeploymentSpec, SpecSource, StaticSource, hash_token, source_from_env, source_to_env

__all__ = ["run", "worker_settings", "app_from_env", "as_source", "AUTH_ENV", "FACTORY"]

AUTH_ENV = "NBPROD_SERVE_AUTH"  # JSON: {"auth": bool, "token_sha256": str | null}
FACTORY = "nbprod.serving.server:app_from_env"  # the bare app (no monitoring) in each worker


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
    from .app import create_app  # in the worker: uvicorn's supervisor only needs this module's run()

    source, auth, token_sha256 = worker_settings()
    app = create_app(source, auth=auth)
    app.state.serving.token_sha256 = token_sha256
    return app


def run(source: SpecSource, build: Callable[[], Any], *, factory: str = FACTORY, host: str = "127.0.0.1",
        port: int = 8080, workers: int = 1, token: str | None = None, auth: bool = True,
        log_level: str = "warning") -> None:
    """Serve until interrupted (blocking).

    ``workers <= 1``: uvicorn runs the app ``build()`` returns, in this process. Otherwise each
    worker calls ``factory`` (a ``"module:function"`` uvicorn imports), which reads ``source``,
    ``auth`` and the token's hash back with :func:`worker_settings` — the token itself never
    leaves this process.
    """

    # httptools (or h11) with a header timeout and a connection cap below the fd limit (see .connections);
    # idle keep-alive connections close 5 s after their last answer; h11: headers are at most 16 KiB;
    # the event loop: uvloop when installed (uvicorn's "auto")
    common: dict[str, Any] = dict(host=host, port=port, log_level=log_level, access_log=False,
                                  http=http_protocol(), timeout_keep_alive=5,
                                  h11_max_incomplete_event_size=16 * 1024, backlog=ACCEPT_BURST,
                                  timeout_graceful_shutdown=5, lifespan="on",
                                  ws="none")  # no WebSocket routes: each worker skips importing websockets
    if workers <= 1:
        uvicorn.run(build(), **common)
        return
    os.environ[ENV_VAR] = source_to_env(source)
    os.environ[AUTH_ENV] = json.dumps({"auth": auth, "token_sha256": hash_token(token) if token else None})
    from .metrics import multiprocess_dir

    with multiprocess_dir():  # one /metrics scrape sums every worker (nbprod.serving.metrics)
        uvicorn.run(factory, factory=True, workers=workers, **common)
