"""File permissions (issue 11, point 13): NBPROD_HOME holds the prediction log (request inputs:
possibly personal data), the model store and executed notebooks, so nbprod creates the home 0700
and its files 0600 — as ssh and Jupyter do with their secrets — whatever the caller's umask."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    before = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(before)


def test_the_home_the_state_db_the_model_store_and_its_artefacts_are_private(nbprod_home, open_umask):
    from sklearn.linear_model import LogisticRegression

    import nbprod
    from nbprod.datasets import credit
    from nbprod.monitoring.predlog import log_rows

    assert not nbprod_home.exists()
    X, y = credit(300)
    X = X.select_dtypes("number").fillna(0)
    nbprod.register(LogisticRegression(max_iter=300).fit(X, y), "credit-risk", X, y, alias="champion")
    log_rows("credit", [("prediction", time.time(), {"request_id": "r", "n": 1, "inputs": {"income": [1.0]},
                                                     "predictions": [0]})])
    assert _mode(nbprod_home) == 0o700
    for name in ("nbprod.db", "mlflow.db", "nbprod.db-wal", "nbprod.db-shm"):
        if name.endswith(".db") or (nbprod_home / name).exists():
            assert _mode(nbprod_home / name) == 0o600, name
    artefacts = list((nbprod_home / "artifacts").rglob("*"))
    assert any(p.name == "MLmodel" for p in artefacts)
    loose = [f"{p.relative_to(nbprod_home)} {oct(_mode(p))}" for p in artefacts if _mode(p) & 0o077]
    assert loose == []


def test_an_existing_home_keeps_the_permissions_its_owner_gave_it(nbprod_home, open_umask):
    from nbprod import state

    nbprod_home.mkdir(mode=0o750)
    state.engine()
    assert _mode(nbprod_home) == 0o750  # the owner's choice; the files nbprod creates in it are still 0600
    assert _mode(nbprod_home / "nbprod.db") == 0o600


@pytest.mark.slow
def test_executed_notebooks_are_private(nbprod_home, open_umask):
    from nbprod.jobs import run

    result = run(FILES / "params.ipynb", {"alpha": 1, "name": "x"}, progress=False)
    assert Path(result.output).parent == nbprod_home / "runs"
    assert _mode(nbprod_home) == 0o700 and _mode(nbprod_home / "runs") == 0o700
    assert _mode(Path(result.output)) == 0o600
