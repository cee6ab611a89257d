"""Prediction log: request-path overhead of logging (same server, log on vs off, same run) and writer rows/s.

1. Overhead: `nbprod serve --model-dir M --no-auth` on 127.0.0.1, one worker, the credit-risk pipeline
   (nbprod.datasets.credit, ColumnTransformer → LogisticRegression). Rounds alternate log OFF
   (NBPROD_PREDICTION_LOG=off) and ON (the default), each a fresh server: N sequential one-row
   requests on a keep-alive connection (client-side latency p50/p99), then C concurrent clients
   for S seconds (requests/s). Medians over the rounds; ratio ON/OFF.
2. Writer: PredictionLog on the state DB (SQLite in a temp NBPROD_HOME), fed by the hooks as fast
   as one thread can call them (requests of 1 and of 50 rows): rows/s from the first hook call
   until everything is written.
3. ``--writer-only`` (with ``--baseline-src``, issue 13): the writer thread's own CPU time per logged row
   (from /proc: the thread's schedstat) for 1-row and 100-row requests of the credit columns, each round
   in a fresh process, this checkout's code and the baseline's alternating (``git archive main src | tar
   -x -C /tmp/base`` → ``--baseline-src /tmp/base/src``); the ratio before/after. ``--read-rows N`` adds
   the read side: ``nbprod.monitor`` (24 windows of 1 h, drift against the training profile, labels on
   a fifth of the rows) over N logged rows written as 100-row requests, before and after; and over N/4
   rows the baseline wrote (an existing database), read by both (the reports must be the same).
4. ``--prune-only`` (with ``--baseline-src``): the prune of a log at its cap of ``--rows`` rows, 100-row
   records, in process (``prune_child``), before and after alternating.

    .venv/bin/python benchmarks/bench_predlog.py [--runs 3] [--seq 1000] [--clients 4] [--seconds 5] [--rows 100000]
    .venv/bin/python benchmarks/bench_predlog.py --writer-only --baseline-src /tmp/base/src [--runs 3]
        [--rows 100000] [--read-rows 1000000]
    .venv/bin/python benchmarks/bench_predlog.py --prune-only --baseline-src /tmp/base/src --rows 250000
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


def start(model: str, home: Path, log: bool, src: str | None = None, workers: int = 1,
          env: dict | None = None, flag: str = "--model-dir") -> tuple[subprocess.Popen, int]:
    port = free_port()
    base = {**os.environ}
    base.pop("NBPROD_DB_URL", None)
    env = {**base, "NBPROD_HOME": str(home), "NBPROD_PREDICTION_LOG": "on" if log else "off", **(env or {})}
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    proc = subprocess.Popen([str(VENV_BIN / "nbprod"), "serve", flag, model, "--no-auth", "--port", str(port),
                             "--workers", str(workers)],
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


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _thread_cpu_s(native_id: int) -> float:
    """A thread's CPU seconds so far (Linux: /proc/self/task/<tid>/schedstat, nanoseconds on the CPU)."""
    with open(f"/proc/self/task/{native_id}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9


def _credit_requests(rows: int, per_request: int, seed: int = 0, server: bool = False) -> list[dict]:
    """Hook records as the server hands them over: the credit columns (numeric → arrays, text → lists).

    ``server``: exactly as the server's code hands them over for the credit pipeline of bench_serve.py (the
    body decoded and coerced by ``nbprod.serving.codecs`` to the signature's types: integer columns int64,
    the rest float64, text lists, with coerce's distinct values) and the predicted labels (int64 0/1); else
    every numeric column float64 and two class probabilities per row, as before."""
    import numpy as np

    from nbprod.datasets import credit

    X, _ = credit(max(per_request, 2000), seed)
    X = X.head(per_request)
    if server:
        from nbprod.serving import codecs

        signature = [codecs.Column(c, {"i": "long", "f": "double"}.get(X[c].dtype.kind, "string")) for c in X.columns]
        body = json.dumps({"dataframe_records": json.loads(X.to_json(orient="records"))}).encode()
        cols = codecs.coerce(codecs.decode_mlflow(codecs.parse_json(body), signature), signature)
        pred = (np.random.default_rng(seed).uniform(size=per_request) > 0.7).astype(np.int64)
    else:
        cols = {c: (X[c].to_numpy(dtype=float) if X[c].dtype.kind in "if"
                    else X[c].astype(object).where(X[c].notna(), None).tolist()) for c in X.columns}
        pred = np.random.default_rng(seed).uniform(size=(per_request, 2))
    ood = [[] for _ in range(per_request)]
    if per_request > 3:
        ood[3] = ["income: above the training range"]
    prefix = "%020x" % (os.getpid() + 16 ** 19 * seed)  # request ids as a server makes them (writers join them)
    return [{"request_id": "%s%012x" % (prefix, i), "version": "1", "role": "stable", "n": per_request,
             "inputs": cols, "predictions": pred, "ood": ood, "latency_ms": 1.0}
            for i in range(rows // per_request)]


def writer_child(rows: int, per_request: int, cap: int = 0, probe: bool = False, server: bool = False) -> dict:
    """One measurement in this process (``--src`` on sys.path already): the writer thread's CPU per row.

    ``cap``: the log's row cap (``max_rows``), the log filled to it first, so the writer prunes as it
    writes (0: the default cap, never reached). ``probe``: the records are handed over one per
    iteration of a loop that then sleeps 0.2 ms, as an event loop waits in epoll between requests; how
    late each sleep returns is how long that thread waited for the GIL the writer held (the p99 question
    of issue 13): the lag's p50/p99/max and the writer's CPU are reported."""
    from nbprod.monitoring.predlog import PredictionLog, ensure_tables, log_rows

    ensure_tables()  # the schema once, outside the measured writes
    records = _credit_requests(rows, per_request, server=server)
    options = {"max_rows": cap} if cap else {}
    if cap:  # the log at its cap before the measured writes: older requests of the same shape
        old = _credit_requests(cap, per_request, seed=1, server=server)
        for k in range(0, len(old), 2000):
            log_rows("bench", [("prediction", time.time(), {**r, "request_id": f"old{k + j}"})
                               for j, r in enumerate(old[k:k + 2000])])
    log = PredictionLog("bench", max_pending_rows=rows + 1, flush_s=0.25 if probe else 0.05, **options)
    log.start()
    tid = log._thread.native_id
    cpu0, t0 = _thread_cpu_s(tid), time.perf_counter()
    hook0 = time.thread_time()
    lags: list[float] = []
    if probe:
        for record in records:
            log.on_prediction(record)
            t = time.perf_counter()
            time.sleep(0.0002)
            lags.append(time.perf_counter() - t - 0.0002)
        while log._pending:  # the writer still busy: keep probing until it is done
            t = time.perf_counter()
            time.sleep(0.0002)
            lags.append(time.perf_counter() - t - 0.0002)
    else:
        for record in records:
            log.on_prediction(record)
    hook_s = time.thread_time() - hook0
    assert log.flush(600)
    wall = time.perf_counter() - t0
    cpu = _thread_cpu_s(tid) - cpu0
    written = log.written
    log.close()
    assert log.dropped == 0 and written == len(records) * per_request, log.stats()
    out = {"writer_us_per_row": cpu / written * 1e6, "hook_us_per_request": hook_s / len(records) * 1e6,
           "rows_per_s": written / wall, "writer_us_per_request": cpu / len(records) * 1e6}
    if lags:
        lags.sort()
        out.update({f"lag_{q}_ms": lags[min(len(lags) - 1, int(q / 100 * len(lags)))] * 1000 for q in (50, 99)})
        out["lag_max_ms"] = lags[-1] * 1000
        out["lag_over_1ms"] = sum(x > 0.001 for x in lags) / len(lags)
    return out


def prune_child(rows: int, per_request: int) -> dict:
    """The prune at the cap, in this process: the log filled past a cap of ``rows`` (server-shaped credit
    records of ``per_request`` rows), one prune down to it, then a third as many rows again written 20
    records a transaction with a prune every 25 transactions (a writer at its cap). CPU of this thread."""
    from nbprod.monitoring.logrecords import records_of
    from nbprod.monitoring.predlog import PredictionLog, _insert_records, ensure_tables

    ensure_tables()
    fill = _credit_requests(rows * 6 // 5, per_request, server=True)
    items = [("prediction", time.time(), {**r, "request_id": f"f{i:031x}"}) for i, r in enumerate(fill)]
    recs = list(records_of("bench", items))
    for k in range(0, len(recs), 20):
        _insert_records(recs[k:k + 20], None, 256)
    log = PredictionLog("bench", max_rows=rows)
    t = time.thread_time()
    gone = log.prune()
    first = time.thread_time() - t
    more = [("prediction", time.time(), {**r, "request_id": f"m{i:031x}"}) for i, r in enumerate(fill[:len(fill) // 4])]
    recs = list(records_of("bench", more))
    t = time.thread_time()
    for k in range(0, len(recs), 20):
        _insert_records(recs[k:k + 20], None, 256)
        if k // 20 % 25 == 24:
            log.prune()
    steady = time.thread_time() - t
    return {"first_prune_us_per_record": first / max(1, gone // per_request) * 1e6,
            "steady_us_per_request": steady / len(recs) * 1e6}


def prune_only(args) -> None:
    sides = [("before", args.baseline_src), ("after", None)] if args.baseline_src else [("after", None)]
    print(f"the prune at a cap of {args.rows:,} rows, 100-row credit records as the server hands them over, SQLite; "
          f"{args.runs} rounds, sides alternating; load {load()}", flush=True)
    table: dict[str, list[dict]] = {}
    for run in range(args.runs):
        for side, src in sides:
            r = run_child(src, "prune", args.rows, 100)
            table.setdefault(side, []).append(r)
            print(f"run {run + 1}, {side}: first prune {r['first_prune_us_per_record']:.1f} µs per record deleted, "
                  f"insert + prune {r['steady_us_per_request']:.1f} µs per request; load {load()}", flush=True)
    med = statistics.median
    for key in ("first_prune_us_per_record", "steady_us_per_request"):
        line = ", ".join(f"{side} {med(r[key] for r in rs):.1f}" for side, rs in table.items())
        if "before" in table:
            line += f" (before/after {med(r[key] for r in table['before']) / med(r[key] for r in table['after']):.2f}×)"
        print(f"{key} (median): {line}")


def _write_log(rows: int) -> float:
    """``rows`` rows as 100-row requests over the 24 h before the current hour, labels on a fifth; the start."""
    from nbprod.monitoring.feedback import feedback
    from nbprod.monitoring.predlog import log_rows

    per = 100
    records = _credit_requests(rows, per)
    start = (time.time() // 3600 - 24) * 3600
    step = 24 * 3600 / len(records)
    for k in range(0, len(records), 500):
        log_rows("bench", [("prediction", start + (k + j) * step, rec) for j, rec in enumerate(records[k:k + 500])])
    ids = [f"{rec['request_id']}-{i}" for rec in records[::5] for i in range(per)]
    for k in range(0, len(ids), 50_000):
        feedback(ids[k:k + 50_000], [i % 2 for i in range(len(ids[k:k + 50_000]))])
    Path(os.environ["NBPROD_HOME"], "bench-start").write_text(repr(start))
    return start


def _monitor_log(rows: int) -> dict:
    """Time ``nbprod.monitor`` (24 windows of 1 h, drift against the training profile) over the written log."""
    from nbprod.data.profile import profile
    from nbprod.datasets import credit
    from nbprod.monitoring.monitor import monitor

    X, _ = credit(5000, 1)
    reference = profile(X)
    start = float(Path(os.environ["NBPROD_HOME"], "bench-start").read_text())
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    report = monitor("bench", window="1h", since=start, until=start + 24 * 3600, reference=reference)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    assert sum(w["metrics"]["rows"][0] for w in report.windows) == rows, "not every row was read"
    digest = json.dumps({k: v for k, v in report.to_dict().items() if k not in ("since", "until")}, sort_keys=True,
                        default=str)
    return {"monitor_s": wall, "monitor_cpu_s": cpu, "report": hash(digest)}


def read_child(rows: int) -> dict:
    """Write ``rows`` rows with this side's code, then time ``nbprod.monitor`` over them."""
    _write_log(rows)
    return _monitor_log(rows)


def run_child(src: str | None, mode: str, rows: int, per_request: int = 0, home: str | None = None,
              extra: tuple = ()) -> dict:
    """A ``--child`` mode in a fresh process, importing nbprod from ``src`` (None: this checkout), in ``home``
    (None: a new temporary one)."""
    with tempfile.TemporaryDirectory(prefix="bench-predlog-child-") as tmp:
        env = {**os.environ, "NBPROD_HOME": home or tmp, "PYTHONHASHSEED": "0"}
        env.pop("NBPROD_DB_URL", None)
        if src:
            env["PYTHONPATH"] = str(Path(src).resolve())
        else:
            env.pop("PYTHONPATH", None)
        cmd = [sys.executable, __file__, "--child", mode, "--rows", str(rows), "--per", str(per_request), *extra]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])


def writer_only(args) -> None:
    sides = [("before", args.baseline_src), ("after", None)] if args.baseline_src else [("after", None)]
    shape = "as the server hands them over, int64 labels" if args.server_records else "2 class probabilities"
    print(f"writer thread CPU per logged row, SQLite, credit columns (8 inputs, {shape}); "
          f"{args.runs} rounds, sides alternating; load {load()}", flush=True)
    extra = ((("--cap", str(args.cap)) if args.cap else ()) + (("--probe",) if args.probe else ())
             + (("--switch-ms", str(args.switch_ms)) if args.switch_ms else ())
             + (("--server-records",) if args.server_records else ()))
    if args.cap:
        print(f"the log at its cap of {args.cap:,} rows before the measured writes: the writer prunes as it writes")
    if args.probe:
        print("probe: the hooks called from a loop that sleeps 0.2 ms after each request; lag = how late the sleep "
              "returns (waiting for the GIL the writer holds)")
    table: dict[tuple[str, int], list[dict]] = {}
    for run in range(args.runs):
        for per in (1, 100):
            n = args.rows if per > 1 else max(args.rows // 5, 1000)
            for side, src in sides:
                r = run_child(src, "writer", n, per, extra=extra)
                table.setdefault((side, per), []).append(r)
                lag = (f", lag p50 {r['lag_50_ms']:.2f} / p99 {r['lag_99_ms']:.2f} / max {r['lag_max_ms']:.1f} ms, "
                       f"{r['lag_over_1ms']:.1%} > 1 ms" if "lag_99_ms" in r else "")
                print(f"run {run + 1}, {per}-row requests, {n} rows, {side}: {r['writer_us_per_row']:.2f} µs CPU/row "
                      f"({r['writer_us_per_request']:.1f} µs/request, writer thread), hook "
                      f"{r['hook_us_per_request']:.1f} µs/request, {r['rows_per_s']:,.0f} rows/s{lag}; load {load()}",
                      flush=True)
    med = statistics.median
    probe = args.probe
    print("\n| rows/request | writer CPU µs/row before | after | before/after | rows/s before | after |"
          + (" lag p99 ms before | after | lag max ms before | after |" if probe else ""))
    print("| --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- | --- |" if probe else ""))
    for per in (1, 100):
        after = table[("after", per)]
        before = table.get(("before", per)) or []

        def m(rs: list, key: str) -> float:
            return med(r[key] for r in rs) if rs else float("nan")
        b, a = m(before, "writer_us_per_row"), m(after, "writer_us_per_row")
        print(f"| {per} | {b:.2f} | {a:.2f} | **{b / a:.2f}×** | {m(before, 'rows_per_s'):,.0f} | "
              f"{m(after, 'rows_per_s'):,.0f} |" + (f" {m(before, 'lag_99_ms'):.2f} | {m(after, 'lag_99_ms'):.2f} | "
                                                  f"{m(before, 'lag_max_ms'):.1f} | {m(after, 'lag_max_ms'):.1f} |"
                                                  if probe else ""))
    if args.read_rows:
        reads: dict[str, list[dict]] = {}
        for run in range(max(1, min(args.runs, 2))):
            for side, src in sides:
                r = run_child(src, "read", args.read_rows)
                reads.setdefault(side, []).append(r)
                print(f"read run {run + 1}, {side}: nbprod.monitor over {args.read_rows:,} rows "
                      f"{r['monitor_s']:.2f} s ({r['monitor_cpu_s']:.2f} CPU s); load {load()}", flush=True)
        print("monitor over " + f"{args.read_rows:,} rows (median): " + ", ".join(
            f"{side} {med(r['monitor_s'] for r in rs):.2f} s ({med(r['monitor_cpu_s'] for r in rs):.2f} CPU s)"
            for side, rs in reads.items()))
        if args.baseline_src:  # a database the older code wrote, read by both: existing logs must not get slower
            with tempfile.TemporaryDirectory(prefix="bench-predlog-old-") as home:
                n = max(args.read_rows // 4, 1000)
                run_child(args.baseline_src, "write", n, home=home)
                old = [(side, run_child(src, "monitor", n, home=home)) for _ in range(2) for side, src in sides]
            for side, r in old:
                print(f"a log the baseline wrote ({n:,} per-row rows), read by {side}: {r['monitor_s']:.2f} s "
                      f"({r['monitor_cpu_s']:.2f} CPU s); load {load()}", flush=True)
            print(f"same report before and after: {len({r['report'] for _, r in old}) == 1}")
    print(f"load at the end {load()}")


def wrk_on_off(args) -> None:
    """``--wrk``: the log's cost and the p99 question of issue 13 under wrk — the same server, the log OFF
    (``NBPROD_PREDICTION_LOG=off``) and ON, and ON with ``--baseline-src``'s code, in the same rounds."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_serve import tree_cpu, wrk

    with tempfile.TemporaryDirectory(prefix="bench-predlog-wrk-") as tmp:
        root = Path(tmp)
        os.environ["NBPROD_HOME"] = str(root / "home")  # the registry the servers load from (the fast path)
        for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
            os.environ.pop(v, None)
        from _setup import pipeline

        from nbprod import registry
        from nbprod.datasets import credit

        X, y = credit(2000, 0)
        model = f"credit-risk/{registry.register(pipeline(X, y), 'credit-risk', X, y).version}"
        bodies = {}
        for n in (1, 100):
            rows = X.dropna().head(1) if n == 1 else X.sample(n, random_state=n)
            path = root / f"body{n}.json"
            path.write_text(json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}))
            bodies[n] = path
        sides = [("off", None, False), ("on", None, True)]
        if args.baseline_src:
            sides.append(("on, before", args.baseline_src, True))
        if args.switch_ms:  # the servers' processes with sys.setswitchinterval (a sitecustomize on PYTHONPATH)
            site = root / "switch"
            site.mkdir()
            (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({args.switch_ms / 1000!r})\n")
            sides.append((f"on, switch {args.switch_ms:g} ms", str(site), True))
        results: dict[tuple[str, int], list[dict]] = {}
        print(f"wrk -t2 -c16 -d{args.seconds:g}s, `nbprod serve --model credit-risk/1 --workers {args.workers} "
              "--no-auth`, "
              f"NBPROD_HTTP=httptools, log cap {args.cap or 'default'}; load {load()}", flush=True)
        for run in range(args.runs):
            for side, src, log in sides:
                env = {"NBPROD_HTTP": "httptools", "NBPROD_DB_URL": f"sqlite:///{root}/log-{run}-{len(side)}.db",
                       **({"NBPROD_PREDICTION_LOG_MAX_ROWS": str(args.cap)} if args.cap else {})}
                proc, port = start(model, root / "home", log, src=src, workers=args.workers, env=env, flag="--model")
                try:
                    for n in (1, 100):
                        wrk(port, bodies[n], {}, 1, root)  # warm-up
                        cpu0 = tree_cpu(proc.pid)
                        r = wrk(port, bodies[n], {}, args.seconds, root)
                        r["cpu_ms"] = (tree_cpu(proc.pid) - cpu0) / max(r["requests"], 1) * 1000
                        results.setdefault((side, n), []).append(r)
                        print(f"run {run + 1}, log {side}, {n} row(s): {r['rps']:.0f} req/s, p50 {r['p50']:.2f} ms, "
                              f"p99 {r['p99']:.2f} ms, {r['cpu_ms']:.3f} CPU-ms/request, {r['failed']} failed; "
                              f"load {load()}", flush=True)
                finally:
                    stop(proc)
        med = statistics.median
        print("\n| rows/request | log | req/s | p50 ms | p99 ms | CPU-ms/request |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n in (1, 100):
            for side, _, _ in sides:
                rs = results[(side, n)]
                print(f"| {n} | {side} | {med(r['rps'] for r in rs):,.0f} | {med(r['p50'] for r in rs):.2f} | "
                      f"{med(r['p99'] for r in rs):.2f} | {med(r['cpu_ms'] for r in rs):.3f} |")
        print(f"load at the end {load()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--wrk", action="store_true", help="wrk against the server, log off / on / on with the baseline")
    ap.add_argument("--workers", type=int, default=2, help="--wrk: uvicorn workers")
    ap.add_argument("--writer-only", action="store_true", help="only the writer's CPU per row (and --read-rows)")
    ap.add_argument("--prune-only", action="store_true", help="only the prune at a cap of --rows rows (prune_child)")
    ap.add_argument("--baseline-src", default=None, help="src/ of another nbprod, measured as 'before'")
    ap.add_argument("--read-rows", type=int, default=0, help="time nbprod.monitor over this many logged rows")
    ap.add_argument("--child", choices=["writer", "read", "write", "monitor", "prune"], help=argparse.SUPPRESS)
    ap.add_argument("--per", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--cap", type=int, default=0, help="--writer-only: the log filled to this row cap first (prunes)")
    ap.add_argument("--switch-ms", type=float, default=0.0, help="--writer-only: sys.setswitchinterval in the child "
                    "(0: Python's 5 ms); --wrk: one more side, the log on with this switch interval")
    ap.add_argument("--probe", action="store_true", help="--writer-only: the GIL lag a loop thread sees (see "
                                                          "writer_child)")
    ap.add_argument("--server-records", action="store_true", help="--writer-only: the records as the server hands "
                    "them over for bench_serve.py's credit pipeline (coerced inputs, int64 labels: _credit_requests)")
    args = ap.parse_args()
    if args.child:
        if args.switch_ms:
            sys.setswitchinterval(args.switch_ms / 1000)
        if args.child == "writer":
            result = writer_child(args.rows, args.per, args.cap, args.probe, args.server_records)
        elif args.child == "read":
            result = read_child(args.rows)
        elif args.child == "write":
            result = {"start": _write_log(args.rows)}
        elif args.child == "prune":
            result = prune_child(args.rows, args.per)
        else:
            result = _monitor_log(args.rows)
        print(json.dumps(result))
        return
    if args.writer_only:
        writer_only(args)
        return
    if args.prune_only:
        prune_only(args)
        return
    if args.wrk:
        wrk_on_off(args)
        return
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

                    with sqlite3.connect(home / "nbprod.db") as db:  # a record per request, n_rows rows each
                        logged = db.execute("select coalesce(sum(n_rows), 0) from prediction_records").fetchone()[0]
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
