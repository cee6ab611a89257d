"""Prediction log: request-path overhead of logging (same server, log on vs off, same run) and writer rows/s.

1. Overhead: `nbprod serve --model-dir M --no-auth` on 127.0.0.1, one worker, the credit-risk pipeline
   (nbprod.datasets.credit, ColumnTransformer → LogisticRegression). Rounds alternate log OFF
   (NBPROD_PREDICTION_LOG=off) and ON (the default), each a fresh server: N sequential one-row
   requests on a keep-alive connection (client-side latency p50/p99), then C concurrent clients
   for S seconds (requests/s). Medians over the rounds; ratio ON/OFF.
2. Writer: PredictionLog on the state DB (SQLite in a temp NBPROD_HOME), fed by the hooks as fast
   as one thread can call them (requests of 1 and of 50 rows): rows/s from the first hook call
   until everything is written.

    .venv/bin/python benchmarks/bench_predlog.py [--runs 3] [--seq 1000] [--clients 4] [--seconds 5] [--rows 100000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(root: Path) -> tuple[str, list[dict]]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nbprod.datasets import credit

    X, y = credit(5000, 0)
    num = [c for c in X.columns if X[c].dtype.kind in "if"]
    cat = [c for c in X.columns if c not in num]
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    pipe = make_pipeline(pre, LogisticRegression(max_iter=300)).fit(X, y)
    path = root / "model"
    Xs = X.astype({c: "float64" for c in num})
    mlflow.sklearn.save_model(pipe, str(path), signature=infer_signature(Xs, pipe.predict(X)),
                              serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    rows = json.loads(Xs.head(200).to_json(orient="records"))
    return str(path), rows


def start(model: str, home: Path, log: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "NBPROD_HOME": str(home), "NBPROD_PREDICTION_LOG": "on" if log else "off"}
    env.pop("NBPROD_DB_URL", None)
    proc = subprocess.Popen([str(VENV_BIN / "nbprod"), "serve", "--model-dir", model, "--no-auth", "--port", str(port)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                c.close()
                return proc, port
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def sequential(port: int, bodies: list[bytes], n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for i in range(n):
        t = time.perf_counter()
        conn.request("POST", "/invocations", bodies[i % len(bodies)], {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, r.status
    conn.close()
    return out


def concurrent(port: int, bodies: list[bytes], clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = k
        while time.monotonic() < stop_at:
            conn.request("POST", "/invocations", bodies[i % len(bodies)], {"Content-Type": "application/json"})
            conn.getresponse().read()
            counts[k] += 1
            i += clients
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(counts) / seconds


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def writer_rate(home: Path, rows: int, per_request: int) -> tuple[float, float]:
    import numpy as np

    from nbprod.config import settings
    from nbprod.monitoring.predlog import PredictionLog

    os.environ["NBPROD_HOME"] = str(home)
    os.environ.pop("NBPROD_DB_URL", None)
    settings.reset()
    rng = np.random.default_rng(0)
    cols = {f"x{i}": rng.normal(size=per_request) for i in range(5)}
    cols.update({"country": ["DE"] * per_request, "purpose": ["car"] * per_request})
    pred = rng.uniform(size=(per_request, 2))
    log = PredictionLog(f"bench-{per_request}", max_pending_rows=rows + 1)
    records = [{"request_id": f"r{per_request}-{i}", "version": "1", "role": "stable", "n": per_request,
                "inputs": cols, "predictions": pred, "ood": None, "latency_ms": 1.0}
               for i in range(rows // per_request)]
    t = time.perf_counter()
    for record in records:
        log.on_prediction(record)
    hook_us = (time.perf_counter() - t) / len(records) * 1e6
    assert log.flush(600)
    elapsed = time.perf_counter() - t
    log.close()
    assert log.dropped == 0 and log.written == rows // per_request * per_request, log.stats()
    return log.written / elapsed, hook_us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    import platform

    import sqlalchemy

    from nbprod import __version__

    print(f"nbprod {__version__}, Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-predlog-") as tmp:
        root = Path(tmp)
        model, rows = build_model(root)
        bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
        res: dict[bool, dict[str, list[float]]] = {False: {"p50": [], "p99": [], "rps": []},
                                                    True: {"p50": [], "p99": [], "rps": []}}
        logged = 0
        for run in range(args.runs):
            for log in (False, True):
                home = root / f"home-{run}-{int(log)}"
                proc, port = start(model, home, log)
                try:
                    sequential(port, bodies, 100)  # warm-up
                    lat = sequential(port, bodies, args.seq)
                    rps = concurrent(port, bodies, args.clients, args.seconds)
                finally:
                    stop(proc)
                res[log]["p50"].append(statistics.median(lat))
                res[log]["p99"].append(pct(lat, 99))
                res[log]["rps"].append(rps)
                if log:
                    import sqlite3

                    with sqlite3.connect(home / "nbprod.db") as db:
                        logged = db.execute("select count(*) from predictions").fetchone()[0]
                print(f"run {run + 1} log={'on ' if log else 'off'}: p50 {statistics.median(lat):.3f} ms, "
                      f"p99 {pct(lat, 99):.3f} ms, {rps:.0f} req/s" + (f", {logged} rows logged" if log else ""),
                      flush=True)
        med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
        print(f"\nsequential one-row requests ({args.seq}/run), median of {args.runs} runs:")
        for q in ("p50", "p99"):
            print(f"  {q}: off {med[False][q]:.3f} ms, on {med[True][q]:.3f} ms, "
                  f"ratio on/off {med[True][q] / med[False][q]:.3f}")
        print(f"throughput ({args.clients} clients, {args.seconds:g} s): off {med[False]['rps']:.0f} req/s, "
              f"on {med[True]['rps']:.0f} req/s, ratio on/off {med[True]['rps'] / med[False]['rps']:.3f}")
        for per in (1, 50):
            n = args.rows if per > 1 else args.rows // 5
            runs = [writer_rate(root / f"writer-{per}-{i}", n, per) for i in range(args.runs)]
            print(f"writer (SQLite, {per}-row requests, {n} rows): "
                  f"median {statistics.median(r for r, _ in runs):,.0f} rows/s; "
                  f"hook call on the request path: median {statistics.median(u for _, u in runs):.1f} µs/request")


if __name__ == "__main__":
    main()
