"""Reliability of ``/metrics`` on a multi-worker server (issue 11, point 10): one scrape sums every
worker, so counters never go backwards between scrapes, also after a worker is SIGKILLed."""

from __future__ import annotations

import contextlib
import json
import re
import signal
from pathlib import Path

import pytest
from _servers import ping, request, server_workers, serving, wait_until
from _serving_models import rows


def _workers(proc) -> list:
    import psutil

    found = []
    for pid in server_workers(proc.pid):
        with contextlib.suppress(psutil.Error):  # gone between the listing and here
            found.append(psutil.Process(pid))
    return found


def _metrics_dir(worker) -> Path:
    """The worker's PROMETHEUS_MULTIPROC_DIR: where its metric files are open (a forked worker's
    /proc environ is its supervisor's at exec, before the server set the variable)."""
    for f in worker.open_files():
        if Path(f.path).parent.name.startswith("nbprod-metrics-"):
            return Path(f.path).parent
    raise AssertionError(f"no metrics file open in worker {worker.pid}: {worker.open_files()}")


def _answered(port: int) -> float:
    """nbprod_requests_total summed over its labels, from one scrape (a fresh connection)."""
    text = request(port, "GET", "/metrics")[2].decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^nbprod_requests_total\{[^}]*\} (\S+)$", text, re.M))


def _reach(port: int, sent: int) -> None:
    """Poll until the scrapes count ``sent`` requests, none of them ever showing fewer than the one before."""
    seen = [0.0]

    def reached() -> bool:
        total = _answered(port)
        assert seen[-1] <= total <= sent, (seen[-1], total, sent)
        seen.append(total)
        return total == sent

    wait_until(reached, 30, f"{sent} requests counted")


@pytest.mark.slow
def test_one_scrape_sums_every_worker_and_counters_never_go_backwards(serving_models, env):
    pytest.importorskip("psutil")
    body = rows(serving_models, 1)
    with serving(["--model-dir", serving_models["clf"], "--workers", "2", "--no-auth"], env) as (port, proc):
        wait_until(lambda: len(_workers(proc)) == 2, 30, "two workers")
        workers = _workers(proc)
        sent = 0
        for _ in range(60):  # fresh connections: the kernel spreads them over both workers
            assert request(port, "POST", "/invocations", body)[0] == 200
            sent += 1
        _reach(port, sent)  # each worker writes its counts every 50 ms (nbprod.serving.metrics)
        seen = [_answered(port) for _ in range(20)]
        assert seen == [float(sent)] * 20, seen  # every scrape, whichever worker answers it
        metrics_dir = _metrics_dir(workers[0])  # the server's own, private
        assert metrics_dir.is_dir() and oct(metrics_dir.stat().st_mode & 0o777) == "0o700"
        for p in workers[:1]:  # a worker killed without a chance to clean up: its counts stay
            p.send_signal(signal.SIGKILL)
        wait_until(lambda: len(_workers(proc)) == 2 and workers[0].pid not in {w.pid for w in _workers(proc)}, 30,
                   "the killed worker replaced")
        wait_until(lambda: ping(port), 30, "server answering /ping")
        for _ in range(20):
            assert request(port, "POST", "/invocations", body)[0] == 200
            sent += 1
        _reach(port, sent)
        previous = 0.0
        for _ in range(20):
            total = _answered(port)
            assert previous <= total == sent
            previous = total
        wait_until(lambda: "nbprod_in_flight_requests 0.0" in request(port, "GET", "/metrics")[2].decode(), 30,
                   "no request in flight")  # live workers only: the killed one is not counted
        text = request(port, "GET", "/metrics")[2].decode()
        assert 'nbprod_route_weight{path="fastpath",role="stable",version="1"} 100.0' in text
        assert json.loads(request(port, "GET", "/health")[2])["status"] == "ok"
    assert not metrics_dir.exists()  # the server removes its metrics directory when it stops


def _count(text: str, endpoint: str, status: int) -> float:
    found = re.search(rf'^nbprod_requests_total\{{endpoint="{endpoint}",status="{status}",version="none"\}} (\S+)$',
                      text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_refusals_outside_the_prediction_path_are_counted_but_never_logged(serving_models, env):
    """A wrong token at /v2/.../infer, /v2/models/..., /version and /feedback, and a bad /feedback body:
    each counted in nbprod_requests_total as a refusal at /invocations is, none written to the prediction log."""
    import sqlalchemy as sa

    from nbprod.monitoring.predlog import ensure_tables, prediction_records
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    token = "tok-counted"
    save_spec("credit", DeploymentSpec("credit", [Route(serving_models["clf"], "1", 100, "stable")]))
    with serving(["--deployment", "credit", "--token", token], env) as (port, _proc):
        v2 = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]}]}
        for _ in range(3):
            assert request(port, "POST", "/v2/models/credit/infer", v2, token="wrong")[0] == 401
            assert request(port, "GET", "/v2/models/credit", token="wrong")[0] == 401
            assert request(port, "GET", "/version", token="wrong")[0] == 401
            assert request(port, "POST", "/feedback", {"prediction_ids": [], "labels": []}, token="wrong")[0] == 401
        assert request(port, "POST", "/v2/models/nobody/infer", v2, token=token)[0] == 404
        assert request(port, "POST", "/feedback", {"nothing": 1}, token=token)[0] == 400
        assert request(port, "POST", "/invocations", rows(serving_models, 1), token="wrong")[0] == 401  # logged
        text = request(port, "GET", "/metrics")[2].decode()
        assert _count(text, "v2_infer", 401) == 3 and _count(text, "v2_infer", 404) == 1
        assert _count(text, "v2_model", 401) == 3
        assert _count(text, "version", 401) == 3
        assert _count(text, "feedback", 401) == 3 and _count(text, "feedback", 400) == 1
        assert _count(text, "invocations", 401) == 1

        def refused_in_log() -> int:
            with ensure_tables().connect() as conn:
                t = prediction_records
                return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.n_rows), 0))
                                        .where(t.c.role == "error")).scalar_one())

        # the /invocations refusal came last: once it is written, any earlier refusal would have been too
        wait_until(refused_in_log, 30, "the /invocations refusal in the prediction log")
        assert refused_in_log() == 1
