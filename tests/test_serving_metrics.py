"""The request path's metrics are buffered in the process and flushed into prometheus-client's values
(issue 13): the exposition is what direct writes give, a scrape of one process is exact, a multi-worker
server's figures are exact once flushed (polled, never slept for), a clean stop loses nothing, and a
fork neither duplicates nor loses what was pending."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from _servers import request, server_workers, serving, wait_until
from _serving_models import rows


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by name and labels (the ``_created`` timestamps left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if not s.name.endswith("_created")}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if key[0].endswith("_sum"):  # one addition of many values, rounded once: equal up to rounding
            if not (np.isnan(x) and np.isnan(y)) and x != pytest.approx(y, rel=1e-12, abs=1e-15):
                return False
        elif x != y:
            return False
    return True


def test_buffered_updates_give_the_exposition_of_direct_writes_and_wait_for_the_flush():
    from nbprod.serving import _metricbuffer
    from nbprod.serving.metrics import ServingMetrics, observe_many

    latencies = [0.0, 0.0005, 0.001, 0.0031, 0.2, 7.5, 11.0, -1.0]
    values = np.concatenate([np.linspace(-5, 2000, 37), [0.05, 0.1, 1.0, 1000.0, np.inf]])
    buffered, direct = ServingMetrics(), ServingMetrics()
    with _metricbuffer._state.lock:  # no flush while held: the writes below stay in memory
        for v in latencies:
            buffered.child(buffered.requests, "1", "200", "invocations").inc()
            buffered.child(buffered.latency, "1", "200").observe(v)
            direct.requests.labels("1", "200", "invocations").inc()
            direct.latency.labels("1", "200").observe(v)
        buffered.child(buffered.rows, "1", "stable").inc(3.5)
        direct.rows.labels("1", "stable").inc(3.5)
        for chunk in (values[:3], values[3:], values[:1]):  # a few values one by one, more bucketed at once
            observe_many(buffered.child(buffered.predictions, "1"), chunk)
            for v in chunk.tolist():
                direct.predictions.labels("1").observe(v)
        buffered.in_flight.inc()
        buffered.in_flight.inc()
        buffered.in_flight.dec()
        direct.in_flight.target.inc()
        assert buffered.requests.labels("1", "200", "invocations")._value.get() == 0  # not written yet
        assert buffered.in_flight.target._value.get() == 0
    got, want = _samples(buffered.render().decode()), _samples(direct.render().decode())
    assert _same(got, want), sorted(set(got.items()) ^ set(want.items()), key=str)
    assert got[("nbprod_requests_total", frozenset({"version": "1", "status": "200",
                                                    "endpoint": "invocations"}.items()))] == len(latencies)
    assert got[("nbprod_in_flight_requests", frozenset())] == 1.0
    assert got[("nbprod_prediction_value_count", frozenset({"version": "1"}.items()))] == len(values) + 1


def test_a_counter_refuses_a_negative_amount_at_the_call():
    from nbprod.serving.metrics import ServingMetrics

    m = ServingMetrics()
    with pytest.raises(ValueError, match="non-negative"):
        m.child(m.requests, "1", "200", "invocations").inc(-1)


_SCRIPT = r'''
import os, sys, time
import numpy as np
from nbprod.serving import metrics
mode = sys.argv[1]
m = metrics.ServingMetrics()
for _ in range(5):
    m.child(m.requests, "1", "200", "invocations").inc()
m.child(m.latency, "1", "200").observe(0.002)
metrics.observe_many(m.child(m.predictions, "1"), np.arange(40, dtype=np.float64))
m.in_flight.inc()
for _ in range(20 if mode == "forks" else 1 if mode == "fork" else 0):
    # what was pending at the fork is the parent's: the child writes only its own (and never finds
    # a lock held by a flush of the parent's thread, which flushes every millisecond in "forks")
    for _ in range(500 if mode == "forks" else 0):
        m.child(m.latency, "1", "200").observe(0.002)
    pid = os.fork()
    if pid == 0:
        m.child(m.requests, "1", "200", "invocations").inc()
        m.flush()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
if mode == "thread":  # no flush called: the thread writes within its interval; then no exit handler runs
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    def written():
        r = CollectorRegistry()
        MultiProcessCollector(r)
        return r.get_sample_value("nbprod_requests_total",
                                  {"version": "1", "status": "200", "endpoint": "invocations"}) == 5.0
    deadline = time.monotonic() + 30
    while not written():
        assert time.monotonic() < deadline, "the thread never flushed"
        time.sleep(0.01)
    sys.stdout.flush()
    os._exit(0)
m.in_flight.dec()
'''


@pytest.mark.parametrize("mode", ["exit", "fork", "forks", "thread"])
def test_a_worker_process_writes_everything_it_counted(tmp_path, mode):
    """In multiprocess mode: a clean exit flushes what is pending (the thread would only have written it
    an hour later); a fork's child neither re-writes the parent's pending updates nor loses its own, also
    while the parent's thread flushes all the time; the thread flushes without being asked."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from nbprod.serving._metricbuffer import INTERVAL_ENV

    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    if mode in ("exit", "fork"):
        env[INTERVAL_ENV] = "3600"  # the thread never writes: only the exit (or an explicit flush)
    elif mode == "forks":
        env[INTERVAL_ENV] = "0.001"
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = CollectorRegistry()
    MultiProcessCollector(r, path=str(tmp_path))
    requests = r.get_sample_value("nbprod_requests_total", {"version": "1", "status": "200", "endpoint": "invocations"})
    assert requests == {"fork": 6.0, "forks": 25.0}.get(mode, 5.0)
    assert r.get_sample_value("nbprod_request_latency_seconds_count",
                              {"version": "1", "status": "200"}) == (10001.0 if mode == "forks" else 1.0)
    assert r.get_sample_value("nbprod_prediction_value_count", {"version": "1"}) == 40.0
    assert r.get_sample_value("nbprod_prediction_value_sum", {"version": "1"}) == float(sum(range(40)))
    assert r.get_sample_value("nbprod_prediction_value_bucket", {"version": "1", "le": "0.0"}) == 1.0


