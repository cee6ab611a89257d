"""The serving metrics' cost per prediction request, in process: before (``--baseline-src``) and after, same run.

A request of the serving app makes these metric calls (``nbprod/serving/app.py``): the in-flight gauge
up and down, the batch-rows histogram (the batcher's hook), the predicted-rows counter, the prediction
values (``observe_many``), the request counter and the latency histogram. This runs them ``--iterations``
times in a fresh interpreter per side and mode, and prints the process CPU time per request (every
thread's: the flushing thread is counted), with the multiprocess files (a server with several workers)
and in memory (one worker). The counts are checked after a final scrape (``render``), so a faster side
that lost updates would fail, not win.

    .venv/bin/python benchmarks/bench_metrics.py --baseline-src /tmp/b0/src [--iterations 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

CHILD = r'''
import os, re, sys, time
import numpy as np
from nbprod.serving.metrics import ServingMetrics, observe_many

iterations, n_rows = int(sys.argv[1]), int(sys.argv[2])
m = ServingMetrics()
values = np.random.default_rng(0).random(n_rows)


def request() -> None:
    m.in_flight.inc()
    m.child(m.batch_rows, "1").observe(n_rows)
    m.child(m.rows, "1", "stable").inc(n_rows)
    observe_many(m.child(m.predictions, "1"), values)
    m.in_flight.dec()
    m.child(m.requests, "1", "200", "invocations").inc()
    m.child(m.latency, "1", "200").observe(0.0012)


for _ in range(1000):  # warm: children made, files mapped
    request()
flush = getattr(m, "flush", lambda: None)
flush()
t0 = time.process_time()
for _ in range(iterations):
    request()
flush()
cpu = time.process_time() - t0
text = m.render().decode()
done = float(re.search(r'^nbprod_requests_total\{[^}]*\} (\S+)$', text, re.M).group(1))
counted = float(re.search(r'^nbprod_prediction_value_count\{[^}]*\} (\S+)$', text, re.M).group(1))
assert done == iterations + 1000 and counted == (iterations + 1000) * n_rows, (done, counted)
assert "nbprod_in_flight_requests 0.0" in text
print(cpu / iterations * 1e6)
'''


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def one(src: Path, multiprocess: bool, iterations: int, rows: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "NBPROD_METRICS_FLUSH_S")}
    env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as d:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = d
        out = subprocess.run([sys.executable, "-c", CHILD, str(iterations), str(rows)], env=env, capture_output=True,
                             text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_metrics: the run with {src} failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-src", required=True, help="the src directory of the code to compare with")
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", default="1,100", help="rows per request (the prediction values observed)")
    args = ap.parse_args()
    sides = {"before": Path(args.baseline_src).resolve(), "after": SRC}
    print(f"load before: {load()}; {args.iterations:,} requests per run, {args.rounds} rounds, interleaved")
    for rows in [int(r) for r in args.rows.split(",")]:
        for multiprocess in (True, False):
            got: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                for side, src in sides.items():
                    got[side].append(one(src, multiprocess, args.iterations, rows))
            before, after = statistics.median(got["before"]), statistics.median(got["after"])
            mode = "multiprocess files (2+ workers)" if multiprocess else "in memory (1 worker)"
            print(f"{rows:>4} row(s), {mode:<32} CPU-us/request: before {before:6.2f}  after {after:6.2f}  "
                  f"after/before {after / before:.2f}  (runs: {', '.join(f'{x:.2f}' for x in got['before'])} | "
                  f"{', '.join(f'{x:.2f}' for x in got['after'])})  load {load()}")


if __name__ == "__main__":
    main()
