"""Deployments under races and crashes: concurrent callers in separate real processes, SIGKILL of a
server's master, undeploy racing promote on PostgreSQL. Real detached uvicorn servers on 127.0.0.1.

Every test runs on SQLite and on PostgreSQL (a fresh schema; skipped locally without a server,
failing in CI); the undeploy/promote race on PostgreSQL only, where writers really run at once.
The finalizer kills every server recorded in the state DB and every process still serving one of
this test's deployment names, so none outlives the test; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _registry_helpers import pipeline
from conftest import kill_recorded_servers, sigkill

from nbprod.errors import DeploymentError

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def _servers_of(name: str) -> set[int]:
    """Every live server process (``nbprod serve --deployment name``) of deployment ``name`` under this
    test's nbprod home: another test process (xdist) or worktree may serve a deployment of the same name."""
    home = f"NBPROD_HOME={os.environ['NBPROD_HOME']}".encode()
    found = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if state in ("Z", "X"):
            continue
        if home not in environ:
            continue
        if b"--deployment" in argv and argv[argv.index(b"--deployment") + 1:][:1] == [name.encode()]:
            found.add(int(p.name))
    # a multi-worker server's first workers are forked from it: the same command line, under a server
    return {pid for pid in found if _parent(pid) not in found}


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _workers_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (a uvicorn master's workers)."""
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            out.add(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def registered(db_url):  # noqa: F811 - the fixture imported above
    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(600, seed=5)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    names: list[str] = []
    try:
        yield names
    finally:
        kill_recorded_servers()
        for name in names:  # servers the state DB does not know (the bug this file guards against)
            for pid in _servers_of(name):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    sigkill(pid)


# --- concurrent callers, each in a process of its own -------------------------------------------

_CALLER = """
import os, sys, time
import nbprod
from nbprod.errors import NbprodError
from nbprod.registry import get_version

get_version("credit-risk@champion")  # MLflow imported and the stores open before the start line
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
try:
    result = {call}
    print("OK", flush=True)
except NbprodError as exc:
    print("ERROR", type(exc).__name__, exc.problem, flush=True)
    sys.exit(3)
"""


def _race(call: str, tmp_path: Path, n: int = 2) -> list[tuple[int, str]]:
    """Run ``call`` in ``n`` fresh Python processes that start it within milliseconds of each other."""
    go = tmp_path / "go"
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, "-c", _CALLER.format(call=call), str(tmp_path / f"c{i}"),
                                       str(go)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=dict(os.environ)))
    try:
        _wait(lambda: all((tmp_path / f"c{i}.ready").exists() or procs[i].poll() is not None for i in range(n)),
              "the callers to be ready", timeout=120)
        go.touch()
        return [(p.wait(timeout=180), p.stdout.read()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _one_wins(results: list[tuple[int, str]]) -> None:
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    loser = next(out for code, out in results if code == 3)
    assert "ERROR DeploymentConflict" in loser and "being deployed by someone else" in loser, loser


def test_two_concurrent_first_deploys_one_wins_the_other_is_told(registered, tmp_path):
    from nbprod import deployments
    from nbprod.deployments import store

    registered.append("race")
    _one_wins(_race("nbprod.deploy('credit-risk@champion', name='race')", tmp_path))
    _, cols, _ = store.read("race")
    row = deployments.status("race")["race"]
    assert row.state == "running" and row.pid == cols["pid"]
    # one server, and it is the one the state DB knows: nothing serves outside it
    assert _servers_of("race") == {cols["pid"]}
    actions = [e.action for e in __import__("nbprod").audit.history()
               if (e.details or {}).get("deployment") == "race"]
    assert actions.count("deploy") == 1
    deployments.undeploy("race")
    _wait(lambda: not _servers_of("race"), "every server of 'race' to stop")


def test_two_concurrent_restores_one_wins_the_other_is_told(registered, tmp_path):
    from nbprod import audit, deployments

    registered.append("again")
    dep = deployments.deploy("credit-risk@champion", name="again", server={"auth": False})
    os.killpg(dep.pid, signal.SIGKILL)
    _wait(lambda: not _servers_of("again"), "the killed server to be gone")
    assert deployments.status("again")["again"].state == "dead"

    _one_wins(_race("nbprod.restore('again')", tmp_path))
    row = deployments.status("again")["again"]
    assert row.state == "running"
    assert _servers_of("again") == {row.pid}
    restores = [e for e in audit.history() if e.action == "deploy.restore"
                and (e.details or {}).get("deployment") == "again"]
    assert len(restores) == 1 and restores[0].details["pid"] == row.pid


# --- the master dies alone ----------------------------------------------------------------------

def test_killing_only_the_master_takes_its_workers_with_it(registered):
    from nbprod import deployments
    from nbprod.deployments import process, store

    registered.append("orphans")
    dep = deployments.deploy("credit-risk@champion", name="orphans", server={"workers": 2, "auth": False})
    workers = {p for p, a in store.acks("orphans").items() if a["parent"] == dep.pid and _alive(p)}
    assert len(workers) == 2 and workers <= _workers_of(dep.pid)
    os.kill(dep.pid, signal.SIGKILL)  # the master only, not its process group
    try:
        _wait(lambda: not any(_alive(w) for w in workers), "the workers of the killed master to exit", timeout=20)
    finally:
        for w in workers:  # on a failure, none is left serving after the test
            sigkill(w)
    port = int(dep.url.rsplit(":", 1)[1])
    assert process.http_get("127.0.0.1", port, "/ping", timeout=1)[0] == 0  # nothing answers on the old port
    assert deployments.status("orphans")["orphans"].state == "dead"
    row = deployments.restore("orphans")["orphans"]
    assert row.state == "running" and row.workers == "2/2"
    assert _servers_of("orphans") == {row.pid}
    deployments.undeploy("orphans")
    _wait(lambda: not _servers_of("orphans"), "every server of 'orphans' to stop")


# --- undeploy racing promote (PostgreSQL: the two really run at once) ---------------------------

@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite serialises every writer already
def test_undeploy_racing_promote_never_changes_a_stopped_deployment(registered, db_url):  # noqa: F811
    """The test holds the deployment's lock while promote (first) and undeploy (second) queue behind
    it, then lets them go: either promote's change commits before the undeploy began, or promote is
    refused because the deployment is stopping; never a change written after the undeploy."""
    import zlib

    import sqlalchemy as sa

    from nbprod import audit, deployments, registry, state

    registered.append("racing")
    deployments.deploy("credit-risk@champion", name="racing", server={"auth": False})
    deployments.deploy("credit-risk@challenger", name="racing", canary=10)
    champion = registry.get_version("credit-risk@champion").version
    key = zlib.crc32(b"deployment:racing") & 0x7FFFFFFF

    def waiting() -> int:
        with state.engine().connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                        "AND NOT granted AND objid = :k"), {"k": key}).scalar()

    outcome: dict = {}

    def run(label, fn):
        try:
            outcome[label] = fn()
        except DeploymentError as exc:
            outcome[label] = exc

    holder = sa.create_engine(db_url)
    with holder.connect() as conn, conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        promoting = threading.Thread(target=run, args=("promote", lambda: deployments.promote("racing")))
        promoting.start()
        _wait(lambda: waiting() >= 1, "promote to queue on the deployment's lock")
        stopping = threading.Thread(target=run, args=("undeploy", lambda: deployments.undeploy("racing")))
        stopping.start()
        _wait(lambda: waiting() >= 2 or not stopping.is_alive(), "undeploy to queue (or finish)")
    holder.dispose()  # the lock is released with the transaction: both go
    promoting.join(120)
    stopping.join(120)
    assert not promoting.is_alive() and not stopping.is_alive()

    assert deployments.status("racing")["racing"].state == "stopped"
    rows = [e.action for e in reversed(audit.history()) if (e.details or {}).get("deployment") == "racing"]
    if isinstance(outcome["promote"], DeploymentError):  # refused: nothing moved
        assert "is stopped" in str(outcome["promote"]) or "being stopped" in str(outcome["promote"])
        assert "promote" not in rows
        assert registry.get_version("credit-risk@champion").version == champion
    else:  # promote went first: its change precedes the undeploy in the audit log
        assert rows.index("promote") < rows.index("undeploy"), rows
    for verb in (deployments.promote, deployments.rollback):
        with pytest.raises(DeploymentError, match="is stopped"):
            verb("racing")
