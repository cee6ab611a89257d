"""Alert rules on a MonitorReport, a Slack-compatible webhook, and deduplication in the state DB.

A rule is ``<metric> <op> <number>[%|ms|s]`` — ``drift_share > 0.3``, ``p95_ms > 100``,
``error_rate > 1%``, ``roc_auc < 0.8`` — parsed by one regular expression (never ``eval``).
Metrics are the report's (``nbprod.monitoring.report.METRICS``). A rule is evaluated on the most
recent window where its metric has a value; no such window → "no data" (neither fires nor resolves).

Deduplication: the state of each (deployment, rule) lives in the ``alert_state`` table. The first
check that finds a rule firing claims it (under a lock on the deployment, so concurrent checks —
cron beside the server's background loop — post it once) and posts the webhook; later checks while
it keeps firing post nothing (``suppressed``); when it stops firing one "resolved" message is posted
and the next firing posts again. A failed post releases the claim, so the next check retries it.

Each message names the deployment and served model, the rule, the value, the window, and the
next action: the exact ``nbprod rollback <deployment>`` command.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from sqlalchemy import Boolean, Column, Float, String, Table, Text, select

from .. import _format, state
from .._display import Display, Lines, View
from .._display import Table as TableView  # sqlalchemy's Table is the other one here
from ..errors import RuleError
from .report import METRICS
from .windows import iso

__all__ = ["Rule", "parse_rule", "parse_rules", "split_rules", "check", "check_deployment", "evaluate", "AlertCheck",
           "AlertOutcome", "OnFire", "alert_state", "post_webhook"]

alert_state = Table(
    "alert_state", state.metadata,
    Column("deployment", String(255), primary_key=True),
    Column("rule", String(255), primary_key=True),  # the rule's canonical text
    Column("firing", Boolean, nullable=False),
    Column("since", Float),  # when it started firing
    Column("value", Float),
    Column("window_start", Float),
    Column("notified_at", Float),  # NULL while firing = not notified (post failed, no webhook): retry next check
    Column("updated_at", Float, nullable=False),
    Column("message", Text),
)

_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
_RULE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*(%|ms|s)?\s*$",
                   re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float
    text: str

    def fires(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str | Rule) -> Rule:
    """``"error_rate > 1%"`` → Rule(error_rate, >, 0.01). RuleError names the problem otherwise."""
    if isinstance(text, Rule):
        return text
    if not isinstance(text, str):
        raise RuleError(f"an alert rule must be text, got {type(text).__name__}", "write it like 'p95_ms > 100'")
    m = _RULE.match(text)
    if not m:
        raise RuleError(f"cannot read the alert rule {text!r}",
                        "write <metric> <op> <number>, e.g. 'drift_share > 0.3', 'p95_ms > 100', 'error_rate > 1%'")
    metric, op, number, unit = m.group(1).lower(), m.group(2), float(m.group(3)), (m.group(4) or "").lower()
    if metric not in METRICS:
        raise RuleError(f"unknown metric {metric!r} in the alert rule {text!r}", f"use one of: {', '.join(METRICS)}")
    if unit == "%":
        number /= 100.0
    elif unit == "s":
        if not metric.endswith("_ms"):
            raise RuleError(f"{metric} is not a latency: the unit 's' makes no sense in {text!r}", "drop the unit")
        number *= 1000.0
    elif unit == "ms" and not metric.endswith("_ms"):
        raise RuleError(f"{metric} is not a latency: the unit 'ms' makes no sense in {text!r}", "drop the unit")
    canonical = f"{metric} {op} {m.group(3)}{m.group(4) or ''}"
    return Rule(metric, op, number, canonical)


def split_rules(text: str) -> list[str]:
    """The rules of one text, separated by ``;`` or new lines (``NBPROD_ALERT_RULES``, ``alert_rules="…"``)."""
    return [part.strip() for part in re.split(r"[;\n]", text) if part.strip()]


def parse_rules(rules: Iterable[str] | str | None = None, *, path: str | Path | None = None) -> list[Rule]:
    """Rules from a list, a text (rules separated by ``;`` or new lines) and/or a file (one rule
    per line, ``#`` comments, ``- `` bullets ok)."""
    texts: list[str] = []
    if isinstance(rules, str):
        texts.extend(split_rules(rules))
    elif rules is not None:
        texts.extend(rules)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RuleError(f"no rules file {str(p)!r}", "pass a text file with one rule per line")
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("- "):
                line = line[2:].strip().strip("'\"")
            if line:
                texts.append(line)
    parsed = [parse_rule(t) for t in texts]
    return list({r.text: r for r in parsed}.values())


# --- outcome --------------------------------------------------------------------------------------


@dataclass
class AlertOutcome:
    rule: str
    state: str  # "firing" | "ok" | "no data"
    value: float | None
    window_start: float | None
    window_end: float | None
    notification: str | None = None  # "sent" | "suppressed" | "resolved sent" | "failed: …" | None
    message: str | None = None
    action: str | None = None  # what ``on_fire`` did for a new incident (e.g. the retraining run it started)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "state": self.state, "value": self.value,
                "window": None if self.window_start is None or self.window_end is None
                else f"{iso(self.window_start)} – {iso(self.window_end)}",
                "notification": self.notification, "message": self.message, "action": self.action}


