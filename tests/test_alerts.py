"""Alert rules: the safe grammar, evaluation, a real webhook receiver on 127.0.0.1, dedup until resolved."""

from __future__ import annotations

import json
import threading

import pytest
from _monitoring_helpers import hour_start, traffic
from _servers import receiver

from nbprod.errors import RuleError
from nbprod.monitoring.alerts import check, parse_rule, parse_rules
from nbprod.monitoring.monitor import monitor


def test_rule_grammar():
    assert parse_rule("error_rate > 1%").threshold == pytest.approx(0.01)
    assert parse_rule("p95_ms>100").op == ">" and parse_rule("p95_ms <= 0.2s").threshold == pytest.approx(200)
    assert parse_rule("roc_auc < 0.8").fires(0.7) and not parse_rule("roc_auc < 0.8").fires(0.9)
    assert parse_rule("drift_share >= 3e-1").threshold == pytest.approx(0.3)
    for bad, match in [("__import__('os') > 1", "cannot read"), ("p95 > 100", "unknown metric"),
                       ("roc_auc < 80ms", "not a latency"), ("p95_ms > 1; rm -rf /", "cannot read"),
                       ("", "cannot read")]:
        with pytest.raises(RuleError, match=match):
            parse_rule(bad)


def test_rules_file(tmp_path):
    f = tmp_path / "alerts.txt"
    f.write_text("# latency\np95_ms > 100\n- 'error_rate > 1%'  # errors\n\nroc_auc < 0.8\np95_ms > 100\n")
    assert [r.text for r in parse_rules(["drift_share > 0.3"], path=f)] == [
        "drift_share > 0.3", "p95_ms > 100", "error_rate > 1%", "roc_auc < 0.8"]
    with pytest.raises(RuleError, match="no rules file"):
        parse_rules(path=tmp_path / "missing.txt")
    # one text holds rules separated by ';' or new lines (NBPROD_ALERT_RULES, alert_rules="...")
    assert [r.text for r in parse_rules("p95_ms > 100; error_rate > 1%\n roc_auc < 0.8 ;")] == [
        "p95_ms > 100", "error_rate > 1%", "roc_auc < 0.8"]
    with pytest.raises(RuleError, match="cannot read"):
        parse_rules("p95_ms > 1; rm -rf /")


@pytest.mark.slow
def test_firing_posts_once_until_resolved_then_again(db_url):
    start = hour_start(3)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, errors_per_hour=1, send_labels=False)
    rules = ["p95_ms > 100", "error_rate > 50%", "roc_auc < 0.8"]
    with receiver() as (url, received):
        report = monitor("credit", since=start)
        result = check(report, rules, webhook=url)
        assert not result.ok and not report.ok and [o.rule for o in result.firing] == ["p95_ms > 100"]
        states = {o.rule: (o.state, o.notification) for o in result.outcomes}
        assert states["p95_ms > 100"] == ("firing", "sent")
        assert states["error_rate > 50%"] == ("ok", None) and states["roc_auc < 0.8"][0] == "no data"
        assert len(received) == 1
        msg = received[0]
        assert set(msg) == {"text", "blocks"} and isinstance(msg["blocks"], list)
        for part in ("credit", "p95_ms > 100", "250.0 ms", "nbprod rollback credit", "window"):
            assert part in msg["text"]
        # still firing: deduplicated, nothing posted
        again = check(monitor("credit", since=start), rules, webhook=url)
        assert again.firing[0].notification.startswith("suppressed") and len(received) == 1
        # it resolves (fast traffic in a newer window): one "resolved" message, then a new firing posts again
        traffic("credit", start=start + 3600, hours=1, per_hour=60, latency_ms=5.0, seed=5, send_labels=False)
        resolved = check(monitor("credit", since=start), rules, webhook=url)
        assert resolved.ok and len(received) == 2 and received[1]["text"].startswith("RESOLVED")
        traffic("credit", start=start + 7200, hours=1, per_hour=60, latency_ms=300.0, seed=6, send_labels=False)
        refired = check(monitor("credit", since=start), rules, webhook=url)
        assert refired.firing[0].notification == "sent" and len(received) == 3
    assert "FIRING" in str(refired) and "nbprod rollback credit" in str(refired)
    json.dumps(refired.to_dict())


def test_a_firing_names_the_deployments_model(db_url, monkeypatch):
    # the message reads the deployment's spec inside the check's write transaction: on SQLite that new
    # connection waited for the check's own lock (30 s), failed, and the message named no model
    from nbprod import state
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    monkeypatch.setattr(state, "BUSY_TIMEOUT_MS", 500)  # the bug shows at once, not after 30 s
    save_spec("credit", DeploymentSpec("credit", [Route("models:/credit-risk/7", "7", 100, "stable")]))
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    state.dispose()  # no idle pooled connection: the spec is read on a new one
    with receiver() as (url, received):
        result = check(monitor("credit", since=start), ["p95_ms > 100"], webhook=url)
    assert result.firing[0].notification == "sent"
    assert "model models:/credit-risk/7 (serving v1)" in received[0]["text"]


