"""The shipped pipeline end to end on real kernels and real servers on 127.0.0.1: all nine steps,
a challenger that loses (stops at evaluate, production untouched), a canary that breaches a gate
(rolled back automatically), a second runner refused, and a SIGKILLed runner: the guard rolls the
canary back and `resume` finishes the run.

Bounded: small data, the canary holds for a number of requests the test itself sends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _registry_helpers import poor_champion
from _servers import request, wait_until
from conftest import kill_recorded_servers, sigkill

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "notebooks" / "pipeline.yaml"
NBPROD = str(Path(sys.executable).parent / "nbprod")


@pytest.fixture
def production(nbprod_home, tmp_path):
    """A poor credit-risk v1 (@champion) served as `credit`; new data and holdout as files; traffic."""
    import nbprod
    from nbprod.datasets import credit

    poor_champion()  # so the retrained challenger wins
    dep = nbprod.deploy("credit-risk@champion", name="credit")
    new, _ = credit(400, 1)
    new.to_parquet(tmp_path / "new.parquet")
    hx, hy = credit(1500, 2)
    hx.assign(default=hy).to_parquet(tmp_path / "holdout.parquet")
    rows = new.head(3)
    body = {"dataframe_split": {"columns": list(rows.columns), "data": json.loads(rows.to_json(orient="values"))}}
    stop = threading.Event()
    port = int(dep.url.rstrip("/").rsplit(":", 1)[1])

    def traffic() -> None:
        while not stop.is_set():
            request(port, "POST", "/invocations", body, dep.token)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    params = {"data": str(tmp_path / "new.parquet"), "holdout": str(tmp_path / "holdout.parquet"),
              "canary_percent": 50, "canary_requests": 10}
    try:
        yield {"params": params, "dep": dep}
    finally:
        stop.set()
        thread.join(timeout=30)
        kill_recorded_servers()


def _stable(name: str = "credit") -> list[tuple[str, str]]:
    from nbprod.deployments.store import read

    return [(r.version, r.role) for r in read(name)[0].routes]


def _champion() -> str:
    import nbprod

    return str(nbprod.get_version("credit-risk@champion").version)


def _children(run_id: str) -> list:
    from nbprod.registry.store import client

    c = client()
    exps = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(exps, f"tags.`mlflow.parentRunId` = '{run_id}'")


def test_the_nine_steps_then_a_losing_challenger_then_a_canary_that_breaches(production):
    import nbprod
    from nbprod import audit

    run = nbprod.pipeline(PIPELINE, production["params"])
    assert run.ok, str(run)
    assert [s["status"] for s in run.steps] == ["done"] * 9
    assert _champion() == "2" and _stable() == [("2", "stable")]
    assert str(nbprod.get_version("credit-risk@retired").version) == "1"
    assert run.outputs("canary")["figures"]["requests"] >= 10
    # one parent MLflow run, a child per step (the notebook's job run is the train step's child)
    children = _children(run.run_id)
    assert len(children) == 9
    assert run.outputs("train")["run_id"] in {c.info.run_id for c in children}
    steps_audited = [e.details.get("step") for e in audit.history() if e.action.startswith("pipeline.")
                     and e.details.get("run_id") == run.run_id]
    assert set(steps_audited) >= {s["name"] for s in run.steps}

    # a challenger that loses: stops at evaluate, production untouched, exit-code-1 result with the commands
    losing = nbprod.pipeline(PIPELINE, {**production["params"], "n_rows": 60, "C": 0.0005})
    assert losing.status == "GATE_FAILED" and losing.step("evaluate")["status"] == "gate_failed", str(losing)
    assert "roc_auc" in losing.reason and f"nbprod pipeline resume {losing.run_id}" in str(losing)
    assert [s["status"] for s in losing.steps[4:]] == ["pending"] * 5
    assert _champion() == "2" and _stable() == [("2", "stable")]

    # a canary that breaches its latency gate: rolled back automatically, champion unchanged
    breach = nbprod.pipeline(PIPELINE, {**production["params"], "max_p95_ms": 0.001})
    assert breach.status == "GATE_FAILED" and breach.step("canary")["status"] == "gate_failed"
    assert "p95_ms" in breach.reason and "rolled back" in breach.reason
    assert _stable() == [("2", "stable")] and _champion() == "2"
    assert breach.step("promote")["status"] == "pending"

    out = subprocess.run([NBPROD, "pipeline", "runs", "--json"], capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["run_id"], r["status"]) for r in lines] == [(breach.run_id, "GATE_FAILED"),
                                                          (losing.run_id, "GATE_FAILED"), (run.run_id, "FINISHED")]
    assert "<svg" in breach._repr_html_() and "#e65100" in breach._repr_html_()


def test_sigkill_mid_canary_rolls_back_a_second_runner_is_refused_and_resume_finishes(production, env):
    params = {**production["params"], "canary_requests": 10**6}
    argv = [NBPROD, "pipeline", "run", str(PIPELINE)] + [a for k, v in params.items() for a in ("-p", k, str(v))]
    runner = subprocess.Popen(argv, env={**env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: ("2", "canary") in _stable() or runner.poll() is not None, timeout=240,
                   what="the canary to take traffic")
        assert runner.poll() is None, runner.communicate()
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "being run right now" in second.stderr
        sigkill(runner.pid)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            sigkill(runner.pid)
    # the guard rolls the canary back: production as it was
    wait_until(lambda: _stable() == [("1", "stable")], timeout=60, what="the guard to roll the canary back")
    out = subprocess.run([NBPROD, "pipeline", "runs", "--json"], env=env, capture_output=True, text=True, timeout=60)
    last = json.loads(out.stdout.splitlines()[0])
    assert last["status"] == "INTERRUPTED"
    resumed = subprocess.run([NBPROD, "pipeline", "resume", last["run_id"], "-p", "canary_requests", "5"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "FINISHED" in resumed.stdout
    assert _stable() == [("2", "stable")] and _champion() == "2"