# --- a real server ----------------------------------------------------------------------------------------

def _figures(port: int) -> dict[str, float]:
    """The figures a burst of predictions moves, from one scrape (a fresh connection: any worker)."""
    s = _samples(request(port, "GET", "/metrics")[2].decode())

    def get(name: str, **labels: str) -> float:
        return s.get((name, frozenset(labels.items())), 0.0)

    return {"requests": get("nbprod_requests_total", version="1", status="200", endpoint="invocations"),
            "latency": get("nbprod_request_latency_seconds_count", version="1", status="200"),
            "latency_inf": get("nbprod_request_latency_seconds_bucket", version="1", status="200", le="+Inf"),
            "rows": get("nbprod_predicted_rows_total", version="1", role="stable"),
            "values": get("nbprod_prediction_value_count", version="1"),
            "batch_rows": get("nbprod_batch_rows_sum", version="1"),
            "in_flight": get("nbprod_in_flight_requests")}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_burst_of_requests_is_counted_exactly_and_scrapes_never_go_backwards(serving_models, env, workers):
    """4 clients x 25 requests of 3 rows on fresh connections, scraped all along: every figure only grows;
    afterwards one worker's scrape is exact at once, two workers' once the other has flushed (polled)."""
    from nbprod.serving._metricbuffer import INTERVAL_ENV

    body, n, clients = rows(serving_models, 3), 25, 4
    want = {"requests": n * clients, "latency": n * clients, "latency_inf": n * clients, "rows": 3 * n * clients,
            "values": 3 * n * clients, "batch_rows": 3 * n * clients, "in_flight": 0.0}
    args = ["--model-dir", serving_models["clf"], "--workers", str(workers), "--no-auth"]
    if workers == 1:  # no thread writing meanwhile: what the scrape shows, its own flush wrote
        env = {**env, INTERVAL_ENV: "3600"}
    with serving(args, env) as (port, proc):
        if workers > 1:
            wait_until(lambda: len(server_workers(proc.pid)) == workers, 30, "the workers")
        failed: list = []

        def client() -> None:
            for _ in range(n):
                status = request(port, "POST", "/invocations", body)[0]
                if status != 200:
                    failed.append(status)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        previous = _figures(port)
        while any(t.is_alive() for t in threads):  # scrapes during the burst, from either worker
            now = _figures(port)
            assert all(now[k] >= previous[k] for k in now if k != "in_flight"), (previous, now)
            previous = now
        for t in threads:
            t.join(60)
        assert not failed
        if workers == 1:
            assert _figures(port) == want  # the scrape flushes the answering (only) process first
        else:
            wait_until(lambda: _figures(port) == want, 30, f"the exact figures {want}")
        for _ in range(10):  # and stay so, whichever worker answers
            assert _figures(port) == want


@pytest.mark.slow
def test_workers_stopped_cleanly_keep_their_counts(serving_models, env, tmp_path):
    """SIGTERM to both workers of a 2-worker server whose flush thread would wait an hour: each writes
    what it counted when its app stops and marks itself dead, so their files alone hold the exact counts
    and no live gauge."""
    import shutil

    import psutil
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from nbprod.serving._metricbuffer import INTERVAL_ENV

    body = rows(serving_models, 1)
    args = ["--model-dir", serving_models["clf"], "--workers", "2", "--no-auth"]
    with serving(args, {**env, INTERVAL_ENV: "3600"}) as (port, proc):
        wait_until(lambda: len(server_workers(proc.pid)) == 2, 30, "two workers")
        workers = [psutil.Process(pid) for pid in server_workers(proc.pid)]
        directory = next(os.path.dirname(f.path) for w in workers for f in w.open_files()
                         if os.path.basename(os.path.dirname(f.path)).startswith("nbprod-metrics-"))
        for _ in range(40):
            assert request(port, "POST", "/invocations", body)[0] == 200
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        for name in os.listdir(directory):  # the stopped workers' files (the supervisor starts new ones)
            if re.search(rf"_({'|'.join(str(w.pid) for w in workers)})\.db$", name):
                shutil.copy(os.path.join(directory, name), tmp_path / name)
    r = CollectorRegistry()
    MultiProcessCollector(r, path=str(tmp_path))
    labels = {"version": "1", "status": "200", "endpoint": "invocations"}
    assert r.get_sample_value("nbprod_requests_total", labels) == 40.0
    assert r.get_sample_value("nbprod_predicted_rows_total", {"version": "1", "role": "stable"}) == 40.0
    assert [f.name for f in tmp_path.glob("counter_*.db")]
    assert not list(tmp_path.glob("gauge_live*.db"))  # marked dead at exit: no longer counted in flight
