"""``MonitorReport``: the windows of one ``monitor()`` call — tidy frame, charts, text and HTML.

Every metric of every window is a ``(value, status)`` pair: ``status == "ok"`` means the value is
a real score; anything else ("not enough data", "no feedback yet", "reference window", "n/a: …")
says why there is no value, and the value is None. Displays print the status, never a NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import _format
from .._display import Display, Lines, Table, View
from ..errors import DriftError
from .windows import iso

__all__ = ["MonitorReport", "METRICS"]

METRICS = ("requests", "rows", "request_rate", "errors", "error_rate", "server_error_rate", "ood_rate",
           "p50_ms", "p95_ms", "p99_ms", "drift_share", "n_drifted", "dataset_drift", "prediction_drift",
           "prediction_drift_score", "label_drift", "label_drift_score", "feedback_rows", "feedback_rate",
           "accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")


COUNTS = ("requests", "rows", "errors", "feedback_rows", "n_drifted")


def _fmt(value: float | None, status: str, metric: str) -> str:
    """A metric's cell: its value in the one number format (nbprod._format), or its status."""
    if status != "ok" and not status.startswith("ok ") or value is None:
        return "—" if status in ("reference window",) else status.split(":")[0]
    if metric.endswith("_ms"):
        return f"{value:.1f}"
    if metric in COUNTS:
        return _format.count(value)
    if metric in ("dataset_drift", "prediction_drift", "label_drift"):
        return "YES" if value else "no"
    if metric.endswith("_rate") and metric != "request_rate":
        return f"{value:.1%}"
    if metric == "request_rate":
        return _format.number(value)
    return _format.score(value)


def _why(status: str) -> str | None:
    """The reason a status gives after its first ``:``, if it has one ("n/a: not a binary task")."""
    head, sep, reason = status.partition(":")
    return reason.strip() if sep and head.strip() not in ("ok",) and reason.strip() else None


