"""The server's background alert loop: the rules of `nbprod monitor --check`, run by `nbprod serve` itself,
posting to a real HTTP receiver on 127.0.0.1 — once per incident, one loop per server, never failing a request."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest
from _monitoring_helpers import alert_rows, hour_start, traffic
from _servers import NBPROD, receiver, request, server, wait_until

from nbprod.errors import ConfigError, RuleError

pytestmark = pytest.mark.slow  # real servers, or seconds of traffic and loop ticks


@pytest.fixture
def stack():
    """Servers and receivers entered here are stopped when the test ends, whatever happens."""
    with contextlib.ExitStack() as s:
        yield s



def test_serve_runs_the_alert_loop_once_per_server_and_posts_each_firing_once(serving_models, env, stack):
    url, received = stack.enter_context(receiver())
    env = {**env, "NBPROD_ALERT_RULES": "p95_ms > 0; error_rate > 90%", "NBPROD_ALERT_WEBHOOK": url,
           "NBPROD_ALERT_INTERVAL": "0.3"}
    port = stack.enter_context(server(["--model-dir", serving_models["clf"], "--no-auth", "--workers", "2"], env))
    # 10 requests of 2 rows: enough for latency (5 requests), below monitor()'s 30 rows for drift
    body = {"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))}
    statuses = [request(port, "POST", "/invocations", body)[0] for _ in range(10)]
    assert statuses == [200] * 10
    wait_until(lambda: received, what="a webhook post from the server's loop")
    name = serving_models["clf"].rstrip("/").split("/")[-1]  # a --model-dir server logs under the directory's name
    msg = received[0]
    assert "p95_ms > 0" in msg["text"] and f"nbprod rollback {name}" in msg["text"] and "window" in msg["text"]
    # the loop keeps checking (alert_state.updated_at moves on) but the incident is posted once,
    # by one loop for the server (2 workers), while predictions keep being answered
    seen: set = set()

    def checked_three_more_times() -> bool:
        seen.update(r.updated_at for r in alert_rows(name))
        return len(seen) >= 4

    wait_until(checked_three_more_times, what="three more checks")
    one = {"dataframe_records": body["dataframe_records"][:1]}
    assert [request(port, "POST", "/invocations", one)[0] for _ in range(5)] == [200] * 5
    rows = {r.rule: r for r in alert_rows(name)}
    assert rows["p95_ms > 0"].firing and rows["p95_ms > 0"].notified_at is not None
    assert not rows["error_rate > 90%"].firing
    assert len(received) == 1


def test_bad_alert_settings_stop_serve_before_it_starts(serving_models, env):
    for extra, says in [({"NBPROD_ALERT_RULES": "p95 > 100"}, "unknown metric"),
                        ({"NBPROD_ALERT_RULES": "p95_ms > 100", "NBPROD_ALERT_INTERVAL": "-5"}, "not positive"),
                        ({"NBPROD_ALERT_RULES": "p95_ms > 100", "NBPROD_ALERT_WEBHOOK": "ftp://x"},
                         "not an http(s) URL")]:
        done = subprocess.run([NBPROD, "serve", "--model-dir", serving_models["clf"], "--no-auth", "--port", "1"],
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr
    # the same settings as flags of nbprod serve
    for flags, says in [(["--alert-rule", "p95_ms > 100", "--alert-rule", "p95 > 100"], "unknown metric"),
                        (["--alert-rule", "p95_ms > 100", "--alert-interval", "-5"], "not positive"),
                        (["--alert-interval", "60"], "without alert rules")]:
        done = subprocess.run([NBPROD, "serve", "--model-dir", serving_models["clf"], "--no-auth", "--port", "1",
                               *flags],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr, done.stderr


def test_the_loop_logs_failures_retries_and_stops(db_url, stack, caplog):
    from nbprod.monitoring.loop import AlertLoop, from_settings

    assert from_settings("credit", rules=[]) is None  # no rules: no loop
    with pytest.raises(RuleError, match="without alert rules"):
        from_settings("credit", rules=[], webhook="http://127.0.0.1:1/hook")
    with pytest.raises(ConfigError, match="not a duration"):
        from_settings("credit", rules="p95_ms > 100", interval="soon")
    with pytest.raises(ConfigError, match="shorter than 0.1 s") as err:  # a busy loop against the state DB
        from_settings("credit", rules="p95_ms > 100", interval="0.0001")
    assert "--alert-interval 60" in err.value.fix
    # no traffic yet: nothing to check, which is no failure (said once, at INFO), and the loop carries on
    loop = AlertLoop("credit", ["p95_ms > 100"], webhook="http://127.0.0.1:1/hook", interval=0.1)
    with caplog.at_level("INFO", logger="nbprod.alerts"):
        assert loop.run_once() is None and loop.run_once() is None
    assert loop.failures == 0 and loop.checks == 0 and loop.last_error is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "nbprod alert checks of 'credit' start with its first logged prediction")]
    caplog.clear()
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    # the webhook answers 500: logged, claim released, retried by the next tick
    bad_url, bad = stack.enter_context(receiver(status=500))
    loop = AlertLoop("credit", "p95_ms > 100", webhook=bad_url, interval=0.1, window="1h")
    with caplog.at_level("WARNING", logger="nbprod.alerts"):
        first = loop.run_once()
    assert first.firing[0].notification.startswith("failed") and len(bad) == 1
    assert any("webhook failed" in r.getMessage() for r in caplog.records)
    good_url, good = stack.enter_context(receiver())
    loop = AlertLoop("credit", "p95_ms > 100", webhook=good_url, interval=0.1).start()
    try:
        wait_until(lambda: loop.checks >= 3, what="three checks of the running loop")
    finally:
        loop.stop()
    assert not loop.running and len(good) == 1 and loop.last_check.firing[0].notification.startswith("suppressed")


def test_a_failing_check_is_logged_once_counted_and_retried(nbprod_home, monkeypatch, caplog):
    from nbprod.config import settings
    from nbprod.monitoring.loop import AlertLoop

    blocked = nbprod_home.parent / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NBPROD_DB_URL", f"sqlite:///{blocked / 'nbprod.db'}")  # a state DB that cannot open
    settings.reset()
    loop = AlertLoop("credit", ["p95_ms > 100"], interval=0.1)
    with caplog.at_level("WARNING", logger="nbprod.alerts"):
        assert loop.run_once() is None and loop.run_once() is None
    assert loop.failures == 2 and loop.checks == 0 and loop.last_error
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "nbprod alert check of 'credit' failed (retried every 0.1s)"]
