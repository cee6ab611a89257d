"""Past one machine (issue #16): nbprod score and nbprod.profile over parquet partitions, vs plain pandas.

Same run, same data (written under /tmp and deleted at the end):

- score: `nbprod.score` in process (Dask's threaded local scheduler; server code path: verified load,
  coerce, OOD flags, prediction ids; writes the output) vs the floor, a `pyarrow` read of the same
  batches + `model.predict` loop on one process (reads and predicts only, writes nothing). Floor and
  nbprod are interleaved for ``--rounds`` rounds and the best of each is kept, so load changes hit
  both alike. Goal ≥ 0.9× the floor's rows/s, for a directory of parts and for one .parquet file.
  Memory: the process's RSS sampled every 0.1 s (psutil), growth over its RSS before the job.
- cluster: the same job on a 1-worker and a 2-worker `LocalCluster` (1 thread per worker; 2 cores
  here): the speed-up, and each worker's RSS sampled from the client (`client.run` + psutil).
- profile: `nbprod.profile(dask frame)` (one partition per row group) on a 1-worker LocalCluster vs
  `pd.read_parquet` + `nbprod.profile` in a fresh process (goal: within 1.5×), interleaved for
  ``--rounds`` rounds (best of each), with the CPU seconds of both; peak memory: the worker's RSS
  sampled inside the worker every 0.02 s vs the child's sampled RSS (goal ≤ 0.3×). ``ru_maxrss`` is
  not used: Linux carries a parent's peak over fork/exec.

    .venv/bin/python benchmarks/bench_dask.py --rows 10000000
    .venv/bin/python benchmarks/bench_dask.py --rows 2000000 --skip profile   # one section less
    .venv/bin/python benchmarks/bench_dask.py --rows 2000000 --skip cluster,profile --baseline-src /tmp/base/src

``--baseline-src``: the score section also runs another checkout's nbprod (and this one's) in fresh
processes, interleaved with the floor, for a before / after in one run. The cluster section has no
such option: run it once per checkout (``PYTHONPATH=/tmp/base/src`` in front: workers inherit it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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


class PeakRss:
    """Peak resident memory (MB) of live processes, sampled every ``every`` s in a thread: ``probe()``
    returns {process: rss bytes}. Why sampling: ``ru_maxrss`` carries a parent's peak over fork/exec, so
    a worker's or a child's own figure cannot be read from it."""

    def __init__(self, probe, every: float = 0.1):
        self.probe, self.every, self.peak = probe, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for k, v in self.probe().items():
                    self.peak[k] = max(self.peak.get(k, 0), v)
            except Exception:  # noqa: BLE001 - a process that just ended
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return max(self.peak.values(), default=0) / 1e6


def own_rss() -> dict:
    import psutil

    return {"self": psutil.Process().memory_info().rss}


def worker_rss(client):
    def probe() -> dict:
        return client.run(lambda: __import__("psutil").Process().memory_info().rss)
    return probe


def child(code: str) -> tuple[list[float], float]:
    """Run ``code`` in a fresh interpreter: (the numbers on the last line it prints, its peak RSS in MB,
    sampled every 0.02 s)."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    with PeakRss(lambda: {"child": ps.memory_info().rss}, every=0.02) as peak:
        out, _ = proc.communicate()
    return [float(v) for v in out.strip().splitlines()[-1].split()], peak.mb


SCORE_CHILD = """
import os, sys, threading, time
import pandas as pd, psutil
import nbprod
data, out, batch_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = dict(batch_rows=batch_rows, probabilities=False, progress=False, overwrite=True)
first = sorted(p for p in os.listdir(data) if p.endswith(".parquet"))[0]
warm = out + ".warm-input.parquet"  # one batch of the data, scored first: loads the model (the MLflow one too,
pd.read_parquet(os.path.join(data, first)).iloc[:batch_rows].to_parquet(warm)  # where a version uses it) and
nbprod.score("bench@champion", warm, out + ".warm.parquet", dask=False, **opts)  # warms the allocators, as
os.remove(warm)  # the in-process rounds are warm: the job alone is timed
proc, stop, peak = psutil.Process(), threading.Event(), [0]
base = proc.memory_info().rss
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop.wait(0.1)
threading.Thread(target=sample, daemon=True).start()
t, c = time.perf_counter(), time.process_time()
nbprod.score("bench@champion", data, out, dask=False, **opts)
wall, cpu = time.perf_counter() - t, time.process_time() - c
stop.set()
print(wall, cpu, (peak[0] - base) / 1e6)
"""


