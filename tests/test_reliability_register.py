"""A killed ``register`` (issue 11, point 4): a real SIGKILL inside the registration leaves a version
without an audit row and a temp folder; ``nbprod audit --verify`` reports it, and the next
``register`` (or ``--verify --repair``) rolls it back — alias, version, run and temp folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NBPROD = str(Path(sys.executable).parent / "nbprod")
SCRIPT = """
from sklearn.linear_model import LogisticRegression
import nbprod
from nbprod.datasets import credit
X, y = credit(300)
X = X.select_dtypes("number").fillna(0)
nbprod.register(LogisticRegression(max_iter=300).fit(X, y), "credit-risk", X, y, alias="champion")
"""


def _fit():
    from sklearn.linear_model import LogisticRegression

    from nbprod.datasets import credit

    X, y = credit(300)
    X = X.select_dtypes("number").fillna(0)
    return LogisticRegression(max_iter=300).fit(X, y), X, y


def _kill_at(step: str, env: dict) -> int:
    """Run a registration in a subprocess, SIGKILL it when it reaches ``step``; its pid."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env={**env, "NBPROD_TEST_REGISTER_PAUSE_AT": step},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(180, proc.kill)  # bounded even if the step is never reached
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip() == f"nbprod-register-paused:{step}":
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(30) == -signal.SIGKILL, "the registration did not reach the step"
    finally:
        timer.cancel()
        proc.stdout.close()  # type: ignore[union-attr]
    return proc.pid


def _verify(env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([NBPROD, "audit", "--verify", *extra], env=env, capture_output=True, text=True, timeout=120)


def _versions() -> dict[str, str]:
    from nbprod.registry.store import client

    return {str(v.version): v.run_id for v in client().search_model_versions("name='credit-risk'")}


def _champion() -> str:
    from nbprod.registry.store import client

    return str(client().get_model_version_by_alias("credit-risk", "champion").version)


def _leaked(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"nbprod-register-{pid}-*"))


def test_a_registration_killed_after_moving_the_alias_is_found_and_rolled_back(nbprod_home):
    import nbprod
    from nbprod.registry.store import client

    env = {**os.environ, "NBPROD_HOME": str(nbprod_home)}
    model, X, y = _fit()
    nbprod.register(model, "credit-risk", X, y, alias="champion")  # v1, audited
    pid = _kill_at("alias", env)
    # what the kill left: v2 holds @champion, no audit row, its run RUNNING, a temp folder
    assert _champion() == "2"
    run_id = _versions()["2"]
    assert client().get_run(run_id).info.status == "RUNNING"
    assert [e.model_uri for e in nbprod.audit.history("credit-risk") if e.action == "register"] == \
        ["models:/credit-risk/1"]
    assert nbprod.audit.verify().ok  # the hash chain alone cannot see it …
    assert _leaked(pid)
    found = _verify(env)  # … the registry check of `nbprod audit --verify` does
    assert found.returncode == 1 and "models:/credit-risk/2" in found.stdout, found.stdout + found.stderr
    assert "died before the audit row was written" in found.stdout
    # the next register rolls it back first: @champion back on v1, v2 and its run gone, temp folder too
    nbprod.register(model, "credit-risk", X, y)
    assert _champion() == "1"
    assert "2" not in _versions()
    assert client().get_run(run_id).info.lifecycle_stage == "deleted"
    assert not _leaked(pid)
    rolled = [e for e in nbprod.audit.history("credit-risk") if e.action == "register_rolled_back"]
    assert [e.model_uri for e in rolled] == ["models:/credit-risk/2"]
    assert rolled[0].details["alias_restored_to"] == "1" and rolled[0].details["pid"] == pid
    assert _verify(env).returncode == 0


def test_a_registration_killed_before_its_audit_row_is_repaired_by_audit_verify_repair(nbprod_home):
    from nbprod.registry.store import client

    env = {**os.environ, "NBPROD_HOME": str(nbprod_home)}
    pid = _kill_at("version", env)  # a first registration: the model itself was created by the killed call
    assert _versions().keys() == {"1"}
    assert _verify(env).returncode == 1
    repaired = _verify(env, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: models:/credit-risk/1" in repaired.stdout
    assert [m.name for m in client().search_registered_models()] == []  # the model it created went with it
    assert not _leaked(pid)
