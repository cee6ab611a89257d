"""A deployment's alert settings: what a deploy call gives, what is recorded, what a server runs with.

The server's background loop (:mod:`nbprod.monitoring.loop`) checks the rules as
``nbprod monitor NAME --check`` does. The rules, interval and window are recorded in the
deployment's meta (``meta["alerts"]``), so a restart brings them back and a later deploy that
gives no alert settings keeps them. The webhook URL is a credential: it is never written to the
state DB, only handed to the server in its environment — ``AlertSettings(webhook=...)``, else
``NBPROD_ALERT_WEBHOOK`` of the process that starts the server (a deploy, or a restore). A server
started without one still checks its rules and records firings in ``alert_state`` without posting
them (``nbprod status`` says "no webhook"); the first check of a server that has one posts them.
A server reads its alert settings when it starts: new settings given to a running deployment are
recorded and apply when its server restarts (the card and ``nbprod status`` say so meanwhile).

Retraining from an alert (``on_alert``: rule → pipeline file, :mod:`nbprod.pipelines.trigger`) is
part of the recorded settings (``meta["alerts"]["on_alert"]``, the files' absolute paths), so a
restart, ``--restore`` or promote keeps it; each rule is checked by the loop beside ``rules`` and
its firing starts the pipeline once per incident. Rule and file are checked when they are given
(a deploy); a file that disappears later is reported when its rule fires, it never stops a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError, RuleError
from ..monitoring.alerts import parse_rules
from ..monitoring.loop import DEFAULT_INTERVAL_S, WEBHOOK_ENV, check_interval, check_webhook
from ..monitoring.loopsettings import starts_loop
from ..monitoring.windows import parse_duration
from ..pipelines import trigger

__all__ = ["AlertSettings", "given", "on_alert_pairs", "merge", "webhook_for", "served", "key", "view",
           "notes"]


@dataclass(frozen=True)
class AlertSettings:
    """The alert options of one deploy call; a field left as None keeps the recorded value.

    ``rules``: ``["p95_ms > 100", "drift_share > 0.3"]`` or one text separated by ``;`` (``[]``
    removes the recorded rules); ``webhook``: a Slack-compatible URL, never stored (default
    ``$NBPROD_ALERT_WEBHOOK``); ``interval``: seconds between checks or a duration such as
    ``"5m"`` (default 60); ``window``: the monitor window the rules are checked on (default ``"1h"``).
    """

    rules: Any = None
    webhook: str | None = None
    interval: Any = None
    window: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.rules, (list, set)):  # frozen means hashable: keep the rules as a tuple
            object.__setattr__(self, "rules", tuple(self.rules))

    @classmethod
    def of(cls, value: Any) -> "AlertSettings | None":
        """``value`` as AlertSettings: an instance, a mapping of its fields, or None."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(map(str, value)) - names)
            if unknown:
                raise RuleError(f"unknown alert setting(s) {', '.join(map(repr, unknown))}",
                                f"use {', '.join(sorted(names))}: alerts={{'rules': ['p95_ms > 100']}}")
            return cls(**value)
        raise RuleError(f"alerts must be AlertSettings or a dict, got {type(value).__name__}",
                        "pass e.g. alerts=AlertSettings(rules=['p95_ms > 100'], webhook=URL)")


def on_alert_pairs(on_alert: Any) -> dict[str, str]:
    """``on_alert`` of a deploy call checked: ``{canonical rule: absolute pipeline file}``. A bad
    rule is a RuleError, a missing or broken pipeline file a PipelineError naming its line
    (:func:`nbprod.pipelines.trigger.parse`); ``{}`` or ``[]`` removes the recorded ones."""
    if isinstance(on_alert, str) or not isinstance(on_alert, (Mapping, list, tuple)):
        raise ConfigError(f"on_alert must map alert rules to pipeline files, got {type(on_alert).__name__}",
                          "pass e.g. on_alert={'drift_share > 0.3': 'pipeline.yaml'} "
                          "(CLI: --on-alert 'drift_share > 0.3' pipeline.yaml)")
    return dict(trigger.parse(on_alert))


