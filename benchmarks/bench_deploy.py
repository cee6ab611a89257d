"""Deployments: readiness, and how fast a traffic change reaches every worker, vs restarting MLflow.

nbprod: `deploy()` starts a detached `nbprod serve --deployment` (2 workers) and waits for
/v2/health/ready; then R cycles of canary 10 % → promote → rollback under a bounded load
(3 keep-alive client threads on 127.0.0.1). Figures: `Deployment.ready_s` (start until ready, warm
start-up cache) and `Deployment.last_change_s` (call until every worker acknowledged the new
generation), and the number of failed requests under load.

Peer: MLflow has no traffic switching; moving `mlflow models serve --env-manager local` from v1 to
v2 means stopping the server and starting one on v2 on the same port. Figures: stop → the new
server answers /ping, and the failed requests of the same load meanwhile.

    .venv/bin/python benchmarks/bench_deploy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import ping, pipeline  # noqa: E402

VENV_BIN = Path(sys.executable).parent


class Load:
    """Bounded load: `threads` keep-alive clients until stopped (max 60 s / 20,000 requests each)."""

    def __init__(self, port: int, body: bytes, headers: dict, threads: int = 3) -> None:
        self.port, self.body, self.headers = port, body, headers
        self.ok = self.failed = 0
        self.versions: set = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        deadline = time.monotonic() + 60
        for _ in range(20_000):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            try:
                conn.request("POST", "/invocations", body=self.body, headers=self.headers)
                r = conn.getresponse()
                r.read()
                good = r.status == 200
                v = r.getheader("X-Model-Version")
            except (OSError, http.client.HTTPException):
                good, v = False, None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                time.sleep(0.01)
            with self.lock:
                self.ok += good
                self.failed += not good
                if v:
                    self.versions.add(v)
            time.sleep(0.002)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-deploy-")
    os.environ["NBPROD_HOME"] = home
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL"):
        os.environ.pop(v, None)
    from nbprod import registry
    from nbprod.datasets import credit
    from nbprod.deployments import api, process
    from nbprod.registry.versions import local_model_dir

    X, y = credit(2000, 0)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    row = X.dropna().head(1)
    body = json.dumps({"dataframe_split": {"columns": list(row.columns),
                                           "data": json.loads(row.to_json(orient="values"))}}).encode()

    # nbprod: cold start once (fills the start-up cache), then warm starts
    ready, calls = [], []
    cold = api.deploy("credit-risk@champion", name="cold", server={"workers": 2, "auth": False})
    api.undeploy("cold")
    for i in range(args.runs):
        t0 = time.perf_counter()
        d = api.deploy("credit-risk@champion", name=f"warm{i}", server={"workers": 2, "auth": False})
        calls.append(time.perf_counter() - t0)
        ready.append(d.ready_s)
        api.undeploy(f"warm{i}")
    dep = api.deploy("credit-risk@champion", name="credit", server={"workers": 2})
    port = int(dep.url.rsplit(":", 1)[1])
    headers = {"Content-Type": "application/json", **dep.headers}
    canary, promote, rollback = [], [], []
    try:
        with Load(port, body, headers) as load:
            for _ in range(args.runs):
                canary.append(api.deploy("credit-risk@challenger", name="credit", canary=10).last_change_s)
                promote.append(api.promote("credit").last_change_s)
                rollback.append(api.rollback("credit").last_change_s)
                time.sleep(0.2)
        nb_ok, nb_failed = load.ok, load.failed
        t0 = time.perf_counter()
        api.undeploy("credit")
        undeploy_s = time.perf_counter() - t0
    finally:
        for n in ("cold", "credit", *(f"warm{i}" for i in range(args.runs))):
            try:
                api.undeploy(n)
            except Exception:  # noqa: BLE001
                pass

    # peer: restart `mlflow models serve` on the other version, same port, same load
    v1 = local_model_dir(registry.get_version("credit-risk/1"))
    v2 = local_model_dir(registry.get_version("credit-risk/2"))
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    mport = process.free_port()

    def start(model: Path) -> subprocess.Popen:
        return subprocess.Popen([str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p", str(mport)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, env=env)

    def wait(limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        while not ping(mport, timeout=1):
            if time.monotonic() > deadline:
                raise SystemExit("mlflow models serve did not start")
            time.sleep(0.05)

    switches = []
    proc = start(v1)
    wait()
    try:
        with Load(mport, body, {"Content-Type": "application/json"}) as mload:
            for i in range(args.runs * 2):
                t0 = time.perf_counter()
                os.killpg(proc.pid, signal.SIGTERM)  # the CLI and its uvicorn child
                proc.wait(30)
                gone = time.monotonic() + 30
                while not process.port_free(mport) and time.monotonic() < gone:
                    time.sleep(0.02)  # the old server must be gone before the new one can bind
                proc = start(v2 if i % 2 == 0 else v1)
                wait()
                switches.append(time.perf_counter() - t0)
        ml_ok, ml_failed = mload.ok, mload.failed
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    med = statistics.median
    change = med([x for x in canary + promote + rollback if x is not None])
    print(f"nbprod cold first start (2 workers): ready in {cold.ready_s:.2f} s")
    print(f"nbprod warm start (2 workers): ready median {med(ready):.2f} s {[round(x, 2) for x in ready]}, "
          f"deploy() call {med(calls):.2f} s")
    print(f"nbprod canary  median {med(canary):.3f} s {[round(x, 3) for x in canary]}")
    print(f"nbprod promote median {med(promote):.3f} s {[round(x, 3) for x in promote]}")
    print(f"nbprod rollback median {med(rollback):.3f} s {[round(x, 3) for x in rollback]}")
    print(f"nbprod under load: {nb_ok} ok, {nb_failed} failed; undeploy (drain + stop) {undeploy_s:.2f} s")
    print(f"mlflow restart-to-switch median {med(switches):.2f} s {[round(x, 2) for x in switches]}")
    print(f"mlflow under load: {ml_ok} ok, {ml_failed} failed (clients retry every 10 ms while it is down)")
    print(f"ratio: a traffic change is {med(switches) / change:.0f}x faster than an MLflow restart")


if __name__ == "__main__":
    main()
