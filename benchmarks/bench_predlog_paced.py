"""Prediction log: the writer thread's CPU per request at a serving worker's pace, the log at its cap (issue 13).

Like a server's workers: ``--procs`` processes share one SQLite state DB (a temporary NBPROD_HOME), each
hands the hooks credit-shaped requests (int64 / float64 arrays, text lists, int64 class labels, as the
server coerces them) at ``--rate`` requests/s; the log is first filled to ``--cap`` rows with this side's
code, so every writer prunes as it writes. After 2 s of warm-up, ``--seconds`` are measured: the writer
thread's user and system CPU (``/proc/self/task/<tid>/stat``) per request, and the CPU of its prunes and of
their ``state.reclaim``. ``--baseline-src`` runs the same with an older ``src`` first (sides alternating).

    .venv/bin/python benchmarks/bench_predlog_paced.py --baseline-src /tmp/b1/src [--per 100] [--rate 600]
        [--seconds 8] [--cap 300000] [--procs 2] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _template(per: int) -> dict:
    import numpy as np

    from nbprod.datasets import credit

    X, _ = credit(2000, 0)
    X = X.sample(per, random_state=per)
    cols: dict = {}
    for c in X.columns:
        kind = X[c].dtype.kind
        if kind in "iu":
            cols[c] = X[c].to_numpy(dtype=np.int64)
        elif kind == "f":
            cols[c] = X[c].to_numpy(dtype=float)
        else:
            cols[c] = X[c].astype(object).where(X[c].notna(), None).tolist()
    return {"version": "1", "role": "stable", "n": per, "inputs": cols, "ood": [[] for _ in range(per)],
            "predictions": (np.arange(per) % 3 == 0).astype(np.int64), "latency_ms": 1.0}


def _cpu(tid: int) -> tuple[int, int]:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime in clock ticks


def _worker(idx: int, per: int, rate: float, seconds: float, cap: int, out) -> None:
    from nbprod import state
    from nbprod.monitoring import predlog

    predlog.ensure_tables()
    template = _template(per)
    log = predlog.PredictionLog("bench", max_rows=cap)

    class _Count:
        def inc(self, n: int = 1) -> None:
            pass

    log.bind_counter(_Count())
    spent = {"prune": 0.0, "reclaim": 0.0}
    prune, reclaim = log.prune, state.reclaim

    def timed(name: str, fn):
        def call(*a, **k):
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.thread_time() - t
        return call

    log.prune, state.reclaim = timed("prune", prune), timed("reclaim", reclaim)  # type: ignore[method-assign]
    n = 0

    def put() -> None:
        nonlocal n
        n += 1
        log.on_prediction({**template, "request_id": f"w{idx}-{os.getpid()}-{n}"})

    put()
    log.flush(30)
    assert log._thread is not None
    tid = log._thread.native_id
    start = time.perf_counter()
    before: tuple[int, int] | None = None
    n0 = 0
    while (elapsed := time.perf_counter() - start) < 2.0 + seconds:
        if before is None and elapsed >= 2.0:
            before, n0 = _cpu(tid), n
            spent.update(prune=0.0, reclaim=0.0)
        while n < int(elapsed * rate):
            put()
        time.sleep(0.002)
    log.flush(120)
    after = _cpu(tid)
    assert before is not None
    requests = n - n0
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    out.put({"user_us": (after[0] - before[0]) * tick / requests, "sys_us": (after[1] - before[1]) * tick / requests,
             "prune_us": spent["prune"] * 1e6 / requests, "reclaim_us": spent["reclaim"] * 1e6 / requests,
             "dropped": log.dropped, "error": log.last_error})
    log.close()


def child(args) -> None:
    from nbprod.monitoring.predlog import log_rows

    if args.cap:
        template = _template(args.per)
        for k in range(0, args.cap // args.per, 500):
            log_rows("bench", [("prediction", time.time(), {**template, "request_id": f"old{k + j}"})
                               for j in range(500)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(i, args.per, args.rate, args.seconds, args.cap or 1_000_000, out))
             for i in range(args.procs)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    mean = {k: sum(r[k] for r in results) / len(results) for k in ("user_us", "sys_us", "prune_us", "reclaim_us")}
    print(json.dumps({**mean, "dropped": sum(r["dropped"] for r in results),
                      "errors": [r["error"] for r in results if r["error"]]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per", type=int, default=100, help="rows per request")
    ap.add_argument("--rate", type=float, default=600.0, help="requests/s per process")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--cap", type=int, default=300_000, help="the log's max_rows, filled first (0: never reached)")
    ap.add_argument("--procs", type=int, default=2, help="processes (server workers) sharing the state DB")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--baseline-src", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    sides = [("before", args.baseline_src), ("after", None)] if args.baseline_src else [("after", None)]
    print(f"{args.procs} processes x {args.rate:g} requests/s of {args.per} rows, cap {args.cap:,}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    for run in range(args.runs):
        for side, src in sides:
            with tempfile.TemporaryDirectory(prefix="bench-predlog-paced-") as home:
                env = {**os.environ, "NBPROD_HOME": home}
                env.pop("NBPROD_DB_URL", None)
                env.pop("PYTHONPATH", None)
                if src:
                    env["PYTHONPATH"] = str(Path(src).resolve())
                cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
                if done.returncode:
                    raise RuntimeError(done.stderr[-3000:])
                r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"run {run + 1}, {side}: writer user {r['user_us']:.1f} + sys {r['sys_us']:.1f} = "
                  f"{r['user_us'] + r['sys_us']:.1f} us/request (prunes {r['prune_us']:.1f}, of which reclaim "
                  f"{r['reclaim_us']:.1f}); dropped {r['dropped']}; load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