@dataclass(repr=False)
class MonitorReport(Display):
    """Drift, realised performance and health of one deployment, window by window."""

    deployment: str
    window_s: float
    since: float
    until: float
    task: str
    windows: list[dict]
    drift_reports: list = field(default_factory=list, repr=False)
    version_changes: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    latency_ms: dict = field(default_factory=dict, repr=False)
    reference: str = ""
    min_rows: int = 30
    alerts: Any = None  # an AlertCheck when rules were evaluated
    #: the share of drifted input columns from which a window counts as dataset drift (monitor's drift_share=)
    drift_share_threshold: float = 0.5

    # -- numbers -----------------------------------------------------------------------------
    @property
    def performance_metrics(self) -> tuple[str, ...]:
        if self.task == "classification":
            return ("accuracy", "precision", "recall", "f1", "roc_auc")
        return ("mae", "rmse")

    def latest(self, metric: str) -> tuple[float | None, str, dict | None]:
        """(value, status, window) of the most recent window where ``metric`` has a value."""
        if metric not in METRICS:
            raise DriftError(f"unknown metric {metric!r}", f"use one of: {', '.join(METRICS)}")
        last_status = NOT_SEEN = "no window in the period"
        for w in reversed(self.windows):
            value, status = w["metrics"].get(metric, (None, "n/a"))
            if value is not None and (status == "ok" or status.startswith("ok ")):
                return value, status, w
            if last_status == NOT_SEEN:
                last_status = status
        return None, last_status, None

    @property
    def last_drift(self):
        """The DriftReport of the most recent window where input drift was computed (or None)."""
        return next((r for r in reversed(self.drift_reports) if r is not None), None)

    @property
    def ok(self) -> bool:
        """False when alert rules were evaluated and at least one fires."""
        return self.alerts is None or self.alerts.ok

    def to_frame(self):
        """Tidy: one row per (window, metric) with ``value`` (None unless status is ok) and ``status``."""
        import pandas as pd

        rows = []
        for w in self.windows:
            for metric, (value, status) in w["metrics"].items():
                rows.append({"window_start": pd.Timestamp(w["start"], unit="s", tz="UTC"),
                             "window_end": pd.Timestamp(w["end"], unit="s", tz="UTC"), "metric": metric,
                             "value": value, "status": status, "partial": w["partial"],
                             "versions": ",".join(sorted(w["versions"]))})
        frame = pd.DataFrame(rows, columns=["window_start", "window_end", "metric", "value", "status", "partial",
                                            "versions"])
        frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
        return frame

    @property
    def frame(self):
        return self.to_frame()

    def wide(self):
        """One row per window, one column per metric (None where there is no value)."""
        import pandas as pd

        rows = []
        for w in self.windows:
            row = {"window_start": pd.Timestamp(w["start"], unit="s", tz="UTC"), "partial": w["partial"],
                   "versions": ",".join(sorted(w["versions"]))}
            row.update({m: v for m, (v, _s) in w["metrics"].items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def drift_frame(self):
        """One row per (window, column): the drift engine's result for that window."""
        import pandas as pd

        rows = []
        # A report built without drift (drift_reports left empty) has fewer reports than windows.
        for w, rep in zip(self.windows, self.drift_reports, strict=False):
            if rep is None:
                continue
            for c in rep.columns:
                rows.append({"window_start": pd.Timestamp(w["start"], unit="s", tz="UTC"), "column": c.column,
                             "test": c.test, "score": c.score, "threshold": c.threshold, "drifted": c.drifted,
                             "status": c.status})
        return pd.DataFrame(rows, columns=["window_start", "column", "test", "score", "threshold", "drifted", "status"])

    def to_dict(self) -> dict:
        return {
            "deployment": self.deployment, "window_s": self.window_s,
            "since": iso(self.since), "until": iso(self.until),
            "task": self.task, "reference": self.reference, "min_rows": self.min_rows, "notes": list(self.notes),
            "version_changes": [{**c, "time": iso(c["ts"])} for c in self.version_changes],
            "windows": [{"start": iso(w["start"]), "end": iso(w["end"]), "partial": w["partial"],
                         "versions": w["versions"],
                         "metrics": {m: {"value": v, "status": s} for m, (v, s) in w["metrics"].items()},
                         "drifted_columns": r.drifted_columns if r is not None else None}
                        for w, r in zip(self.windows, self.drift_reports, strict=False)],
            "latency_histogram": self.latency_ms,
            "alerts": None if self.alerts is None else self.alerts.to_dict(),
        }

    # -- displays ---------------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        perf = ["roc_auc", "accuracy"] if self.task == "classification" else ["mae", "rmse"]
        return ["requests", "error_rate", "p95_ms", "drift_share", "prediction_drift", "feedback_rows", *perf]

    def _shown(self, limit: int | None = None) -> list[dict]:
        shown = [w for w in self.windows if w["metrics"]["requests"][0]] or self.windows[-1:]
        return shown if limit is None else shown[-limit:]

    def _table(self, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
        cols = self._columns()
        header = ["window (UTC)", "versions", *cols]
        rows = []
        reasons = self._reasons(limit)
        for w in self._shown(limit):
            label = iso(w["start"])[:-1] + ("*" if w["partial"] else "")
            cells = []
            for c in cols:
                value, status = w["metrics"].get(c, (None, "n/a"))
                text = _fmt(value, status, c)
                why = _why(status) if value is None else None
                if why is not None:
                    text += f" [{reasons[(c, why)]}]"
                cells.append(text)
            rows.append([label, ",".join(sorted(w["versions"])) or "-", *cells])
        return header, rows

    def _reasons(self, limit: int | None = None) -> dict[tuple[str, str], int]:
        """Every (metric, reason) a shown cell has no value for, numbered for the footnotes."""
        found: dict[tuple[str, str], int] = {}
        for w in self._shown(limit):
            for c in self._columns():
                value, status = w["metrics"].get(c, (None, "n/a"))
                why = _why(status) if value is None else None
                if why is not None and (c, why) not in found:
                    found[(c, why)] = len(found) + 1
        return found

    def legend(self, limit: int | None = None) -> list[str]:
        """What the table's marks and thresholds mean: the footnotes of every value-less cell, the
        ``*`` window, ``not enough data``, and the drift share's threshold (alert rules name theirs)."""
        lines = [f"[{k}] {metric}: {why}" for (metric, why), k in self._reasons(limit).items()]
        shown = self._shown(limit)
        if any(w["partial"] for w in shown):
            lines.append("* window still in progress: its figures will change")
        statuses = {w["metrics"].get(c, (None, ""))[1] for w in shown for c in self._columns()}
        if any(s.startswith("not enough data") for s in statuses):
            lines.append(f"not enough data: fewer than {_format.rows(self.min_rows)} in the window (min_rows)")
        if "no feedback yet" in statuses:
            lines.append("no feedback yet: no labels joined to the window's predictions (nbprod.feedback)")
        lines.append(f"drift_share: the share of input columns that drifted; a window is dataset drift when it is ≥ "
                     f"{_format.number(self.drift_share_threshold)} (nbprod.monitor's "
                     f"drift_share={_format.number(self.drift_share_threshold)})"
                     + ("; alert rules compare it with their own threshold" if self.alerts is not None else ""))
        return lines

    def _headline(self) -> str:
        n_active = sum(1 for w in self.windows if w["metrics"]["requests"][0])
        text = (f"{self.deployment}: {_format.count(len(self.windows))} window(s) of {_duration(self.window_s)} "
                f"from {iso(self.since)} to {iso(self.until)}, {_format.count(n_active)} with traffic; "
                f"task {self.task}")
        return text

    #: Windows a notebook shows (the latest); a terminal prints them all.
    SHOWN_WINDOWS = 24

    def _view(self) -> View:
        header, rows = self._table()
        changes = [f"{iso(c['ts'])}: {c['label']} {c['detail']}".rstrip() for c in self.version_changes]
        return View(self._headline(), [
            Table(header, rows, limit=self.SHOWN_WINDOWS, tail=True, all_in_text=True,
                  more="earlier windows (to_dict() and chart() have them all)"),
            Lines(self.legend()),
            Lines(changes, style="list", title="Version changes:") if changes else None,
            Lines([f"note: {n}" for n in self.notes]),
            self.alerts,
        ])

    # -- charts -----------------------------------------------------------------------------
    def chart(self, kind: str = "overview"):
        """Altair charts: ``performance``, ``latency``, ``latency_histogram``, ``drift``,
        ``features`` (per-column drift over windows), ``traffic``, or ``overview`` (all stacked)."""
        from . import charts

        makers = {"performance": charts.performance, "latency": charts.latency,
                  "latency_histogram": charts.latency_histogram,
                  "drift": charts.drift, "features": charts.features, "traffic": charts.traffic,
                  "overview": charts.overview}
        if kind not in makers:
            raise DriftError(f"unknown chart {kind!r}", f"use one of: {', '.join(makers)}")
        return makers[kind](self)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and math.isclose(seconds % size, 0, abs_tol=1e-9):
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