@pytest.mark.slow
def test_the_four_rules_of_the_issue_fire_on_bad_traffic(nbprod_home):
    """drift_share, p95_ms, error_rate and roc_auc each fire on traffic that breaks them, and each
    firing posts its own message naming the rule and the value."""
    from _monitoring_helpers import model

    from nbprod.data.profile import profile

    _, X = model()
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    moved = profile(X.assign(**{c: X[c] * 3 + 10 for c in numeric}))  # every numeric column drifts
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=400, batch=20, latency_ms=250.0, errors_per_hour=3,
            shift="concept", shift_from=0)
    report = monitor("credit", since=start, reference=moved)
    rules = ["drift_share > 0.3", "p95_ms > 100", "error_rate > 1%", "roc_auc < 0.8"]
    values = {r: report.latest(r.split()[0])[0] for r in rules}
    assert values["drift_share > 0.3"] >= len(numeric) / len(X.columns) > 0.3
    assert values["error_rate > 1%"] == pytest.approx(3 / 23) and values["roc_auc < 0.8"] < 0.8
    with receiver() as (url, received):
        result = check(report, rules, webhook=url)
    assert [o.rule for o in result.firing] == rules and all(o.notification == "sent" for o in result.firing)
    assert len(received) == 4
    for rule, msg in zip(rules, received, strict=True):
        assert rule in msg["text"] and "nbprod rollback credit" in msg["text"]
    assert "13.04%" in received[2]["text"]  # error_rate shown as a rate, the value the rule compared


@pytest.mark.slow
def test_a_firing_rule_with_no_data_left_resolves_so_the_next_firing_posts(nbprod_home):
    start = hour_start(5)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    with receiver() as (url, received):
        assert check(monitor("credit", since=start), ["p95_ms > 100"], webhook=url).firing
        # traffic stopped: a period after it has nothing to judge the rule on
        quiet = check(monitor("credit", since=start + 2 * 3600), ["p95_ms > 100"], webhook=url)
        assert quiet.ok and quiet.outcomes[0].state == "no data" and quiet.outcomes[0].notification == "resolved sent"
        assert len(received) == 2 and received[1]["text"].startswith("RESOLVED") and "no data" in received[1]["text"]
        traffic("credit", start=start + 3 * 3600, hours=1, per_hour=60, latency_ms=300.0, seed=7, send_labels=False)
        again = check(monitor("credit", since=start + 2 * 3600), ["p95_ms > 100"], webhook=url)
        assert again.firing[0].notification == "sent" and len(received) == 3


@pytest.mark.slow
def test_a_failed_post_is_retried_at_the_next_check(nbprod_home):
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    with receiver(status=500) as (url, received):
        first = check(monitor("credit", since=start), ["p95_ms > 100"], webhook=url)
        assert first.firing[0].notification.startswith("failed")
    with receiver() as (url, received):
        second = check(monitor("credit", since=start), ["p95_ms > 100"], webhook=url)
        assert second.firing[0].notification == "sent" and len(received) == 1


@pytest.mark.slow
def test_concurrent_checks_post_a_firing_once(db_url):
    """cron's `nbprod monitor --check` beside the server's loop: while one check's post is in flight,
    a second check of the same incident posts nothing (the firing is claimed under the lock)."""
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    reports = [monitor("credit", since=start), monitor("credit", since=start)]
    hold, first = threading.Event(), []
    with receiver(hold=hold) as (url, received):
        thread = threading.Thread(target=lambda: first.append(check(reports[0], ["p95_ms > 100"], webhook=url)))
        thread.start()
        try:
            for _ in range(500):  # bounded: until the first post reaches the receiver
                if received:
                    break
                threading.Event().wait(0.02)
            second = check(reports[1], ["p95_ms > 100"], webhook=url)
        finally:
            hold.set()
            thread.join(10)
    assert first[0].firing[0].notification == "sent"
    assert second.firing[0].notification.startswith("suppressed") and len(received) == 1


@pytest.mark.slow
def test_cli_check_exits_1_while_firing(nbprod_home, capsys):
    from nbprod.cli import main

    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=60, latency_ms=250.0, send_labels=False)
    with receiver() as (url, received):
        assert main(["monitor", "credit", "--since", "3h", "--check", "--rule", "p95_ms > 100", "--webhook", url]) == 1
        assert main(["monitor", "credit", "--since", "3h", "--check", "--rule", "p95_ms > 1000", "--webhook", url]) == 0
        assert len(received) == 1
    out = capsys.readouterr().out
    assert "FIRING" in out and "all clear" in out
    assert main(["monitor", "credit", "--check"]) == 2  # --check without rules: a usage error
