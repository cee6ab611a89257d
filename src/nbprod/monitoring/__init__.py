"""Monitoring: the prediction and feedback log, drift and performance over time, alerts, the panel.

Modules, one job each: ``predlog`` (tables + the server's background writer), ``feedback``
(late ground truth), ``http`` (``POST /feedback``), ``windows`` (durations, aligned windows),
``performance`` (realised metrics), ``monitor`` (the windows of a deployment → ``MonitorReport``),
``report`` / ``charts`` (its displays), ``alerts`` (rules, webhook, dedup), ``loop`` (the server's
background alert loop: ``alerts`` every N seconds), ``widget`` (the live panel), ``summary`` (one
deployment's recent figures and alert states for glance views). The training-time
prediction/label baseline the monitor compares with is written at registration by
:mod:`nbprod.registry.outputs`.

Importing this package loads nothing heavy; each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["monitor", "MonitorReport", "feedback", "FeedbackResult", "PredictionLog", "parse_rule", "Rule",
           "check", "AlertCheck", "MonitorPanel", "panel",
           "health", "HealthSummary"]

_WHERE = {"monitor": "monitor", "MonitorReport": "report", "feedback": "feedback", "FeedbackResult": "feedback",
          "PredictionLog": "predlog", "parse_rule": "alerts", "Rule": "alerts", "check": "alerts",
          "AlertCheck": "alerts", "MonitorPanel": "widget", "panel": "widget",
          "health": "summary", "HealthSummary": "summary"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nbprod.monitoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
