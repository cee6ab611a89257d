"""Past one machine (issue #16): nbprod score and nbprod.profile over parquet partitions, vs plain pandas.

Same run, same data (written under /tmp and deleted at the end):

- score: `nbprod.score` (server code path: verified load, coerce, OOD flags, fast path; writes the
  output parquet) vs the floor, a `pyarrow` read of the same batches + `model.predict` loop on one
  process (reads and predicts only). Goal ≥ 0.9× the floor's rows/s. Then the same job on a
  1-worker and a 2-worker `LocalCluster` (the speed-up; 2 cores here).
- profile: `nbprod.profile(dask frame)` on a 1-worker LocalCluster vs `pd.read_parquet` +
  `nbprod.profile` in one process (goal: within 1.5×), and peak memory: the worker's peak RSS vs
  the one-process peak RSS of loading the whole frame (goal ≤ 0.3×).

    .venv/bin/python benchmarks/bench_dask.py --rows 10000000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_NUM, N_CAT = 20, 5


def make_data(path: Path, rows: int, row_group: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    path.mkdir(parents=True)
    chunk = 1_000_000
    for i, lo in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - lo)
        cols = {f"x{j}": rng.normal(j, 1 + j / 10, n) for j in range(N_NUM)}
        cols.update({f"c{j}": rng.choice(np.array(["a", "b", "c", "d", "e"]), n) for j in range(N_CAT)})
        pq.write_table(pa.table(cols), path / f"part.{i:03d}.parquet", row_group_size=row_group)


def train(path: Path):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = pd.read_parquet(sorted(path.glob("*.parquet"))[0]).iloc[:20_000]
    y = (X.x0 + X.x1 * 0.5 + (X.c0 == "a") > 1.2).astype(int)
    num = [f"x{j}" for j in range(N_NUM)]
    cat = [f"c{j}" for j in range(N_CAT)]
    pre = ColumnTransformer([("num", StandardScaler(), num), ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    return make_pipeline(pre, LogisticRegression(max_iter=300)).fit(X, y), X, y


def floor(path: Path, model, batch_rows: int) -> float:
    import pyarrow.parquet as pq

    t = time.perf_counter()
    n = 0
    for f in sorted(path.glob("*.parquet")):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
            df = batch.to_pandas()
            model.predict(df)
            n += len(df)
    return time.perf_counter() - t


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; (seconds it prints, its peak RSS in MB)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    secs, rss = out.stdout.strip().splitlines()[-1].split()
    return float(secs), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch-rows", type=int, default=250_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nbprod-bench-dask-", dir="/tmp"))
    os.environ["NBPROD_HOME"] = str(root / "home")
    os.environ["NBPROD_PREDICTION_LOG"] = "off"  # the log is measured in bench_predlog
    try:
        import distributed

        import nbprod

        data = root / "data"
        t = time.perf_counter()
        make_data(data, args.rows, args.batch_rows)
        size = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        print(f"data: {args.rows:,} rows x {N_NUM + N_CAT} columns, {size:.0f} MB parquet"
              f" ({time.perf_counter() - t:.1f} s); load average {os.getloadavg()[0]:.1f}")
        model, X, y = train(data)
        nbprod.register(model, "bench", X, y, alias="champion")
        nbprod.score("bench@champion", X.iloc[:1000], progress=False)  # warm the serving cache
        t_floor = floor(data, model, args.batch_rows)
        t = time.perf_counter()
        nbprod.score("bench@champion", data, root / "out-local", dask=False, batch_rows=args.batch_rows,
                     probabilities=False, progress=False)
        t_local = time.perf_counter() - t
        print(f"score, in process (Dask threads): {args.rows / t_local:,.0f} rows/s; floor (read + predict, one "
              f"process) {args.rows / t_floor:,.0f} rows/s -> ratio {t_floor / t_local:.2f}x (goal >= 0.9x)")
        times = {}
        for workers in (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          host="127.0.0.1", dashboard_address=None, silence_logs=40) as cluster, \
                    distributed.Client(cluster) as client:
                nbprod.score("bench@champion", X.iloc[:1000], dask=client, progress=False)  # load on the workers
                t = time.perf_counter()
                nbprod.score("bench@champion", data, root / f"out-{workers}", dask=client,
                             batch_rows=args.batch_rows, probabilities=False, progress=False)
                times[workers] = time.perf_counter() - t
                rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                print(f"score, LocalCluster {workers} worker(s): {args.rows / times[workers]:,.0f} rows/s; "
                      f"worker peak RSS {max(rss.values()):.0f} MB")
        print(f"score speed-up, 2 workers over 1: {times[1] / times[2]:.2f}x (2 cores, shared machine)")
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:  # a fresh worker: its peak RSS is the profile's
            import dask.dataframe as dd

            t = time.perf_counter()
            nbprod.profile(dd.read_parquet(data), dask=client)
            t_prof = time.perf_counter() - t
            prof_rss = max(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())
        code = ("import time, resource, pandas as pd, nbprod; t=time.perf_counter(); "
                f"df=pd.read_parquet({str(data)!r}); nbprod.profile(df); "
                "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
        t_pandas, rss_pandas = child(code)
        print(f"profile: partitions on 1 worker {t_prof:.1f} s vs pandas in one process {t_pandas:.1f} s -> "
              f"{t_prof / t_pandas:.2f}x (goal <= 1.5x); peak RSS worker {prof_rss:.0f} MB vs one process "
              f"{rss_pandas:.0f} MB -> {prof_rss / rss_pandas:.2f}x (goal <= 0.3x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
