"""Alert rules carried by a deployment: real detached servers on 127.0.0.1 started by nbprod.deploy,
a real webhook receiver on 127.0.0.1, the rules recorded in the state DB (the webhook URL never).

One module-scoped home with two registered versions of credit-risk. The finalizer kills every
server recorded in the state DB, so none outlives the suite; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from _monitoring_helpers import alert_rows
from _registry_helpers import module_home, pipeline
from _servers import receiver, wait_until
from conftest import kill_recorded_servers, sigkill

from nbprod.deployments import AlertSettings
from nbprod.errors import ConfigError, RuleError

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

WEBHOOK_ENV = "NBPROD_ALERT_WEBHOOK"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with module_home(tmp_path_factory, "deploy-alerts") as h:
        try:
            yield h
        finally:
            kill_recorded_servers()


@pytest.fixture(scope="module")
def versions(home):
    from nbprod import registry
    from nbprod.datasets import credit

    X, y = credit(1000, 11)
    registry.register(pipeline(X, y), "credit-risk", X, y, alias="champion")
    registry.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger")
    return X.dropna().head(2)


@pytest.fixture
def stack(monkeypatch):
    """Receivers entered here are shut down when the test ends; no webhook inherited from the shell."""
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    with contextlib.ExitStack() as s:
        yield s


def _traffic(dep, rows, n: int = 8) -> None:
    """``n`` answered requests: enough for latency percentiles (5 requests per window)."""
    for _ in range(n):
        assert len(dep.predict(rows)["predictions"]) == len(rows)


def _checks(name: str, at_least: int) -> None:
    """Wait (bounded) until the server's loop has checked ``at_least`` more times."""
    seen: set = set()

    def enough() -> bool:
        seen.update(r.updated_at for r in alert_rows(name))
        return len(seen) >= at_least + 1

    wait_until(enough, what=f"{at_least} more alert checks of {name!r}")


def _stored_anywhere(home, text: str) -> list[str]:
    """Files of the home (the state DB and its journal, server logs, MLflow store) that contain ``text``."""
    return [str(p) for p in home.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def _kill_9(pid: int) -> None:
    from nbprod.deployments import process

    workers = process.children(pid)
    os.killpg(pid, signal.SIGKILL)
    for p in workers:
        sigkill(p)
    deadline = time.monotonic() + 10
    while process.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process.alive(pid)


# --- refused before anything starts ------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"rules": ["p95 > 100"]}, RuleError, "unknown metric"),
    ({"rules": ["p95_ms > 1; rm -rf /"]}, RuleError, "cannot read"),
    ({"rules": "p95_ms > 100; roc_auc < 80ms"}, RuleError, "not a latency"),
    ({"rules": 5}, RuleError, "list of rules"),
    ({"rules": ["p95_ms > 100"], "interval": -5}, ConfigError, "not positive"),
    ({"rules": ["p95_ms > 100"], "interval": "soon"}, ConfigError, "not a duration"),
    ({"rules": ["p95_ms > 100"], "interval": 0.01}, ConfigError, "shorter than 0.1 s"),
    ({"rules": ["p95_ms > 100"], "window": "0h"}, ConfigError, "not positive"),
    ({"rules": ["p95_ms > 100"], "webhook": "ftp://x"}, ConfigError, "not an http(s) URL"),
    ({"webhook": "https://hooks.example/x"}, RuleError, "without alert rules"),
    ({"interval": 60}, RuleError, "without alert rules"),
    ({"rules": ["p95_ms > 100"], "every": 60}, RuleError, "unknown alert setting"),
])
def test_bad_alert_settings_are_typed_errors_before_any_server_starts(versions, home, kwargs, error, fragment):
    from nbprod.deployments import deploy, store

    with pytest.raises(error) as info:
        deploy("credit-risk@champion", name="bad", alerts=kwargs)
    assert fragment in str(info.value) and info.value.fix
    assert store.read("bad") is None and not (home / "deployments" / "bad").exists()  # no row, no log, no server


def test_a_bad_webhook_in_the_environment_is_refused_too(versions, home, monkeypatch):
    from nbprod.deployments import deploy, store

    monkeypatch.setenv(WEBHOOK_ENV, "not-a-url")
    with pytest.raises(ConfigError, match=WEBHOOK_ENV):
        deploy("credit-risk@champion", name="bad", alerts=AlertSettings(rules=["p95_ms > 100"]))
    assert store.read("bad") is None


