"""Shared by the registry tests: a real ColumnTransformer pipeline and a module-scoped nbprod home."""

from __future__ import annotations

import contextlib

import pytest


def pipeline(X, y, C: float = 1.0):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
    ])
    return make_pipeline(pre, LogisticRegression(C=C, max_iter=300)).fit(X, y)


def poor_champion():
    """credit-risk v1 as @champion: a real pipeline fitted on shuffled labels (a model past its time), so a
    retrained challenger wins the evaluate gate honestly (the pipeline and retraining tests)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import nbprod
    from nbprod.datasets import credit

    numeric = ["age", "income", "debt_ratio", "credit_lines", "late_payments"]
    categorical = ["employment", "country", "purpose"]
    X, y = credit(3000, 5)
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)])
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(X, y.sample(frac=1, random_state=0).values)
    return nbprod.register(model, "credit-risk", X, y, alias="champion")


@contextlib.contextmanager
def module_home(tmp_path_factory, name: str):
    """Like the ``nbprod_home`` fixture, for a module whose tests share one MLflow store."""
    from nbprod.config import settings

    home = tmp_path_factory.mktemp(name) / "nbprod-home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBPROD_HOME", str(home))
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL"):
            mp.delenv(var, raising=False)
        settings.reset()
        yield home
        settings.reset()


def credit_frame(seed: int, rows: int = 300):
    """``(X, y)``: income, age and region, labelled by income; the packaging and OpenAPI tests' model data."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"income": rng.normal(50, 10, rows), "age": rng.integers(18, 80, rows).astype(float),
                      "region": rng.choice(["north", "south", "east"], rows)})
    return X, (X["income"] > 50).astype(int)
