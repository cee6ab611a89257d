"""Model server: nbprod next to the stack's own floor (bare Starlette on uvicorn) and `mlflow models serve`.

Same run, same client, same machine, interleaved: ``wrk -t2 -c16 -d8s`` (a C client, so the client is not
the bottleneck; ``apt-get install wrk``) POSTing the same ``dataframe_records`` body to each server.

- **floor**: a bare Starlette app on uvicorn answering a fixed JSON body (it reads the request body and
  nothing else: no model), with the same worker count and the same uvicorn HTTP implementation as nbprod;
- **nbprod**: ``nbprod.deploy()`` of a freshly registered credit-style pipeline (ColumnTransformer(
  SimpleImputer+StandardScaler, OneHotEncoder) → LogisticRegression on ``nbprod.datasets.credit``) with
  every feature on: bearer-token auth, input checks, OOD flags from the training profile, the prediction
  log (SQLite state DB), Prometheus metrics (multiprocess: 2 workers);
- **mlflow**: ``mlflow models serve --env-manager local`` on the same pipeline (1-row bodies only; ``--skip-mlflow``).

Figures: requests/s per body size (1, 100, 1,000 rows) and nbprod's ratio to the floor of the same
round (the goal: ≥ 0.5× at 1 row, ≥ 0.2× at 100 rows), wrk's p50/p99, the CPU seconds the server's
processes spent per request (until they are idle again after the load: the prediction log's writer may
still be draining what the requests left, and the next server is only measured then; with
``--baseline-src`` the two nbprods swap places every other round), the single-row sequential p50
(``http.client``), the prediction log's share of nbprod's CPU per request (its writer's
``nbprod_prediction_log_cpu_seconds_total{phase}`` read from ``/metrics`` before and after each run: where
a request's cost beyond the model goes), and the first deploy of a newly registered version
(``nbprod.deploy()`` call until the service answers; a new version each run, so its start-up cache is cold,
as for a version just registered;
with ``--baseline-src`` alternating with a deploy served by the baseline's code). ``uptime``'s load is
printed with every round: on a shared machine the ratios of one round matter more than absolute figures.

    .venv/bin/python benchmarks/bench_serve.py [--runs 3] [--seconds 8] [--workers 2] [--rows 1,100,1000]
        [--http h11|httptools] [--skip-mlflow]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import ping, pipeline  # noqa: E402

VENV_BIN = Path(sys.executable).parent

FLOOR_APP = '''
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"predictions":[0],"model_version":"1","prediction_ids":["00000000000000000000000000000000-0"],"ood":[[]]}'


async def invocations(request):
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def ping(request):
    return Response("\\n", media_type="text/plain")


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
'''


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def wait_ready(port: int, proc: subprocess.Popen | None = None, limit: float = 180) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if ping(port):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise RuntimeError("server did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu(pid: int) -> float:
    """utime + stime (s) of ``pid`` and its descendants (Linux /proc; 0 elsewhere)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def settle(pid: int | None, idle_share: float = 0.05, most_s: float = 20.0) -> None:
    """Wait until the process tree of ``pid`` uses less than ``idle_share`` of a core (over 0.25 s), at most
    ``most_s``: a server's background work after the load (its prediction log's writer draining what the
    requests left) belongs to those requests, and must not run beside the next server's measurement."""
    if not pid:
        return
    deadline = time.monotonic() + most_s
    last = tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree_cpu(pid)
        if now - last < idle_share * 0.25:
            return
        last = now


def _swapped(servers: list) -> list[int]:
    """The indexes of ``servers`` with "before" and "nbprod" in each other's place."""
    names = [s[0] for s in servers]
    order = list(range(len(servers)))
    if "before" in names:
        i, j = names.index("before"), names.index("nbprod")
        order[i], order[j] = j, i
    return order


def wrk(port: int, body: Path, headers: dict, seconds: float, work: Path) -> dict:
    """One ``wrk -t2 -c16 -d<seconds>s --latency`` run POSTing ``body`` to /invocations."""
    script = work / "post.lua"
    lines = ['wrk.method = "POST"', f'local f = io.open("{body}", "rb")', "wrk.body = f:read(\"*a\")", "f:close()",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds:g}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/invocations"], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": ms("50"), "p99": ms("99"), "requests": total,
            "failed": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)}