@dataclass(repr=False)
class AlertCheck(Display):
    deployment: str
    outcomes: list[AlertOutcome] = field(default_factory=list)

    @property
    def firing(self) -> list[AlertOutcome]:
        return [o for o in self.outcomes if o.state == "firing"]

    @property
    def ok(self) -> bool:
        return not self.firing

    def to_dict(self) -> dict:
        return {"deployment": self.deployment, "ok": self.ok, "firing": [o.rule for o in self.firing],
                "outcomes": [o.to_dict() for o in self.outcomes]}

    def _rows(self) -> list[list[Any]]:
        return [[o.rule, o.state.upper() if o.state == "firing" else o.state, _format.number(o.value),
                 _format.MISSING if o.window_start is None else iso(o.window_start),
                 o.notification or _format.MISSING] for o in self.outcomes]

    _HEADER = ["rule", "state", "value", "window", "notification"]

    def _view(self) -> View:
        head = (f"alerts for {self.deployment}: " + (f"{len(self.firing)} FIRING" if self.firing else "all clear")
                + (f" — next action: nbprod rollback {self.deployment}" if self.firing else ""))
        actions = [f"{o.rule}: {o.action}" for o in self.outcomes if o.action]  # what on_fire did
        return View(head, [TableView(self._HEADER, self._rows(), limit=0),
                           Lines(actions, style="plain") if actions else None],
                    tone="bad" if self.firing else "ok")


# --- messages and the webhook -----------------------------------------------------------------


def _fmt_value(rule: Rule, value: float) -> str:
    if rule.metric.endswith("_ms"):
        return f"{value:.1f} ms"
    if rule.metric.endswith("_rate") and rule.metric != "request_rate":
        return f"{value:.2%}"
    return f"{value:.4g}"


def _model_of(deployment: str, window: dict | None) -> str:
    versions = ",".join(f"v{v}" for v in sorted((window or {}).get("versions", {}))) or "?"
    try:
        from ..serving.spec import load_spec

        uri = load_spec(deployment).stable.uri
        return f"{uri} (serving {versions})"
    except Exception:  # noqa: BLE001 - a model served without a deployment row
        return f"{deployment} {versions}"


