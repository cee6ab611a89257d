"""The MLflow client nbprod talks to: explicit URIs, cached, and failing fast when unreachable.

nbprod never touches MLflow's global tracking URI: settings may change between calls (and tests),
so every call builds/reuses a client for the URIs in force *now*. Creating a client on a fresh
SQLite store runs MLflow's migrations (about a second), so clients are cached per URI pair.
A remote server is probed once with a short timeout, so a wrong URI fails in seconds with a
:class:`TrackingServerError` instead of MLflow's two minutes of retries.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .._files import private_dir, private_file, sqlite_path
from .._quiet import quiet_mlflow
from ..config import settings
from ..errors import TrackingServerError

__all__ = ["client", "experiment_id", "is_remote", "EXPERIMENT", "reset_cache"]

EXPERIMENT = "nbprod"
PROBE_TIMEOUT = 3.0
_PROBE_TTL = 30.0

_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}
_experiments: dict[tuple[str, str], str] = {}
_probed: dict[str, float] = {}


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


def _probe(uri: str) -> None:
    """GET ``/health`` with a short timeout; raise TrackingServerError when nothing answers."""

    now = time.monotonic()
    if now - _probed.get(uri, -1e9) < _PROBE_TTL:
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:  # noqa: S310 - the user's own server
            response.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            fix = "check the server's logs, or unset MLFLOW_TRACKING_URI to use the local store"
            raise TrackingServerError(f"MLflow tracking server {uri} answered {exc.code}", fix) from None
    except (OSError, ValueError) as exc:
        raise TrackingServerError(
            f"cannot reach the MLflow tracking server at {uri} ({getattr(exc, 'reason', exc)})",
            "start the server (`mlflow server --host 127.0.0.1 --port 5000`), fix MLFLOW_TRACKING_URI, "
            "or unset it to use the local store under NBPROD_HOME",
        ) from None
    _probed[uri] = now


def _prepare_local(uri: str) -> None:
    parsed = urlparse(uri)
    path = sqlite_path(uri)
    if path is not None:
        private_file(path)  # 0600, in a 0700 folder when nbprod creates it (nbprod._files)
    elif parsed.scheme in ("", "file"):
        private_dir(Path(parsed.path or uri))


@contextlib.contextmanager
def _migration_lock(uris: set[str]) -> Iterator[None]:
    """Serialise, across processes, the creation of clients on the same SQLite stores.

    Creating a client on a fresh SQLite store runs MLflow's alembic migrations; two processes
    doing that at once on one file fail with a raw alembic ``CommandError``. An ``flock`` on a
    file next to the database makes the second process wait and then find the schema current.
    """
    paths = sorted({p for uri in uris if (p := sqlite_path(uri)) is not None})
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the race stays possible there
        paths = []
    with contextlib.ExitStack() as stack:
        for path in paths:
            fh = stack.enter_context(open(path.with_name(path.name + ".nbprod-lock"), "a"))
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            stack.callback(fcntl.flock, fh.fileno(), fcntl.LOCK_UN)
        yield


def client():
    """An ``MlflowClient`` for the current settings (cached per tracking/registry URI)."""
    tracking, registry = settings.tracking_uri, settings.registry_uri
    for uri in {tracking, registry}:
        if is_remote(uri):
            # Bounded retries for every later call too; only defaults, a user's own choice wins.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            _probe(uri)
    key = (tracking, registry)
    cached = _clients.get(key)
    if cached is not None:
        return cached
    with _lock:
        cached = _clients.get(key)
        if cached is None:
            from mlflow import MlflowClient

            for uri in {tracking, registry}:
                _prepare_local(uri)
            with _migration_lock({tracking, registry}), quiet_mlflow():
                cached = MlflowClient(tracking_uri=tracking, registry_uri=registry)
                if sqlite_path(registry) is not None:
                    cached._get_registry_client()  # runs the registry store's migrations under the lock too
            _clients[key] = cached
    return cached


def experiment_id(mlflow_client=None) -> str:
    """The id of the "nbprod" experiment, created on first use (artefacts under NBPROD_HOME locally)."""
    from .versions import _mlflow_call

    c = mlflow_client or client()
    key = (settings.tracking_uri, settings.home)
    cached = _experiments.get(key)
    if cached is not None:
        return cached
    exp = _mlflow_call(c.get_experiment_by_name, EXPERIMENT)
    if exp is None:
        location = None if is_remote(settings.tracking_uri) else settings.artifact_root
        try:
            exp_id = c.create_experiment(EXPERIMENT, artifact_location=location)
        except Exception:  # created concurrently by another process
            exp = _mlflow_call(c.get_experiment_by_name, EXPERIMENT)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        if exp.lifecycle_stage == "deleted":
            _mlflow_call(c.restore_experiment, exp.experiment_id)
        exp_id = exp.experiment_id
    _experiments[key] = exp_id
    return exp_id


def reset_cache() -> None:
    """Forget cached clients (tests that swap stores mid-process)."""
    with _lock:
        _clients.clear()
        _experiments.clear()
        _probed.clear()
