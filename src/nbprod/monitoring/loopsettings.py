"""A server's alert-loop settings as a deployment records and hands them over: the environment
variables the loop reads, and whether recorded settings start a loop at all.

Kept apart from :mod:`.loop` (which imports the checks, and with them SQLAlchemy) because three
readers ask the same question without running a check: a deployment's recorded settings
(:mod:`nbprod.deployments.alerting`), the environment of the server it starts
(:mod:`nbprod.deployments.process`) and its status text (:mod:`nbprod.deployments.results`, which
``import nbprod`` users load for every deploy result and must stay light).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ["starts_loop", "RULES_ENV", "WEBHOOK_ENV", "INTERVAL_ENV", "WINDOW_ENV", "PIPELINES_ENV",
           "DEFAULT_INTERVAL_S"]

RULES_ENV = "NBPROD_ALERT_RULES"
WEBHOOK_ENV = "NBPROD_ALERT_WEBHOOK"
INTERVAL_ENV = "NBPROD_ALERT_INTERVAL"
WINDOW_ENV = "NBPROD_ALERT_WINDOW"
PIPELINES_ENV = "NBPROD_ALERT_PIPELINES"
DEFAULT_INTERVAL_S = 60.0


def starts_loop(alerts: Mapping[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Do a deployment's recorded alert settings (``{"rules", "interval_s", "window", "on_alert"}``,
    a dict from JSON) start an alert loop on its server: alert rules, or rules whose firing starts a
    pipeline? (True also tells a type checker they are there.)"""
    return bool(alerts and (alerts.get("rules") or alerts.get("on_alert")))
