"""Registering and loading a model: nbprod vs MLflow's defaults, same store, same run.

Issue 3's goal: nbprod's whole ``register`` (training profile, signature + input example,
lineage, sha256 manifest, pinned requirements, audit row) under 1 s and ≥ 3× faster than MLflow's
default ``mlflow.sklearn.log_model`` + ``mlflow.register_model`` (whose pip-requirement inference
starts a subprocess that loads the model); ``load_model`` with its manifest check under 0.1 s.

Model: ColumnTransformer(SimpleImputer+StandardScaler on 20 numeric, OneHotEncoder on 5
categorical) + LogisticRegression, fitted on ``benchmarks/data.py``'s ``make_frame(10_000)``
with a label derived from its columns. Both sides write to the same SQLite store under one
NBPROD_HOME. MLflow's default serialisation (skops) cannot save this pipeline, so its side uses
``serialization_format="cloudpickle"`` — the smallest change that makes the default work — and
keeps every other default. "MLflow, explicit requirements" is MLflow with ``pip_requirements``
given, for reference.

    .venv/bin/python benchmarks/bench_registry.py [--runs 5] [--rows 10000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _model(X, y):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if c.startswith("num_")]
    categorical = [c for c in X.columns if c.startswith("cat_")]
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)])
    return make_pipeline(pre, LogisticRegression(max_iter=300)).fit(X, y)


def _timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="nbprod-bench-registry-")
    os.environ["NBPROD_HOME"] = home
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL"):
        os.environ.pop(var, None)
    warnings.filterwarnings("ignore")

    import mlflow
    import mlflow.sklearn
    import numpy as np
    from data import make_frame

    import nbprod
    from nbprod.config import settings
    from nbprod.registry import load_model, register
    from nbprod.registry.loading import deserialisation_switches
    from nbprod.registry.modeldir import pinned_requirements
    from nbprod.registry.store import client, experiment_id

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    X = make_frame(args.rows, seed=0)
    signal = X["num_00"] - 0.5 * X["num_02"] + (X["cat_0"].cat.codes % 3 == 0)
    y = (signal + np.random.default_rng(0).normal(scale=0.5, size=len(X)) > 0.3).astype(int).rename("label")
    model = _model(X, y)

    # Warm the store once for both sides: same SQLite file, same experiment, migrations done.
    exp = experiment_id(client())
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    mlflow.set_experiment(experiment_id=exp)
    register(model, "warmup", X, y)

    def nbprod_register():
        register(model, "bench-nbprod", X, y, metrics={"auc": 0.9})

    def mlflow_default():
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(5),
                                            serialization_format="cloudpickle")
        mlflow.register_model(info.model_uri, "bench-mlflow-default")

    reqs = pinned_requirements("cloudpickle")

    def mlflow_explicit():
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(5),
                                            serialization_format="cloudpickle", pip_requirements=reqs)
        mlflow.register_model(info.model_uri, "bench-mlflow-explicit")

    ours, ours_all = _timed(nbprod_register, args.runs)
    default, default_all = _timed(mlflow_default, args.runs)
    explicit, explicit_all = _timed(mlflow_explicit, args.runs)
    load, load_all = _timed(lambda: load_model("bench-nbprod"), max(args.runs, 10))
    os.environ.update(dict.fromkeys(deserialisation_switches(), "true"))  # plain MLflow loads our pickle
    mlflow_load, _ = _timed(lambda: mlflow.pyfunc.load_model("models:/bench-mlflow-default/1"), max(args.runs, 10))

    import sklearn

    print(f"nbprod {nbprod.__version__}, mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.rows} rows x {X.shape[1]} columns; "
          f"median of {args.runs} runs")
    print(f"register  nbprod (profile+signature+manifest+audit): {ours:.3f} s   {[round(t, 3) for t in ours_all]}")
    print(f"register  MLflow default log_model+register_model:    {default:.3f} s   "
          f"{[round(t, 3) for t in default_all]}")
    print(f"register  MLflow, explicit pip_requirements:          {explicit:.3f} s   "
          f"{[round(t, 3) for t in explicit_all]}")
    print(f"ratio     MLflow default / nbprod:                    {default / ours:.1f}x  (goal >= 3x, nbprod < 1 s)")
    print(f"load      nbprod load_model (sha256 manifest check):  {load:.3f} s   (goal < 0.1 s)")
    print(f"load      mlflow.pyfunc.load_model (no check):        {mlflow_load:.3f} s")


if __name__ == "__main__":
    main()