def message(deployment: str, rule: Rule, value: float, window: dict, *, resolved: bool = False) -> dict:
    """The Slack-compatible payload: ``{"text": …, "blocks": […]}``."""
    span = f"{iso(window['start'])} – {iso(window['end'])}"
    model = _model_of(deployment, window)
    action = f"nbprod rollback {deployment}"
    if resolved:
        text = (f"RESOLVED nbprod alert on {deployment}: `{rule.text}` no longer holds "
                f"({rule.metric} = {_fmt_value(rule, value)} in window {span}); model {model}")
        return {"text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":white_check_mark: {text}"}}]}
    text = (f"nbprod alert on {deployment}: `{rule.text}` fired — {rule.metric} = {_fmt_value(rule, value)} "
            f"in window {span}; model {model}. Next action: `{action}`")
    return {"text": text, "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": f"nbprod alert: {deployment}"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Model*\n{model}"},
            {"type": "mrkdwn", "text": f"*Rule*\n`{rule.text}`"},
            {"type": "mrkdwn", "text": f"*Value*\n{rule.metric} = {_fmt_value(rule, value)}"},
            {"type": "mrkdwn", "text": f"*Window (UTC)*\n{span}"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Next action*: roll back with `{action}` "
                                                               f"(then look at `nbprod monitor {deployment}`)"}},
    ]}


def no_data_message(deployment: str, rule: Rule, status: str) -> dict:
    """The "resolved" payload of a firing rule that no window of the period can judge any more."""
    text = (f"RESOLVED nbprod alert on {deployment}: `{rule.text}` has no data in the monitored period "
            f"({rule.metric}: {status}); it will fire again if the condition returns")
    return {"text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":grey_question: {text}"}}]}


def post_webhook(url: str, payload: dict, *, timeout: float = 5.0) -> None:
    """POST ``payload`` as JSON; raises OSError/ValueError on failure (non-2xx included)."""

    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"the webhook URL {url!r} is not http(s)")
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "nbprod-alerts"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own webhook URL
        if not 200 <= resp.status < 300:
            raise OSError(f"webhook answered HTTP {resp.status}")
        resp.read()


# --- evaluation -----------------------------------------------------------------------------------


def evaluate(report: Any, rules: Iterable[str | Rule] | str) -> AlertCheck:
    """The rules' states on ``report`` without touching the alert state or posting (the panel uses it)."""
    result = AlertCheck(report.deployment)
    for rule in [parse_rule(r) for r in ([rules] if isinstance(rules, str) else list(rules))]:
        value, status, window = report.latest(rule.metric)
        if value is None or window is None:
            result.outcomes.append(AlertOutcome(rule.text, "no data", None, None, None, message=status))
        else:
            result.outcomes.append(AlertOutcome(rule.text, "firing" if rule.fires(value) else "ok", value,
                                                window["start"], window["end"]))
    return result


def _ensure():
    eng = state.engine()
    alert_state.create(eng, checkfirst=True)
    return eng


OnFire = Callable[[str, Rule, float, dict], "str | None"]


