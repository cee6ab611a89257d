"""nbprod's calls print nothing of MLflow's: no INFO on a fresh store, no 'Found extra inputs' (issue 12, point 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, logging, sys, warnings
logging.basicConfig(level=logging.INFO)   # a loud root logger, as some notebooks configure it
import mlflow  # a user's own import first: their levels must be what they are again afterwards
before = {n: logging.getLogger(n).level for n in ("mlflow", "alembic")}
import nbprod
from nbprod.datasets import credit
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

X, y = credit(400)
small = ["age", "income", "employment"]
pre = make_column_transformer((make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
                              (OneHotEncoder(handle_unknown="ignore"), ["employment"]))
model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(X[small], y)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nbprod's own warnings are not MLflow's chatter
    nbprod.register(model, "credit-risk", X[small], y, alias="champion")
    nbprod.register(model, "credit-risk", X[small], y, alias="challenger")
print("---evaluate---", file=sys.stderr)
nbprod.evaluate("credit-risk@challenger", X, y)   # X has columns the models do not use
nbprod.load_model("credit-risk@champion").predict(X.head(3))
after = {n: logging.getLogger(n).level for n in ("mlflow", "alembic")}
print(json.dumps({"before": before, "after": after}))
"""


@pytest.mark.slow
def test_register_and_evaluate_print_none_of_mlflows_chatter(tmp_path):
    unset = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL", "NBPROD_EXPORTED_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["NBPROD_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    for noise in ("Creating initial MLflow database tables", "Found extra inputs", "INFO:mlflow", "INFO mlflow",
                  "alembic", "Updating database tables"):
        assert noise not in out.stderr, f"{noise!r} in stderr:\n{out.stderr}"
    levels = json.loads(out.stdout.strip().splitlines()[-1])
    assert levels["before"] == levels["after"]


def test_quiet_mlflow_nests_and_restores_levels():
    import logging

    import mlflow  # noqa: F401 - configures its loggers on import

    from nbprod._quiet import quiet_mlflow

    logger = logging.getLogger("mlflow")
    before = logger.level
    with quiet_mlflow():
        with quiet_mlflow():
            assert logger.getEffectiveLevel() >= logging.ERROR
        assert logger.getEffectiveLevel() >= logging.ERROR
    assert logger.level == before