def score_child(src: str, data: Path, out: Path, batch_rows: int) -> tuple[float, float, float]:
    """``nbprod.score`` of ``data`` in a fresh interpreter importing nbprod from ``src`` (a checkout's
    ``src``): (seconds, CPU seconds, RSS growth in MB) of the job alone, after a warm-up job of one batch
    (a cold process paid ~1.5x the CPU: page faults of fresh memory). Why a child: two versions of
    nbprod cannot be imported in one process."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    done = subprocess.run([sys.executable, "-c", SCORE_CHILD, str(data), str(out), str(batch_rows)], env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    wall, cpu, rss = (float(v) for v in done.stdout.strip().splitlines()[-1].split())
    return wall, cpu, rss


def _start_sampling(every: float, dask_worker=None) -> None:
    """On a worker: a thread that keeps the process's peak RSS (sampled from inside, every ``every`` s:
    a sampler on the client, one ``client.run`` round trip per sample, misses short peaks)."""
    import psutil

    stop, state = threading.Event(), {"peak": 0}
    proc = psutil.Process()

    def loop() -> None:
        while not stop.is_set():
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            stop.wait(every)

    threading.Thread(target=loop, daemon=True).start()
    dask_worker._bench_sampler = (stop, state)


def _stop_sampling(dask_worker=None) -> int:
    stop, state = dask_worker._bench_sampler
    stop.set()
    return state["peak"]


def _cpu_seconds() -> float:
    return time.process_time()


class WorkerPeak:
    """Peak RSS (MB) of a cluster's workers over a block, sampled inside each worker."""

    def __init__(self, client, every: float = 0.02):
        self.client, self.every, self.peak = client, every, {}

    def __enter__(self) -> "WorkerPeak":
        self.client.run(_start_sampling, self.every)
        return self

    def __exit__(self, *exc) -> None:
        self.peak = self.client.run(_stop_sampling)

    @property
    def mb(self) -> float:
        return max(self.peak.values(), default=0) / 1e6


def _warm(path: str, name: str, version: str) -> None:
    """On a worker: load and verify the model into the worker's cache (returns nothing to ship back)."""
    from nbprod.batch.score import _served

    _served(path, name, version)


def _arrow_threads(n: int) -> None:
    import pyarrow as pa

    pa.set_cpu_count(n)
    pa.set_io_thread_count(n)


