"""Small real models for the serving tests (built once per session with mlflow.*.save_model)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow.pyfunc


def frame(n: int = 300, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(1),
        "income": rng.lognormal(10, 0.5, n),
        "score": rng.uniform(0, 1, n),
        "visits": rng.integers(0, 20, n).astype("int64"),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "plan": rng.choice(["free", "pro"], n),
    })
    y = ((df.age - 40) / 10 + (df.city == "paris") + rng.normal(0, 0.5, n) > 0.5).astype(int)
    return df, y


def pipeline(df, y):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = ["age", "income", "score", "visits"]
    pre = ColumnTransformer([("num", Pipeline([("imp", SimpleImputer()), ("sc", StandardScaler())]), num),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(df, y)


class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(3)
        return [0] * len(model_input)


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this canary is broken")


def build(root: Path) -> dict:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    df, y = frame()
    pipe = pipeline(df, y)
    sig = infer_signature(df, pipe.predict(df))
    out = {"df": df, "y": y, "pipe": pipe}
    for name, kw in {"clf": {}, "proba": {"pyfunc_predict_fn": "predict_proba"}}.items():
        path = root / name
        predict = getattr(pipe, kw.get("pyfunc_predict_fn", "predict"))
        mlflow.sklearn.save_model(pipe, str(path), signature=infer_signature(df, predict(df)),
                                  input_example=df.head(10), serialization_format="cloudpickle",
                                  pip_requirements=["scikit-learn"], **kw)
        out[name] = str(path)
    for name, model in {"slow": Slow(), "broken": Broken()}.items():
        path = root / name
        mlflow.pyfunc.save_model(str(path), python_model=model, signature=sig, pip_requirements=["mlflow"])
        out[name] = str(path)
    return out


def rows(models: dict, n: int = 2) -> dict:
    """The first ``n`` rows of the served frame as an MLflow ``dataframe_records`` request body."""
    import json

    return {"dataframe_records": json.loads(models["df"].head(n).to_json(orient="records"))}
