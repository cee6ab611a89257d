"""Shared fixtures: every test gets its own NBPROD_HOME, so no state leaks between tests."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture
def nbprod_home(tmp_path, monkeypatch):
    """A fresh nbprod home: its own MLflow store and state DB under a tmp dir."""
    from nbprod.config import settings

    home = tmp_path / "nbprod-home"
    monkeypatch.setenv("NBPROD_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL"):
        monkeypatch.delenv(var, raising=False)
    settings.reset()
    yield home
    if "nbprod.state" in sys.modules:  # close pooled connections to this test's state DB
        sys.modules["nbprod.state"].dispose()
    settings.reset()


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """In CI a missing system component fails the test instead of skipping it."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip on a user's machine when a system component is missing; fail in CI."""
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def kill_recorded_servers() -> None:
    """SIGKILL every model server recorded in the current state DB (and its process group),
    whatever its status says: the finalizer of every test that deploys, so none outlives the suite."""
    import signal
    import time

    from nbprod.deployments import process, store

    try:
        names = store.names()
    except Exception:  # noqa: BLE001 - no state DB, nothing was deployed
        return
    for name in names:
        found = store.read(name)
        pid = found[1]["pid"] if found else None
        if pid and process.is_server_of(pid, name):
            for child in process.children(pid):
                sigkill(child)
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                sigkill(pid)
            for _ in range(100):
                if not process.alive(pid):
                    break
                time.sleep(0.02)


def sigkill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