# --- a deployment that checks its rules --------------------------------------------------------

def test_a_firing_rule_posts_the_webhook_once(versions, home, stack):
    from nbprod.deployments import deploy, status, store

    url, received = stack.enter_context(receiver())
    dep = deploy("credit-risk@champion", name="credit",
                 alerts=AlertSettings(rules=["p95_ms > 0", "error_rate > 90%"], webhook=url, interval=0.3))
    assert dep.alerts == {"rules": ["p95_ms > 0", "error_rate > 90%"], "interval_s": 0.3, "window": "1h",
                          "webhook": True, "pending": False}
    assert "p95_ms > 0; error_rate > 90%" in str(dep) and "posted to the webhook" in dep._repr_html_()
    _traffic(dep, versions)
    wait_until(lambda: received, what="a webhook post from the deployment's server")
    msg = received[0]["text"]
    assert "p95_ms > 0" in msg and "nbprod rollback credit" in msg
    _checks("credit", 3)  # the loop keeps checking; the incident is posted once
    rows = {r.rule: r for r in alert_rows("credit")}
    assert rows["p95_ms > 0"].firing and rows["p95_ms > 0"].notified_at is not None
    assert not rows["error_rate > 90%"].firing
    assert len(received) == 1
    # nbprod status shows the rules, never the webhook; the state DB and the logs never hold its URL
    row = status("credit")["credit"]
    assert row.alerts["rules"] == ["p95_ms > 0", "error_rate > 90%"] and row.alerts["webhook"] is True
    table = str(status())
    assert "p95_ms > 0; error_rate > 90% every 0.3s" in table and url not in table + str(dep)
    assert store.read("credit")[2]["alerts"] == {"rules": ["p95_ms > 0", "error_rate > 90%"], "interval_s": 0.3,
                                                 "window": "1h"}
    assert _stored_anywhere(home, url) == []


def test_a_later_deploy_keeps_the_alert_settings_unless_new_ones_are_given(versions, home, stack):
    from nbprod import deployments
    from nbprod.deployments import store

    canary = deployments.deploy("credit-risk@challenger", name="credit", canary=20)
    assert canary.weights == {"1": 80.0, "2": 20.0}
    assert canary.alerts["rules"] == ["p95_ms > 0", "error_rate > 90%"] and not canary.alerts["pending"]
    assert not canary.warnings
    # a bad rule on a running deployment: refused, traffic unchanged
    generation = store.read("credit")[0].generation
    with pytest.raises(RuleError, match="unknown metric"):
        deployments.deploy("credit-risk@challenger", name="credit", canary=50, alerts={"rules": ["p95 > 1"]})
    assert store.read("credit")[0].generation == generation
    # new settings: recorded (the interval kept), applied when the server restarts, and said so
    changed = deployments.deploy("credit-risk@challenger", name="credit", canary=30,
                                 alerts=AlertSettings(rules=["p99_ms > 1000"]))
    assert changed.weights == {"1": 70.0, "2": 30.0}
    assert changed.alerts == {"rules": ["p99_ms > 1000"], "interval_s": 0.3, "window": "1h", "webhook": True,
                              "pending": True}
    assert any("new alert settings recorded" in w for w in changed.warnings)
    assert "restart pending" in str(deployments.status("credit"))
    # undeploy, deploy again without alert options: the recorded rules come back, on a server started with them
    deployments.undeploy("credit")
    assert deployments.status("credit")["credit"].alerts["rules"] == ["p99_ms > 1000"]
    again = deployments.deploy("credit-risk@champion", name="credit")
    assert again.alerts == {"rules": ["p99_ms > 1000"], "interval_s": 0.3, "window": "1h", "webhook": False,
                            "pending": False}
    assert "no webhook" in str(again)
    # rules=[] removes them (waiting for the restart, like any change)
    cleared = deployments.deploy("credit-risk@champion", name="credit", alerts=AlertSettings(rules=[]))
    assert cleared.alerts["rules"] == [] and cleared.alerts["pending"]
    assert store.read("credit")[2]["alerts"] is None