def check(report: Any, rules: Iterable[str | Rule] | str, *, webhook: str | None = None,
          now: float | None = None, on_fire: OnFire | None = None) -> AlertCheck:
    """Evaluate ``rules`` on ``report`` (a MonitorReport), post new firings and resolutions, dedup.

    The result is attached to the report (``report.alerts``), so ``report.ok`` is False while a rule fires.

    ``on_fire(deployment, rule, value, window)``: called once per new incident — by the one check
    that claimed it, after the claim is committed and before the webhook is posted — and what it
    returns (a line of text, e.g. the retraining run it started) is added to the message and to
    the outcome's ``action``. This layer knows nothing of what it does (the verbs layer wires
    pipelines in: :mod:`nbprod.pipelines.trigger`); an exception it raises is reported the same
    way and never stops the check.
    """
    parsed = [parse_rule(r) for r in ([rules] if isinstance(rules, str) else list(rules))]
    if not parsed:
        raise RuleError("no alert rules to check", "pass at least one rule, e.g. --rule 'p95_ms > 100'")
    now = time.time() if now is None else now
    deployment = report.deployment
    result = AlertCheck(deployment)
    _ensure()
    posts: list[tuple[AlertOutcome, dict, bool]] = []
    incidents: list[tuple[AlertOutcome, Rule, float, dict, dict]] = []
    t = alert_state
    # A firing about to be posted is claimed (notified_at = this check's time) in the locked
    # transaction, so a concurrent check (cron beside the server's loop, a second server) sees it
    # as notified and posts nothing; a failed post releases the claim for the next check to retry.
    claim = now if webhook is not None else None
    with state.write_transaction() as conn:
        state.lock(conn, f"alerts:{deployment}")
        for rule in parsed:
            value, status, window = report.latest(rule.metric)
            row = conn.execute(select(t).where(t.c.deployment == deployment, t.c.rule == rule.text)).first()
            if value is None or window is None:
                out = AlertOutcome(rule.text, "no data", None, None, None, message=status)
                result.outcomes.append(out)
                if row is not None and row.firing:
                    # Nothing left to judge (traffic stopped, or its windows left the period): the
                    # alert resolves, so that the next firing is posted instead of deduplicated away.
                    payload = no_data_message(deployment, rule, status)
                    conn.execute(t.update().where(t.c.deployment == deployment, t.c.rule == rule.text)
                                 .values(firing=False, notified_at=None, message=payload["text"], updated_at=now))
                    if row.notified_at is not None:
                        posts.append((out, payload, True))
                    out.message = payload["text"]
                continue
            firing = rule.fires(value) and not (isinstance(value, float) and math.isnan(value))
            out = AlertOutcome(rule.text, "firing" if firing else "ok", value, window["start"], window["end"])
            result.outcomes.append(out)
            values = {"value": value, "window_start": window["start"], "updated_at": now}
            if firing:
                if row is None or not row.firing:
                    payload = message(deployment, rule, value, window)
                    values.update(firing=True, since=now, notified_at=claim, message=payload["text"])
                    posts.append((out, payload, False))
                    incidents.append((out, rule, value, window, payload))
                elif row.notified_at is None:
                    payload = message(deployment, rule, value, window)
                    values.update(notified_at=claim)
                    posts.append((out, payload, False))
                else:
                    out.notification = "suppressed (already notified)"
                out.message = values.get("message") or (row.message if row is not None else None)
            elif row is not None and row.firing:
                payload = message(deployment, rule, value, window, resolved=True)
                values.update(firing=False, notified_at=None, message=payload["text"])
                if row.notified_at is not None:
                    posts.append((out, payload, True))
                out.message = payload["text"]
            else:
                values.update(firing=False)
            if row is None:
                conn.execute(t.insert().values(deployment=deployment, rule=rule.text, **{"firing": False, **values}))
            else:
                conn.execute(t.update().where(t.c.deployment == deployment, t.c.rule == rule.text).values(**values))
    for out, rule, value, window, payload in incidents:  # the claims are committed
        if on_fire is None:
            break
        try:
            out.action = on_fire(deployment, rule, value, window)
        except Exception as exc:  # noqa: BLE001 - reported in the message, the alert is posted all the same
            problem = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            out.action = f"on-alert action failed: {problem}"[:300]
        if out.action:
            payload["text"] += f"\n{out.action}"
            payload["blocks"].append({"type": "section", "text": {"type": "mrkdwn", "text": out.action}})
    for out, payload, resolved in posts:  # outside the transaction: never hold the DB lock over HTTP
        if webhook is None:
            out.notification = "not sent (no webhook)"
            continue
        try:
            post_webhook(webhook, payload)
        except Exception as exc:  # noqa: BLE001 - reported, retried at the next check
            out.notification = f"failed: {type(exc).__name__}: {exc}"[:200]
            if not resolved:  # release the claim: the next check posts it again
                with state.write_transaction() as conn:
                    conn.execute(t.update().where(t.c.deployment == deployment, t.c.rule == out.rule,
                                                  t.c.notified_at == claim).values(notified_at=None))
            continue
        out.notification = "resolved sent" if resolved else "sent"
    report.alerts = result
    return result


def check_deployment(deployment: str, rules: Iterable[str | Rule] | str, *, webhook: str | None = None,
                     on_fire: OnFire | None = None, **monitor_options: Any):
    """``monitor(deployment, **monitor_options)`` then :func:`check` — what ``nbprod monitor --check``
    and the server's background loop (:mod:`.loop`) both run. Returns the report (``report.alerts``)."""
    from .monitor import monitor

    report = monitor(deployment, **monitor_options)
    check(report, rules, webhook=webhook, on_fire=on_fire)
    return report
