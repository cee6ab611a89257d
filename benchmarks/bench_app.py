"""The model server's own CPU per ``POST /invocations``, in process: the ASGI app driven directly.

No socket, no uvicorn, no load generator: each request is the app's ``__call__`` with a ready-made
``receive`` and a ``send`` that keeps the two messages. What is left is what nbprod adds to the stack
(auth, decode, checks, OOD flags, predict, encode, metrics, the prediction log's hook, the answer's
messages), counted as CPU time of the event loop's thread (``time.thread_time``: the prediction log's
writer thread and other processes' load are not in it) and of the whole process (``process_time``:
the writer included).

The app is :func:`nbprod.service.build_app` (the server's wiring: prediction log on, SQLite state DB)
serving the credit-style pipeline of ``bench_serve.py`` (registered in a fresh MLflow store), with a
bearer token, OOD flags and Prometheus metrics in multiprocess mode, as a deployed worker has them.
``--baseline-src`` runs the same measurement on another nbprod's ``src/`` (e.g. the session's start,
``git archive <commit> src | tar -x -C /tmp/base``) in a second child process beside this one's: the
two apps are started once and blocks of requests alternate between them, so both sides see the
same machine load; the ratio after/before is printed per block.

    .venv/bin/python benchmarks/bench_app.py [--rows 1,100] [--requests 2000] [--runs 10]
        [--baseline-src /tmp/b0/src]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOKEN = "bench-token"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def child(model: str, rows: int, requests: int, body_path: str) -> None:
    """One side, one body size: build the app, warm it up, then time ``requests`` requests; print JSON.
    ``requests`` 0: serve measurements on demand, one per line read from stdin (the number of requests),
    each answered by a JSON line, until stdin ends — so two sides can alternate in small blocks."""
    import asyncio

    from nbprod.service import build_app
    from nbprod.serving.spec import StaticSource

    body = Path(body_path).read_bytes()
    app = build_app(StaticSource.model(model, name="benchapp"), token=TOKEN)
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {TOKEN}".encode()), (b"content-length", str(len(body)).encode())]
    scope_base = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                  "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000), "scheme": "http",
                  "method": "POST", "root_path": "", "path": "/invocations", "raw_path": b"/invocations",
                  "query_string": b"", "headers": headers}
    request_message = {"type": "http.request", "body": body, "more_body": False}
    sent: list = []

    async def receive():
        return request_message

    async def send(message):
        sent.append(message)

    async def run() -> dict:
        startup: asyncio.Queue = asyncio.Queue()
        done: asyncio.Queue = asyncio.Queue()
        await startup.put({"type": "lifespan.startup"})

        async def lreceive():
            return await startup.get()

        async def lsend(message):
            await done.put(message)

        life = asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                                          lreceive, lsend))
        started = await done.get()
        if started["type"] != "lifespan.startup.complete":
            raise SystemExit(f"the app did not start: {started}")

        async def one() -> None:
            sent.clear()
            await app(dict(scope_base), receive, send)
            if sent[0]["status"] != 200:
                raise SystemExit(f"status {sent[0]['status']}: {sent[1]['body'][:300]!r}")

        async def measure(count: int) -> dict:
            t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
            for _ in range(count):
                await one()
            t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
            return {"loop_us": (t1 - t0) / count * 1e6, "process_us": (p1 - p0) / count * 1e6,
                    "wall_us": (w1 - w0) / count * 1e6, "answer_bytes": len(sent[1]["body"])}

        for _ in range(500):  # warm-up: caches, the log's writer thread, allocator
            await one()
        await asyncio.sleep(0.2)
        if requests:
            result = await measure(requests)
            print(json.dumps(result), flush=True)
        else:
            print(json.dumps({"ready": True}), flush=True)
            for line in sys.stdin:  # blocks the loop between measurements: nothing else is running
                if not line.strip():
                    break
                print(json.dumps(await measure(int(line))), flush=True)
        await startup.put({"type": "lifespan.shutdown"})
        await done.get()
        await life

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,100")
    ap.add_argument("--requests", type=int, default=2000, help="requests per block")
    ap.add_argument("--runs", type=int, default=10, help="blocks per side, alternating")
    ap.add_argument("--baseline-src", default=None)
    ap.add_argument("--child", nargs=4, metavar=("MODEL", "ROWS", "REQUESTS", "BODY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, rows, requests, body = args.child
        child(model, int(rows), int(requests), body)
        return

    work = Path(tempfile.mkdtemp(prefix="nbprod-bench-app-"))
    metrics_dir = work / "metrics"
    metrics_dir.mkdir()
    env = dict(os.environ, NBPROD_HOME=str(work / "home"), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
        env.pop(v, None)
    os.environ.update(NBPROD_HOME=env["NBPROD_HOME"])
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
        os.environ.pop(v, None)
    from _setup import pipeline

    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(2000, 0)
    mv = registry.register(pipeline(X, y), "credit-risk", X, y)
    model = f"credit-risk/{mv.version}"
    sizes = [int(x) for x in args.rows.split(",")]
    bodies = {}
    for n in sizes:
        rows = X.dropna().head(1) if n == 1 else X.sample(n, replace=n > len(X), random_state=n)
        path = work / f"body{n}.json"
        path.write_text(json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}))
        bodies[n] = path
    sides = [("before", str(Path(args.baseline_src).resolve()))] if args.baseline_src else []
    sides.append(("after", None))
    results: dict[tuple[str, int], list[dict]] = {}
    for n in sizes:  # both sides' apps run side by side; blocks of requests alternate between them
        procs = {}
        for name, src in sides:
            side_env = dict(env)
            if src is not None:
                side_env["PYTHONPATH"] = src
            procs[name] = subprocess.Popen([sys.executable, __file__, "--child", model, str(n), "0", str(bodies[n])],
                                           env=side_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            for name, proc in procs.items():
                if not proc.stdout.readline().strip():
                    raise SystemExit(f"the {name} side did not start (see its error above)")
            for run in range(args.runs):
                line = []
                for name, proc in procs.items():
                    proc.stdin.write(f"{args.requests}\n")
                    proc.stdin.flush()
                    r = json.loads(proc.stdout.readline())
                    results.setdefault((name, n), []).append(r)
                    line.append(f"{name} {r['loop_us']:.1f} µs loop-CPU/req ({r['process_us']:.1f} process, "
                                f"{r['wall_us']:.1f} wall)")
                ratio = ""
                if args.baseline_src:
                    after, before = results[("after", n)][-1], results[("before", n)][-1]
                    ratio = f"; after/before {after['loop_us'] / before['loop_us']:.2f}×"
                print(f"block {run + 1}, {n} row(s): " + "; ".join(line) + f"{ratio}; load {load()}", flush=True)
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait(60)
    med = statistics.median
    print(f"\npython {sys.version.split()[0]}; {args.requests} requests per block; median of {args.runs} blocks; "
          f"load at the end {load()}")
    print("| rows/request | side | loop-thread CPU µs/request | process CPU µs/request | answer bytes | "
          "after / before (median of blocks) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        for name, _ in sides:
            rs = results[(name, n)]
            ratio = "—"
            if name == "after" and args.baseline_src:
                pairs = zip(rs, results[("before", n)], strict=True)
                ratio = f"{med(a['loop_us'] / b['loop_us'] for a, b in pairs):.2f}×"
            print(f"| {n} | {name} | {med(r['loop_us'] for r in rs):.1f} | {med(r['process_us'] for r in rs):.1f} | "
                  f"{rs[-1]['answer_bytes']} | {ratio} |")


if __name__ == "__main__":
    main()