def test_the_rules_survive_restore_and_post_with_the_restoring_process_webhook(versions, home, stack, monkeypatch):
    from nbprod import deployments

    # started without a webhook: the server checks and records the firing, posting nothing
    dep = deployments.deploy("credit-risk@champion", name="restored",
                             alerts=AlertSettings(rules="p95_ms > 0", interval="0.3"))
    assert dep.alerts["webhook"] is False and "no webhook" in str(deployments.status("restored"))
    _traffic(dep, versions)
    wait_until(lambda: any(r.firing and r.notified_at is None for r in alert_rows("restored")),
          what="a recorded, unposted firing")
    _kill_9(dep.pid)
    dead = deployments.status("restored")["restored"]
    assert dead.state == "dead" and dead.alerts["rules"] == ["p95_ms > 0"]
    # restored with NBPROD_ALERT_WEBHOOK set: same rules, and the pending firing is posted once
    url, received = stack.enter_context(receiver())
    monkeypatch.setenv(WEBHOOK_ENV, url)
    row = deployments.restore()["restored"]
    assert row.state == "running" and row.pid != dep.pid
    assert row.alerts == {"rules": ["p95_ms > 0"], "interval_s": 0.3, "window": "1h", "webhook": True,
                          "pending": False}
    wait_until(lambda: received, what="the restored server posting the firing")
    _checks("restored", 3)
    assert len(received) == 1 and "p95_ms > 0" in received[0]["text"]
    assert _stored_anywhere(home, url) == []


# --- the same options through %nbprod and the CLI ----------------------------------------------

def test_magic_and_cli_alert_flags_reach_deploy(versions, home, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    import nbprod.commands as commands
    from nbprod.deployments import api, store

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    try:
        # for real: a bad rule through the magic is the same typed error, before anything starts
        with pytest.raises(RuleError, match="unknown metric") as info:
            shell.run_line_magic("nbprod", "deploy credit-risk@champion --name magic --alert-rule 'p95 > 1'")
        assert info.value._render_traceback_()[-1].startswith("Fix: use one of")
        assert store.read("magic") is None
        calls: list[dict] = []
        monkeypatch.setattr(api, "deploy", lambda uri=None, **kw: calls.append({"uri": uri, **kw}) or "deployed")
        line = ("deploy credit-risk@champion --name credit --alert-rule 'p95_ms > 100' "
                "--alert-rule 'drift_share > 0.3' --alert-webhook https://hooks.example/T0/B0/x "
                "--alert-interval 60 --alert-window 15m")
        assert shell.run_line_magic("nbprod", line) == "deployed"
        parser, cmds = commands.build_parser("nbprod")
        args = parser.parse_args(["deploy", "credit-risk@challenger", "--name", "credit", "--canary", "5",
                                  "--no-alerts"])
        assert cmds["deploy"].run(args, commands.Context()) == "deployed"
        with pytest.raises(commands.UsageProblem):
            parser.parse_args(["deploy", "credit-risk", "--no-alerts", "--alert-rule", "p95_ms > 1"])
        # --restore restarts with the recorded rules: new ones are refused, a webhook is taken
        args = parser.parse_args(["deploy", "--restore", "--alert-rule", "p95_ms > 1"])
        with pytest.raises(commands.UsageProblem, match="recorded alert rules"):
            cmds["deploy"].run(args, commands.Context())
        monkeypatch.setattr(api, "restore", lambda name=None, **kw: calls.append({"restore": name, **kw}) or "restored")
        args = parser.parse_args(["deploy", "--restore", "--alert-webhook", "https://hooks.example/T0/B0/y"])
        assert cmds["deploy"].run(args, commands.Context()) == "restored"
    finally:
        shell.run_line_magic("unload_ext", "nbprod")
    magic, cli, restored = calls
    assert magic["uri"] == "credit-risk@champion" and magic["name"] == "credit"
    assert magic["alerts"] == AlertSettings(rules=["p95_ms > 100", "drift_share > 0.3"],
                                            webhook="https://hooks.example/T0/B0/x", interval="60", window="15m")
    assert cli["canary"] == 5 and cli["alerts"] == AlertSettings(rules=[]) and cli["alerts"].webhook is None
    assert restored == {"restore": None, "alert_webhook": "https://hooks.example/T0/B0/y"}
