"""Pipelines: the orchestration overhead of ``nbprod.pipeline`` over calling the same verbs by hand.

Issue 15's goal: under 1 s in all for nine steps, excluding the notebooks' own work and the
canary's wait. What the runner adds per step: checking the file, the lock, a parent MLflow run and
a child run per step (outputs logged), the run's state written before and after each step, an
audit row per step. To keep the verbs' own work the same on both sides, both run nine built-in
steps that need no server or kernel — validate, drift, evaluate, three ``register`` (alias moves)
and three ``wait`` of 0 s — on the same registered model and data, interleaved (hand, pipeline,
hand, …) after one warm-up each, in the same process.

    .venv/bin/python benchmarks/bench_pipeline.py [--runs 5]

``--old-src DIR``: also run another checkout's runner (``DIR/nbprod/pipelines``, e.g. from
``git archive REF src | tar -x -C /tmp/old``, then ``--old-src /tmp/old/src``) in the same process,
rounds interleaved (hand, new, old), and print the overhead of both and their per-round difference:
a before/after that a loaded machine does not blur as much as two separate runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

YAML = """\
name: bench
params: {data: DATA, holdout: HOLDOUT}
steps:
  validate: {verb: validate, data: "${params.data}", against: "credit-risk@champion"}
  drift: {verb: drift, reference: "credit-risk@champion", current: "${params.data}"}
  evaluate: {verb: evaluate, model: "credit-risk/1", data: "${params.holdout}", label: default, against: null}
  r1: {verb: register, model: "credit-risk/1", alias: a1}
  r2: {verb: register, model: "${r1.model_uri}", alias: a2}
  r3: {verb: register, model: "${r2.model_uri}", alias: a3}
  w1: {verb: wait, deployment: none, seconds: 0}
  w2: {verb: wait, deployment: none, seconds: 0}
  w3: {verb: wait, deployment: none, seconds: 0}
"""


def _count_commits(fn) -> int:
    """Transactions committed to any database (MLflow's store, the state DB) while ``fn`` runs: the
    overhead's cause that load does not blur (each is a write to disk)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    n = [0]

    def count(_conn) -> None:
        n[0] += 1

    event.listen(Engine, "commit", count)
    try:
        fn()
    finally:
        event.remove(Engine, "commit", count)
    return n[0]


def _old_runner(src: str):
    """``nbprod.pipelines`` of another checkout, loaded beside this one as ``nbprod.pipelines_old``
    (it shares this checkout's nbprod below it: the verbs, stores and state tables)."""
    import importlib.util
    import sys

    folder = Path(src) / "nbprod" / "pipelines"
    spec = importlib.util.spec_from_file_location("nbprod.pipelines_old", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"no nbprod/pipelines under {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nbprod.pipelines_old"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--old-src", help="a src/ folder of another checkout: its pipeline runner, interleaved")
    opts = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nbprod-bench-pipeline-"))
    os.environ["NBPROD_HOME"] = str(home)
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import nbprod
    from nbprod.datasets import credit
    from nbprod.pipelines import verbs

    X, y = credit(2000, 0)
    num = ["age", "income", "debt_ratio", "credit_lines", "late_payments"]
    cat = ["employment", "country", "purpose"]
    pre = ColumnTransformer([("n", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
                             ("c", OneHotEncoder(handle_unknown="ignore"), cat)])
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(X, y)
    nbprod.register(model, "credit-risk", X, y, alias="champion")
    new, _ = credit(500, 1)
    hx, hy = credit(500, 2)
    data, holdout = home / "new.parquet", home / "holdout.parquet"
    new.to_parquet(data)
    hx.assign(default=hy).to_parquet(holdout)
    path = home / "bench.yaml"
    path.write_text(YAML.replace("DATA", str(data)).replace("HOLDOUT", str(holdout)))
    old = _old_runner(opts.old_src) if opts.old_src else None
    old_path = home / "bench-old.yaml"  # its own name: its own lock and runs
    old_path.write_text(path.read_text().replace("name: bench", "name: bench-old"))
    ctx = {"record": lambda pending: None, "tick": lambda: None}

    def by_hand() -> None:
        verbs.validate({"data": str(data), "against": "credit-risk@champion"}, ctx)
        verbs.drift({"reference": "credit-risk@champion", "current": str(data)}, ctx)
        verbs.evaluate({"model": "credit-risk/1", "data": str(holdout), "label": "default", "against": None}, ctx)
        uri = verbs.register({"model": "credit-risk/1", "alias": "a1"}, ctx)["model_uri"]
        uri = verbs.register({"model": uri, "alias": "a2"}, ctx)["model_uri"]
        verbs.register({"model": uri, "alias": "a3"}, ctx)
        for _ in range(3):
            verbs.wait({"deployment": "none", "seconds": 0}, ctx)

    def piped() -> None:
        run = nbprod.pipeline(path)
        assert run.ok, str(run)

    def old_piped() -> None:
        assert old is not None
        run = old.pipeline(old_path)
        assert run.ok, str(run)

    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    hand, pipe, before = [], [], []
    by_hand()
    piped()
    commits = _count_commits(by_hand), _count_commits(piped)
    if old is not None:
        old_piped()
    for _ in range(opts.runs):
        t = time.perf_counter()
        by_hand()
        hand.append(time.perf_counter() - t)
        t = time.perf_counter()
        piped()
        pipe.append(time.perf_counter() - t)
        if old is not None:
            t = time.perf_counter()
            old_piped()
            before.append(time.perf_counter() - t)
    print(f"load average after:  {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    h, p = statistics.median(hand), statistics.median(pipe)
    print(f"nine steps by hand:      median {h:.3f} s  (runs: {', '.join(f'{v:.2f}' for v in hand)})")
    print(f"nine steps as pipeline:  median {p:.3f} s  (runs: {', '.join(f'{v:.2f}' for v in pipe)})")
    print(f"orchestration overhead:  {p - h:.3f} s for 9 steps ({(p - h) / 9 * 1000:.0f} ms/step); ratio {p / h:.2f}x; "
          f"goal < 1 s: {'met' if p - h < 1 else 'NOT met'}")
    print(f"database commits (MLflow + state DB): by hand {commits[0]}, as pipeline {commits[1]} "
          f"(+{commits[1] - commits[0]}, {(commits[1] - commits[0]) / 9:.1f} per step)")
    if before:
        o = statistics.median(before)
        diff = [b - n for b, n in zip(before, pipe, strict=True)]
        print(f"old runner ({opts.old_src}): median {o:.3f} s (runs: {', '.join(f'{v:.2f}' for v in before)}); "
              f"overhead {o - h:.3f} s ({(o - h) / 9 * 1000:.0f} ms/step), ratio {o / h:.2f}x; "
              f"commits {_count_commits(old_piped)}")
        print(f"old minus new, per round: median {statistics.median(diff):.3f} s "
              f"({', '.join(f'{v:.2f}' for v in diff)})")


if __name__ == "__main__":
    main()