def log_cpu(port: int, headers: dict) -> dict[str, float]:
    """The prediction log writer's CPU seconds so far, per phase, from the server's ``/metrics``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers=headers)
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^nbprod_prediction_log_cpu_seconds_total\{phase="(\w+)"\} ([\d.e+-]+)$', text, re.M)}


def sequential_p50(port: int, body: bytes, headers: dict, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        if i >= 50:
            lat.append(time.perf_counter() - t0)
    conn.close()
    return statistics.median(lat) * 1000


def stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds (each: floor, nbprod[, mlflow] per body size)")
    ap.add_argument("--seconds", type=float, default=8.0, help="wrk duration per measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rows", default="1,100,1000", help="rows per request, comma-separated")
    ap.add_argument("--seq", type=int, default=500, help="sequential single-row requests for the p50")
    ap.add_argument("--http", default="h11", choices=["h11", "httptools"],
                    help="uvicorn HTTP implementation of the floor (nbprod: NBPROD_HTTP)")
    ap.add_argument("--deploys", type=int, default=None, help="first deploys timed (default: --runs)")
    ap.add_argument("--baseline-src", default=None,
                    help="a src/ folder of another nbprod (e.g. `git archive <commit> src | tar -x -C /tmp/base`): "
                         "served as 'before' beside the current one, same run")
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    sizes = [int(x) for x in args.rows.split(",")]

    work = Path(tempfile.mkdtemp(prefix="nbprod-bench-serve-"))
    os.environ["NBPROD_HOME"] = str(work / "home")
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
        os.environ.pop(v, None)
    os.environ["NBPROD_HTTP"] = args.http
    from nbprod import registry
    from nbprod.datasets import credit
    from nbprod.deployments import api
    from nbprod.registry.loading import deserialisation_switches
    from nbprod.registry.versions import local_model_dir

    os.environ.update(dict.fromkeys(deserialisation_switches(), "true"))  # our own fresh model (mlflow serve)

    X, y = credit(2000, 0)
    bodies = {}
    for n in sizes:
        rows = X.dropna().head(1) if n == 1 else X.sample(n, replace=n > len(X), random_state=n)
        path = work / f"body{n}.json"
        path.write_text(json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}))
        bodies[n] = path

    # first deploy of a newly registered version: a new version per run, so its start-up cache is cold
    # with --baseline-src, each round deploys a new version on the baseline's server code, then another on
    # this one (PYTHONPATH reaches the server processes; the caller's warm-up is this code in both)
    deploy_s: list[float] = []
    deploy_before: list[float] = []
    mv = registry.register(pipeline(X, y), "credit-risk", X, y)
    sides = [True, False] if args.baseline_src else [False]
    for i in range(args.runs if args.deploys is None else args.deploys):
        for before_side in sides:
            c = 1.0 / (len(deploy_s) + len(deploy_before) + 1)  # a different model each time
            mv = registry.register(pipeline(X, y, C=c), "credit-risk", X, y)
            path_before = os.environ.get("PYTHONPATH")
            if before_side:
                os.environ["PYTHONPATH"] = str(Path(args.baseline_src).resolve())
            t0 = time.perf_counter()
            try:
                d = api.deploy(f"credit-risk/{mv.version}", name=f"first{i}", server={"workers": args.workers})
            finally:
                if path_before is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = path_before
            port = int(d.url.rsplit(":", 1)[1])
            wait_ready(port)
            (deploy_before if before_side else deploy_s).append(time.perf_counter() - t0)
            api.undeploy(f"first{i}")
    if deploy_s:
        print(f"first deploy of a new version until it answers: {[round(x, 2) for x in deploy_s]} s "
              f"(median {statistics.median(deploy_s):.2f} s); before: {[round(x, 2) for x in deploy_before]} s; "
              f"load {load()}", flush=True)

    dep = api.deploy(f"credit-risk/{mv.version}", name="bench", server={"workers": args.workers})
    nb_port = int(dep.url.rsplit(":", 1)[1])
    nb_headers = dict(dep.headers)
    nb_pid = None
    from nbprod.deployments import store

    found = store.read("bench")
    if found is not None:
        nb_pid = found[1].get("pid")

    servers_extra = []
    if args.baseline_src:
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(Path(args.baseline_src).resolve())  # the server processes import it
        try:
            base = api.deploy(f"credit-risk/{mv.version}", name="before", server={"workers": args.workers})
        finally:
            if before is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = before
        found = store.read("before")
        servers_extra.append(("before", int(base.url.rsplit(":", 1)[1]), dict(base.headers),
                              found[1].get("pid") if found else None))

    (work / "floor_app.py").write_text(FLOOR_APP)
    fl_port = free_port()
    floor = subprocess.Popen([str(VENV_BIN / "uvicorn"), "floor_app:app", "--port", str(fl_port), "--workers",
                              str(args.workers), "--http", args.http, "--log-level", "warning", "--no-access-log"],
                             cwd=work, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mlflow = None
    ml_port = free_port()
    if not args.skip_mlflow:
        env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        mlflow = subprocess.Popen([str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(local_model_dir(mv)),
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ml_port), "-w",
                                   str(args.workers)], start_new_session=True, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        wait_ready(fl_port, floor)
        if mlflow is not None:
            wait_ready(ml_port, mlflow)
        body1 = bodies[sizes[0]].read_bytes()
        seq = {"floor": sequential_p50(fl_port, body1, {}, args.seq),
               "nbprod": sequential_p50(nb_port, body1, nb_headers, args.seq)}
        if mlflow is not None:
            seq["mlflow"] = sequential_p50(ml_port, body1, {}, min(args.seq, 200))
        servers = [("floor", fl_port, {}, floor.pid), *servers_extra, ("nbprod", nb_port, nb_headers, nb_pid)]
        if mlflow is not None:
            servers.append(("mlflow", ml_port, {}, mlflow.pid))
        for run in range(args.runs):
            # before and nbprod swap places every other round: the one measured second would otherwise always
            # run beside the first one's late work (a prediction log's backlog; settle() waits it out)
            order = servers if run % 2 == 0 else [servers[i] for i in _swapped(servers)]
            for n in sizes:
                line = []
                for name, port, headers, pid in order:
                    if name == "mlflow" and n != 1:
                        continue
                    cpu0 = tree_cpu(pid) if pid else 0.0
                    spent0 = log_cpu(port, headers) if name in ("nbprod", "before") else {}
                    r = wrk(port, bodies[n], headers, args.seconds, work)
                    settle(pid)  # the work the requests left behind (the log's writer) counts as theirs
                    r["cpu_ms"] = (tree_cpu(pid) - cpu0) / max(r["requests"], 1) * 1000 if pid else float("nan")
                    if spent0:  # the log writer's CPU per request, µs per phase
                        r["log_us"] = {k: (v - spent0.get(k, 0.0)) / max(r["requests"], 1) * 1e6
                                       for k, v in log_cpu(port, headers).items()}
                    r["load"] = load()
                    results.setdefault((name, n), []).append(r)
                    line.append(f"{name} {r['rps']:.0f} req/s (p50 {r['p50']:.2f} ms, {r['cpu_ms']:.3f} CPU-ms/req, "
                                f"{r['failed']} failed)")
                floor_rps = results[("floor", n)][-1]["rps"]
                ratios = "; ".join(f"{name}/floor {results[(name, n)][-1]['rps'] / floor_rps:.2f}×"
                                   for name, *_ in servers if name in ("nbprod", "before"))
                print(f"run {run + 1}, {n} row(s): " + "; ".join(line) + f"; {ratios}; load {load()}", flush=True)
    finally:
        stop(floor)
        if mlflow is not None:
            stop(mlflow)
        api.undeploy("bench")
        if servers_extra:
            api.undeploy("before")
        shutil.rmtree(work, ignore_errors=True)

    import mlflow as mlflow_module
    import sklearn
    import starlette
    import uvicorn

    med = statistics.median
    print(f"\npython {sys.version.split()[0]}, uvicorn {uvicorn.__version__} (--http {args.http}), starlette "
          f"{starlette.__version__}, scikit-learn {sklearn.__version__}, mlflow {mlflow_module.__version__}; "
          f"{os.cpu_count()} cores; {args.workers} workers each; wrk -t2 -c16 -d{args.seconds:g}s; median of "
          f"{args.runs} rounds; load at the end {load()}")
    print("| rows/request | server | floor req/s | server req/s | server/floor (per round) | server p50 / p99 | "
          "CPU-ms/request floor / server | mlflow req/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows_of = [("nbprod", "nbprod")] + ([("before", "nbprod before")] if servers_extra else [])
    for (key, label), n in ((x, n) for n in sizes for x in rows_of):
        f, nb = results[("floor", n)], results[(key, n)]
        ratios = [b["rps"] / a["rps"] for a, b in zip(f, nb, strict=True)]
        ml = results.get(("mlflow", n)) if key == "nbprod" else None
        ml_rps = f"{med(r['rps'] for r in ml):,.0f}" if ml else "—"
        print(f"| {n} | {label} | {med(r['rps'] for r in f):,.0f} | {med(r['rps'] for r in nb):,.0f} | "
              f"**{med(ratios):.2f}×** ({', '.join(f'{x:.2f}' for x in ratios)}) | "
              f"{med(r['p50'] for r in nb):.2f} / {med(r['p99'] for r in nb):.2f} ms | "
              f"{med(r['cpu_ms'] for r in f):.3f} / {med(r['cpu_ms'] for r in nb):.3f} | "
              f"{ml_rps} |")
    for n in sizes:
        spent = [r["log_us"] for r in results[("nbprod", n)] if r.get("log_us")]
        if spent:
            phases = {k: med(x[k] for x in spent) for k in spent[0]}
            print(f"nbprod, {n} row(s): the prediction log's writer {sum(phases.values()):.0f} µs CPU a request ("
                  + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()) + ") of "
                  f"{med(r['cpu_ms'] for r in results[('nbprod', n)]) * 1000:.0f} µs in all")
    print("single-row sequential p50: " + ", ".join(f"{k} {v:.2f} ms" for k, v in seq.items()))
    if deploy_s:
        print(f"first deploy of a newly registered version until it answers: median {med(deploy_s):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in deploy_s)})")
    if deploy_before:
        print(f"first deploy, before (--baseline-src, alternating with the above): median {med(deploy_before):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in deploy_before)})")
    failed = sum(r["failed"] for rs in results.values() for r in rs)
    print(f"failed requests: {failed}")


if __name__ == "__main__":
    main()
