"""``health(name)``: one deployment's recent figures and alert states in one call, for glance views.

The JupyterLab sidebar (and ``nbprod status`` with ``health=True``) shows, per deployment, the
p95 latency, error rate, whether the inputs drift and which alert rules fire. Those come from two
places: the prediction log through :func:`~nbprod.monitoring.monitor` over the last ``window``,
and the ``alert_state`` table that the server's alert loop (or ``nbprod monitor --check``) keeps.
This module reads both and never evaluates a rule itself: a glance must not post a webhook or
change an alert's state.

A figure without enough data says so (``status``), never a number: the same ``(value, status)``
convention as :class:`~nbprod.monitoring.report.MonitorReport`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbprodError

__all__ = ["HealthSummary", "health"]

_FIGURES = ("requests", "error_rate", "p95_ms", "drift_share", "dataset_drift")


@dataclass
class HealthSummary:
    """Recent health of one deployment: ``figures[metric] = {"value", "status"}``, plus alert states.

    ``drift`` is ``"drift"`` when the latest window with enough rows drifted, ``"no drift"`` when it
    did not, else why there is no verdict ("not enough data", …). ``alerts``: one entry per rule
    recorded in ``alert_state`` (``rule``, ``firing``, ``since``, ``value``, ``message``).
    """

    deployment: str
    window: str
    figures: dict[str, dict[str, Any]]
    drift: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    @property
    def firing(self) -> list[str]:
        return [a["rule"] for a in self.alerts if a["firing"]]

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "window": self.window, "figures": self.figures, "drift": self.drift,
                "alerts": list(self.alerts), "firing": self.firing, "note": self.note}

    def __str__(self) -> str:
        p95 = self.figures.get("p95_ms", {})
        p95_text = f"{p95['value']:.1f} ms" if p95.get("value") is not None else p95.get("status", "–")
        firing = ", ".join(self.firing) or "none"
        return f"{self.deployment} (last {self.window}): p95 {p95_text}, drift {self.drift}, firing alerts: {firing}"


def _alert_rows(name: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from .alerts import _ensure, alert_state
    from .windows import iso

    t = alert_state
    with _ensure().connect() as conn:
        rows = conn.execute(select(t).where(t.c.deployment == name).order_by(t.c.rule)).all()
    return [{"rule": r.rule, "firing": bool(r.firing), "since": iso(r.since) if r.firing and r.since else None,
             "value": r.value, "message": r.message} for r in rows]


def health(name: str, *, window: str = "1h") -> HealthSummary:
    """The latest p95, error rate, requests and input drift of ``name`` over ``window``, and its alert states.

    A deployment that has logged nothing yet answers "no predictions logged yet" for every figure
    rather than raising: the glance views show every deployment, also a fresh one.
    """
    from .monitor import monitor
    from .windows import parse_duration

    span = parse_duration(window)
    alerts = _alert_rows(name)
    try:
        report = monitor(name, window=window, since=time.time() - span)
    except NbprodError as exc:
        empty = {m: {"value": None, "status": "no predictions logged yet"} for m in _FIGURES}
        return HealthSummary(name, window, empty, "no predictions logged yet", alerts, note=exc.problem)
    figures = {}
    for metric in _FIGURES:
        value, status, _ = report.latest(metric)
        figures[metric] = {"value": value, "status": status}
    verdict = figures["dataset_drift"]
    drift = verdict["status"] if verdict["value"] is None else ("drift" if verdict["value"] else "no drift")
    return HealthSummary(name, window, figures, drift, alerts, note="; ".join(report.notes) or None)
