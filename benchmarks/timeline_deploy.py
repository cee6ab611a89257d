"""Where a first deploy spends its time: wall-clock and CPU marks in every process it involves.

Registers a credit pipeline, then deploys newly registered versions (``nbprod.deploy`` until it
returns, then the first prediction) and prints one timeline per deploy: the caller's steps (wrapped
in place: registry lookup, the state DB rows, the warm-up, the server's start, the wait), and for the
server's processes (the supervisor, each worker) the moment and CPU seconds at which each heavy
import starts and ends, uvicorn's app factory, ``load_version`` and "serving" — from a
``sitecustomize`` this script puts on the servers' ``PYTHONPATH``. Times are seconds since the call.
Used for issue 13 (BENCHMARKS.md, Serving):

    .venv/bin/python benchmarks/timeline_deploy.py [--workers 2] [--deploys 2] [--src /tmp/base/src]

``--src``: serve with another nbprod ``src/`` (e.g. ``git archive main src``), the caller stays this one.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SITE = Path(__file__).resolve().parent / "_timeline_site"  # its sitecustomize.py marks the server processes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deploys", type=int, default=2)
    ap.add_argument("--src", default=None, help="an nbprod src/ folder the servers run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbprod-timeline-deploy-"))
    os.environ["NBPROD_HOME"] = str(work / "home")
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
        os.environ.pop(v, None)
    from _setup import ping, pipeline

    from nbprod import registry
    from nbprod.datasets import credit
    from nbprod.deployments import api, process, routes, store

    X, y = credit(2000, 0)
    registry.register(pipeline(X, y), "credit-risk", X, y)
    t0 = [0.0]

    def mark(what: str) -> None:
        print(f"  caller   {time.time() - t0[0]:7.3f}  cpu {time.process_time():7.3f}  {what}", flush=True)

    def wrap(mod, fname: str) -> None:
        f = getattr(mod, fname)

        @functools.wraps(f)
        def wrapped(*a, **k):
            mark(f"{fname}>")
            try:
                return f(*a, **k)
            finally:
                mark(f"{fname}<")
        setattr(mod, fname, wrapped)

    for mod, fname in [(routes, "resolve"), (routes, "warm"), (store, "create"), (process, "start_server"),
                       (process, "wait_ready"), (api, "_wait_ready")]:
        wrap(mod, fname)
    body = json.dumps({"dataframe_records": json.loads(X.dropna().head(1).to_json(orient="records"))})
    for i in range(args.deploys):
        mv = registry.register(pipeline(X, y, C=1.0 / (i + 2)), "credit-risk", X, y)
        marks = work / f"marks{i}.txt"
        os.environ["NBPROD_TL"] = str(marks)
        os.environ["PYTHONPATH"] = str(SITE) + (os.pathsep + args.src if args.src else "")
        print(f"--- deploy {i}: {args.workers} worker(s), load {os.getloadavg()[0]:.2f}")
        t0[0] = time.time()
        c0 = time.process_time()
        try:
            d = api.deploy(f"credit-risk/{mv.version}", name=f"tl{i}", server={"workers": args.workers})
        finally:
            os.environ.pop("NBPROD_TL")
            os.environ.pop("PYTHONPATH")
        t1 = time.time()
        port = int(d.url.rsplit(":", 1)[1])
        while not ping(port):
            time.sleep(0.01)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/invocations", body, {**d.headers, "Content-Type": "application/json"})
        status = conn.getresponse().status
        t2 = time.time()
        print(f"deploy returned {t1 - t0[0]:.3f} s (ready_s {d.ready_s:.3f}), first prediction {status} at "
              f"{t2 - t0[0]:.3f} s, caller CPU {time.process_time() - c0:.3f} s")
        api.undeploy(f"tl{i}")
        pids: list[str] = []
        lines = [line.split(None, 4) for line in marks.read_text().splitlines()]
        for pid, _ppid, _t, _cpu, _what in lines:
            if pid not in pids:
                pids.append(pid)
        for pid, ppid, t, cpu, what in lines:
            print(f"  p{pids.index(pid)}({pid}<{ppid}) {float(t) - t0[0]:7.3f}  cpu {float(cpu):6.3f}  {what}")


if __name__ == "__main__":
    main()