def given(settings: AlertSettings | None, on_alert: Any = None) -> dict:
    """This call's alert options, validated as the server's loop validates them (RuleError,
    ConfigError, PipelineError) before anything is resolved or started: ``{}`` when none were given.
    ``on_alert``: the rule → pipeline file pairs (:func:`on_alert_pairs`); None keeps the recorded ones."""
    out: dict = {}
    if on_alert is not None:
        out["on_alert"] = on_alert_pairs(on_alert)
    if settings is None:
        return out
    rules, webhook, interval, window = settings.rules, settings.webhook, settings.interval, settings.window
    if rules is None and webhook is None and interval is None and window is None:
        return out

    if rules is not None:
        if not isinstance(rules, (str, list, tuple, set)):
            raise RuleError(f"alert rules must be a list of rules, got {type(rules).__name__}",
                            "pass e.g. AlertSettings(rules=['p95_ms > 100', 'drift_share > 0.3'])")
        out["rules"] = [r.text for r in parse_rules(rules)]
    if interval is not None:
        out["interval_s"] = check_interval(interval)
    if window is not None:
        out["window"] = window.strip() if isinstance(window, str) else str(parse_duration(window))
        parse_duration(out["window"])
    if webhook is not None:
        out["webhook"] = check_webhook(webhook, "the alert webhook")
    return out


def merge(given: dict, recorded: dict | None) -> dict | None:
    """The alert settings after this call: ``recorded`` with the given options applied (an option
    left out keeps its recorded value). None: no rules and no on-alert pipelines, no alert loop."""
    base: dict = recorded if starts_loop(recorded) else {}
    rules = given.get("rules", base.get("rules", []))
    pipelines = given.get("on_alert", base.get("on_alert") or {})
    if not rules and not pipelines:
        extra = [k for k in ("webhook", "interval_s", "window") if k in given]
        if extra:
            raise RuleError("an alert webhook, interval or window was given without alert rules",
                            "add rules (AlertSettings(rules=['p95_ms > 100']), --alert-rule 'p95_ms > 100'), "
                            "or leave the alert options out")
        return None

    interval = given.get("interval_s", base.get("interval_s", DEFAULT_INTERVAL_S))
    window = str(given.get("window", base.get("window", "1h")))
    out = {"rules": list(rules), "interval_s": float(interval), "window": window}
    if pipelines:
        out["on_alert"] = dict(pipelines)
    return out


def webhook_for(given: str | None, *, strict: bool) -> str | None:
    """The webhook a server starts with: ``given``, else ``NBPROD_ALERT_WEBHOOK`` here. A bad
    variable is a ConfigError (``strict``, a deploy) or ignored (a restore: the loop runs, unposted)."""
    if given:
        return given
    url = os.environ.get(WEBHOOK_ENV) or None
    if url is None:
        return None
    try:
        return check_webhook(url, f"${WEBHOOK_ENV}")
    except ConfigError:
        if strict:
            raise
        return None


def served(alerts: dict | None, webhook: str | None) -> dict | None:
    """What a server is started with, for status: the settings and whether it has a webhook (never the URL)."""
    return {**alerts, "webhook": webhook is not None} if alerts else None


def key(alerts: dict | None) -> tuple | None:
    """What decides whether two recorded settings differ (None: no rules)."""
    if not starts_loop(alerts):
        return None
    return (tuple(alerts.get("rules") or ()), float(alerts["interval_s"]), str(alerts["window"]),
            tuple(sorted((alerts.get("on_alert") or {}).items())))


def view(meta: dict, *, running: bool = True) -> dict | None:
    """The alert settings shown on the card and in ``nbprod status`` (never the webhook URL)."""
    want, started = meta.get("alerts") or None, meta.get("alerts_server") or None
    pending = running and key(want) != key(started)
    if want is None and not pending:
        return None
    out: dict = {"rules": list((want or {}).get("rules", [])), "interval_s": (want or {}).get("interval_s"),
                  "window": (want or {}).get("window")}
    pipelines = (want or {}).get("on_alert")
    if pipelines:
        out["on_alert"] = dict(pipelines)  # rule -> pipeline file it starts
    if running:
        out["webhook"] = bool(started and started.get("webhook"))
        out["pending"] = pending
    return out


def notes(name: str, pid: int | None, meta: dict, alerts: dict | None, given: dict) -> list[str]:
    """What a running server does with alert options it was not started with: they wait for its restart."""
    out: list[str] = []
    restart = f"nbprod undeploy {name}, then deploy again (the recorded alert settings are kept)"
    if key(alerts) != key(meta.get("alerts_server")):
        out.append(f"new alert settings recorded; the running server (pid {pid}) checks the ones it started "
                   f"with until it restarts: {restart}")
    if "webhook" in given:
        out.append(f"the alert webhook was not applied: the running server (pid {pid}) keeps the webhook it started "
                   f"with (the URL is never stored); to change it: {restart}, with AlertSettings(webhook=...) "
                   "or NBPROD_ALERT_WEBHOOK")
    return out