def cluster(workers: int):
    import distributed

    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, silence_logs=40)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch-rows", type=int, default=250_000)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved floor / nbprod rounds (best of each)")
    ap.add_argument("--worker-arrow-threads", type=int, default=0,
                    help="cap pyarrow's CPU and IO thread pools on each cluster worker (0: pyarrow's default)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: score,cluster,profile")
    ap.add_argument("--baseline-src", default="",
                    help="score section: also run nbprod from this src directory (e.g. `git archive main src | tar -x "
                         "-C /tmp/base` -> /tmp/base/src), and this checkout's, each in a fresh process, interleaved "
                         "with the floor; prints both against the floor and against each other")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    root = Path(tempfile.mkdtemp(prefix="nbprod-bench-dask-", dir="/tmp"))
    os.environ["NBPROD_HOME"] = str(root / "home")
    os.environ["NBPROD_PREDICTION_LOG"] = "off"  # the log is measured in bench_predlog
    rows = args.rows
    try:
        import distributed

        import nbprod

        data = root / "data"
        t = time.perf_counter()
        make_data(data, rows, args.batch_rows)
        size = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        print(f"data: {rows:,} rows x {N_NUM + N_CAT} columns, {size:.0f} MB parquet in "
              f"{len(list(data.iterdir()))} file(s), row groups of {args.batch_rows:,} "
              f"({time.perf_counter() - t:.1f} s); load average {load()}")
        model, X, y = train(data)
        nbprod.register(model, "bench", X, y, alias="champion")
        nbprod.score("bench@champion", X.iloc[:1000], progress=False)  # warm the serving cache
        opts = dict(batch_rows=args.batch_rows, probabilities=False, progress=False, overwrite=True)
        if "score" not in skip:
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}  # CPU seconds of this process (all threads): the work, whatever the load
            peaks: dict[str, float] = {}
            for r in range(args.rounds):  # interleaved, so a change of load hits all three alike
                t, c = time.perf_counter(), time.process_time()
                floor(data, model, args.batch_rows)
                best["floor"] = min(best.get("floor", 1e9), time.perf_counter() - t)
                cpu["floor"] = min(cpu.get("floor", 1e9), time.process_time() - c)
                for kind, out in (("parts", root / "out-dir"), ("file", root / "out.parquet")):
                    base = own_rss()["self"]
                    with PeakRss(own_rss) as peak:
                        t, c = time.perf_counter(), time.process_time()
                        nbprod.score("bench@champion", data, out, dask=False, **opts)
                        best[kind] = min(best.get(kind, 1e9), time.perf_counter() - t)
                        cpu[kind] = min(cpu.get(kind, 1e9), time.process_time() - c)
                    peaks[kind] = max(peaks.get(kind, 0), peak.mb - base / 1e6)
                print(f"  round {r + 1}: load average {load()}")
            if args.baseline_src:
                here = str(Path(__file__).resolve().parents[1] / "src")
                for r in range(args.rounds):  # floor, then this checkout and the baseline, for each output kind
                    t, c = time.perf_counter(), time.process_time()
                    floor(data, model, args.batch_rows)
                    best["floor"] = min(best["floor"], time.perf_counter() - t)
                    cpu["floor"] = min(cpu["floor"], time.process_time() - c)
                    for kind, out in (("parts", root / "out-dir"), ("file", root / "out.parquet")):
                        for who, src in (("new", here), ("base", args.baseline_src)):
                            wall, used, rss = score_child(src, data, out, args.batch_rows)
                            key = f"{who}-{kind}"
                            best[key], cpu[key] = min(best.get(key, 1e9), wall), min(cpu.get(key, 1e9), used)
                            peaks[key] = max(peaks.get(key, 0), rss)
                    print(f"  baseline round {r + 1}: load average {load()}")
                for kind in ("parts", "file"):
                    for who in ("new", "base"):
                        key = f"{who}-{kind}"
                        print(f"score ({'this checkout' if who == 'new' else 'baseline ' + args.baseline_src}, fresh "
                              f"process) writing {kind}: {rows / best[key]:,.0f} rows/s -> "
                              f"{best['floor'] / best[key]:.2f}x the floor; CPU {cpu[key]:.1f} s -> "
                              f"{cpu[key] / cpu['floor']:.2f}x the floor's; peak RSS growth {peaks[key]:,.0f} MB")
                    print(f"score writing {kind}: this checkout {best[f'base-{kind}'] / best[f'new-{kind}']:.2f}x the "
                          f"baseline's rows/s, CPU {cpu[f'new-{kind}'] / cpu[f'base-{kind}']:.2f}x the baseline's")
            for kind, what in (("parts", "a directory of parts"), ("file", "one .parquet file")):
                print(f"score in process (Dask threads) writing {what}: {rows / best[kind]:,.0f} rows/s vs floor "
                      f"{rows / best['floor']:,.0f} rows/s -> {best['floor'] / best[kind]:.2f}x (goal >= 0.9x); "
                      f"CPU time {cpu[kind]:.1f} s vs floor {cpu['floor']:.1f} s -> {cpu[kind] / cpu['floor']:.2f}x; "
                      f"peak RSS growth {peaks[kind]:,.0f} MB (data {size:,.0f} MB parquet)")
        if "cluster" not in skip:
            times = {}
            for workers in (1, 2):
                with cluster(workers) as c, distributed.Client(c) as client:
                    from nbprod.batch import score as job

                    # every worker loads (and verifies) the model before the clock starts, as the 1-worker run's
                    # did: a first task only warms the one worker it runs on
                    client.run(_warm, *job._model("bench@champion"))
                    if args.worker_arrow_threads:
                        client.run(_arrow_threads, args.worker_arrow_threads)
                    base = max(worker_rss(client)().values()) / 1e6
                    with PeakRss(worker_rss(client), every=0.2) as peak:
                        t = time.perf_counter()
                        nbprod.score("bench@champion", data, root / f"out-{workers}", dask=client, **opts)
                        times[workers] = time.perf_counter() - t
                    loads = client.run(lambda: len(sys.modules["nbprod.batch.score"]._loaded))
                    print(f"  model loads per worker process (not per task): {sorted(loads.values())}")
                    print(f"score, LocalCluster {workers} worker(s) x 1 thread, directory of parts: "
                          f"{rows / times[workers]:,.0f} rows/s; worker peak RSS {peak.mb:,.0f} MB (after loading "
                          f"the model {base:,.0f} MB); load average {load()}")
            print(f"score speed-up, 2 workers over 1: {times[1] / times[2]:.2f}x (2 cores, shared machine)")
        if "profile" not in skip:
            import dask.dataframe as dd

            code = ("import time, pandas as pd, nbprod; t, c = time.perf_counter(), time.process_time(); "
                    f"df=pd.read_parquet({str(data)!r}); nbprod.profile(df); "
                    "print(time.perf_counter() - t, time.process_time() - c)")
            best = {"pandas": 1e9, "nbprod": 1e9}
            cpu = {"pandas": 1e9, "nbprod": 1e9}
            peaks = {"pandas": 0.0, "nbprod": 0.0}
            with cluster(1) as c, distributed.Client(c) as client:  # a fresh worker: its peak RSS is the profile's
                base = max(worker_rss(client)().values()) / 1e6
                for r in range(args.rounds):  # interleaved: a change of load hits both alike
                    (t_pandas, c_pandas), rss_pandas = child(code)
                    best["pandas"], cpu["pandas"] = min(best["pandas"], t_pandas), min(cpu["pandas"], c_pandas)
                    peaks["pandas"] = max(peaks["pandas"], rss_pandas)
                    c0 = sum(client.run(_cpu_seconds).values()) + time.process_time()
                    with WorkerPeak(client) as peak:
                        t = time.perf_counter()
                        nbprod.profile(dd.read_parquet(data, split_row_groups=True), dask=client)
                        t_prof = time.perf_counter() - t
                    c_prof = sum(client.run(_cpu_seconds).values()) + time.process_time() - c0
                    best["nbprod"], cpu["nbprod"] = min(best["nbprod"], t_prof), min(cpu["nbprod"], c_prof)
                    peaks["nbprod"] = max(peaks["nbprod"], peak.mb)
                    print(f"  round {r + 1}: partitions {t_prof:.1f} s ({c_prof:.1f} s CPU, worker peak "
                          f"{peak.mb:,.0f} MB) vs pandas {t_pandas:.1f} s ({c_pandas:.1f} s CPU, peak "
                          f"{rss_pandas:,.0f} MB); load average {load()}")
            print(f"profile: partitions on 1 worker {best['nbprod']:.1f} s vs pandas in one process "
                  f"{best['pandas']:.1f} s -> {best['nbprod'] / best['pandas']:.2f}x (goal <= 1.5x; best of "
                  f"{args.rounds}); CPU {cpu['nbprod']:.1f} s (worker + client) vs {cpu['pandas']:.1f} s -> "
                  f"{cpu['nbprod'] / cpu['pandas']:.2f}x; peak RSS worker {peaks['nbprod']:,.0f} MB (idle "
                  f"{base:,.0f} MB) vs one process {peaks['pandas']:,.0f} MB -> "
                  f"{peaks['nbprod'] / peaks['pandas']:.2f}x (goal <= 0.3x); load average {load()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
