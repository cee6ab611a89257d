"""Model server: nbprod serve next to `mlflow models serve --env-manager local`, same model, same run.

The model is the issue's pipeline: ColumnTransformer(SimpleImputer+StandardScaler on 20 numeric columns +
OneHotEncoder on 5 categorical ones) → LogisticRegression, 25 columns (benchmarks/data.py's
make_frame when present, else the generator below). Both servers run one worker on 127.0.0.1 and
get the same requests from the same client (keep-alive http.client connections, one per client
thread, bounded in count and time). Figures per server:

- start: process spawn until GET /ping answers 200 (nbprod: with its start-up cache warm, which is
  what every start after the first sees; the cold first start is printed too);
- single-row latency: N sequential one-row `dataframe_split` requests, p50/p95/p99;
- throughput: C concurrent clients sending one-row requests for S seconds: requests/s and p50.

    .venv/bin/python benchmarks/bench_serve.py [--runs 3] [--seq 1000] [--clients 16] [--seconds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def make_frame(n: int, seed: int = 0):
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        from data import make_frame as shared  # type: ignore

        df = shared(n, seed=seed)
        for c in df.columns:
            if str(df[c].dtype) == "category":
                df[c] = df[c].astype(str)
        score = (df.iloc[:, 0] - df.iloc[:, 0].mean()) / df.iloc[:, 0].std() + (df["cat_0"] == df["cat_0"].iloc[0])
        return df, (score > 0.5).astype(int)
    except Exception:  # noqa: BLE001 - the shared generator is not there (yet)
        pass
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    d = {f"num_{i}": rng.normal(i, 1 + i / 10, n) for i in range(20)}
    for i in range(5):
        d[f"cat_{i}"] = rng.choice([f"c{j}" for j in range(4 + i)], n)
    df = pd.DataFrame(d)
    y = (df.num_0 + 0.3 * df.num_1 + (df.cat_0 == "c1") + rng.normal(0, 1, n) > 1.5).astype(int)
    return df, y


def build_model(dst: Path):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    out = make_frame(5000)
    df, y = out
    num = [c for c in df if df[c].dtype.kind in "fi"]
    cat = [c for c in df if c not in num]
    pipe = Pipeline([("pre", ColumnTransformer([("num", Pipeline([("impute", SimpleImputer()),
                                                                          ("scale", StandardScaler())]), num),
                                                ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])),
                     ("clf", LogisticRegression(max_iter=1000))]).fit(df, y)
    mlflow.sklearn.save_model(pipe, str(dst), signature=infer_signature(df, pipe.predict(df)),
                              input_example=df.head(20), serialization_format="cloudpickle")
    return df, pipe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, limit: float = 120) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(conn: http.client.HTTPConnection, body: bytes) -> float:
    t0 = time.perf_counter()
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}")
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def sequential(port: int, bodies: list[bytes], n: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for b in bodies[:50]:  # warm-up
        post(conn, b)
    lat = [post(conn, bodies[i % len(bodies)]) for i in range(n)]
    conn.close()
    return {"p50": pct(lat, .5), "p95": pct(lat, .95), "p99": pct(lat, .99)}


def concurrent(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, i = [], k
        while time.perf_counter() < deadline:
            try:
                mine.append(post(conn, bodies[i % len(bodies)]))
            except Exception:  # noqa: BLE001
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i += clients
        conn.close()
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"rps": len(lat) / wall, "p50": pct(lat, .5), "p99": pct(lat, .99), "errors": errors[0]}


def run_server(cmd: list[str], port: int, env: dict, bodies, args) -> dict:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = wait_ready(port, proc)
        seq = sequential(port, bodies, args.seq)
        conc = concurrent(port, bodies, args.clients, args.seconds)
    finally:
        stop(proc)
    return {"start": start, **{f"seq_{k}": v for k, v in seq.items()}, **{f"conc_{k}": v for k, v in conc.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of both servers")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nbprod-bench-serve-"))
    try:
        model = work / "model"
        df, pipe = build_model(model)
        rows = df.head(200)
        bodies = [json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": [r]}}).encode()
                  for r in json.loads(rows.to_json(orient="values"))]
        import time as _t

        one = rows.head(1)
        t0 = _t.perf_counter()
        for _ in range(200):
            pipe.predict(one)
        floor1 = (_t.perf_counter() - t0) / 200 * 1000
        env = {**os.environ, "NBPROD_HOME": str(work / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
        env.pop("NBPROD_DB_URL", None)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow serve execs `uvicorn`
        env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # our own freshly saved model
        results: dict[str, list[dict]] = {"mlflow": [], "nbprod": []}
        cold = None
        for run in range(args.runs):
            if not args.skip_mlflow:
                port = free_port()
                results["mlflow"].append(run_server(
                    [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
                     "-h", "127.0.0.1", "-p", str(port), "-w", str(args.workers)], port, env, bodies, args))
            port = free_port()
            cmd = [str(VENV_BIN / "nbprod"), "serve", "--model-dir", str(model), "--port", str(port), "--no-auth",
                   "--workers", str(args.workers)]
            if cold is None:  # first start fills the start-up cache
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    cold = wait_ready(port, proc)
                finally:
                    stop(proc)
                port = free_port()
                cmd[cmd.index("--port") + 1] = str(port)
            results["nbprod"].append(run_server(cmd, port, env, bodies, args))
            print(f"run {run + 1}: " + json.dumps({k: {m: round(x, 2) for m, x in v[-1].items()}
                                                   for k, v in results.items() if v}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(server: str, key: str) -> float:
        return statistics.median(r[key] for r in results[server])

    import mlflow
    import sklearn
    import starlette
    import uvicorn

    print(f"\npython {sys.version.split()[0]}, mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}, "
          f"starlette {starlette.__version__}, uvicorn {uvicorn.__version__}; {os.cpu_count()} cores; "
          f"{args.workers} worker(s); median of {args.runs} runs; in-process pipe.predict(1 row) {floor1:.2f} ms; "
          f"nbprod cold first start {cold:.2f} s")
    print("| figure | mlflow models serve | nbprod serve | ratio |")
    print("| --- | --- | --- | --- |")
    for key, label, unit, better in [("seq_p50", "single-row p50", "ms", "lower"),
                                      ("seq_p95", "single-row p95", "ms", "lower"),
                                      ("seq_p99", "single-row p99", "ms", "lower"),
                                      ("conc_rps", f"{args.clients} clients, {args.seconds:g} s: requests/s", "req/s",
                                       "higher"),
                                      ("conc_p50", f"{args.clients} clients: p50", "ms", "lower"),
                                      ("start", "start until /ping answers", "s", "lower")]:
        n = med("nbprod", key)
        if results["mlflow"]:
            m = med("mlflow", key)
            ratio = (m / n) if better == "lower" else (n / m)
            print(f"| {label} | {m:.2f} {unit} | {n:.2f} {unit} | {ratio:.1f}× |")
        else:
            print(f"| {label} | — | {n:.2f} {unit} | — |")
    errs = sum(r["conc_errors"] for rs in results.values() for r in rs)
    print(f"failed requests: {errs}")


if __name__ == "__main__":
    main()
