"""Shared fixtures: every test gets its own NBPROD_HOME, so no state leaks between tests.

Fixtures used by more than one test module live here (never imported from another test module);
plain helpers live in ``_*.py`` modules next to the tests (``_servers``, ``_serving_models``,
``_registry_helpers``, ``_monitoring_helpers``).

PostgreSQL (``db_url``): ``NBPROD_TEST_PG_URL`` (CI), else the local server at the CI URL if one
answers. Each test gets a schema of its own (``search_path``), dropped afterwards, so tests never
touch other tables of a shared database. With ``CI=true`` a missing PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from nbprod.jobs.deferred import defer_iri_grammars

# The job tests import nbformat, so jsonschema, which compiles rfc3987_syntax's 38 grammars on import:
# ~1.5 s of CPU in every xdist worker for formats no test checks. Deferred as every job verb does.
defer_iri_grammars()

CI_PG_URL = "postgresql+psycopg://nbprod:nbprod@127.0.0.1:5432/nbprod"


@pytest.fixture
def nbprod_home(tmp_path, monkeypatch):
    """A fresh nbprod home: its own MLflow store and state DB under a tmp dir."""
    from nbprod.config import settings

    home = tmp_path / "nbprod-home"
    monkeypatch.setenv("NBPROD_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL", "NBPROD_EXPORTED_TRACKING_URI"):
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


@pytest.fixture
def env(nbprod_home) -> dict:
    """The environment of a `nbprod serve` subprocess: this test's home, no outside store, DB or token."""
    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_TOKEN")}
    e["NBPROD_HOME"] = str(nbprod_home)
    return e


@pytest.fixture(scope="module")
def serving_models(tmp_path_factory) -> dict:
    """Small real models saved with mlflow.*.save_model (see _serving_models.build), once per module."""
    from _serving_models import build

    return build(tmp_path_factory.mktemp("serving-models"))


def _pg_server() -> str | None:
    url = os.environ.get("NBPROD_TEST_PG_URL") or CI_PG_URL
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        eng.dispose()
        return url
    except Exception:  # noqa: BLE001 - reported through require()
        return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, nbprod_home, monkeypatch):
    """The state DB of one test: SQLite in the test's home, or a fresh schema on PostgreSQL."""
    from nbprod import state
    from nbprod.config import settings

    if request.param == "sqlite":
        url = f"sqlite:///{nbprod_home / 'nbprod.db'}"
        monkeypatch.setenv("NBPROD_DB_URL", url)
        settings.reset()
        yield url
        state.dispose()
        return
    pytest.importorskip("psycopg", reason="psycopg (v3) not installed: pip install 'nbprod[postgres]'")
    server = _pg_server()
    require(server is not None, "no PostgreSQL: set NBPROD_TEST_PG_URL or run one at " + CI_PG_URL)
    import sqlalchemy as sa

    schema = f"nbprod_mon_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = (sa.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
           .render_as_string(hide_password=False))
    monkeypatch.setenv("NBPROD_DB_URL", url)
    settings.reset()
    try:
        yield url
    finally:
        state.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


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


@pytest.fixture
def credit_shell(nbprod_home):
    """credit-risk v1 @champion (roc_auc 0.81) and v2 @challenger (0.83, C=0.05) registered; an IPython shell
    with nbprod loaded. Afterwards every server the test deployed is killed and the extension unloaded."""
    from _registry_helpers import pipeline
    from IPython.core.interactiveshell import InteractiveShell

    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(600, seed=3)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion", metrics={"roc_auc": 0.81})
    registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger", metrics={"roc_auc": 0.83})
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    try:
        yield shell
    finally:
        kill_recorded_servers()
        shell.run_line_magic("unload_ext", "nbprod")
