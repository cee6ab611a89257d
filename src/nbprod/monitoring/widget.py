"""The live monitoring panel (``%nbprod monitor credit`` in a notebook): ipywidgets tabs of Altair charts.

Tabs: **Drift** (per-feature scores of the latest window, and a distribution overlay of the column
picked in a dropdown), **Performance** (realised metrics over time, version changes marked),
**Latency** (p50/p95/p99 over time and a histogram), **Alerts** (the rules' states).

Charts go into ``Output`` widgets as Vega-Lite 5 mime bundles (``outputs`` set directly, through
``nbprod._charts.output``), so they render in JupyterLab/Notebook 7/VS Code with no network, can
be set from a thread, and are testable headless: ``panel.charts[name].to_dict()`` is the spec,
``panel.tabs`` the widget state.

Live refresh runs in a daemon thread that sleeps ``interval`` seconds between refreshes, so the
kernel stays free; ``panel.stop()`` ends it (and is safe to call twice).
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import Any

import ipywidgets as w

from .._charts import output
from .._display import Display, View
from ..driftstats.charts import scores_chart
from .alerts import evaluate, parse_rule
from .monitor import monitor

__all__ = ["MonitorPanel", "panel", "TABS"]

TABS = ("Drift", "Performance", "Latency", "Alerts")


class MonitorPanel(Display):
    """A live panel for one deployment. ``refresh()`` recomputes now; ``stop()`` ends the live loop."""

    def __init__(self, deployment: str, *, window: Any = "1h", since: Any = None, rules: list[str] | None = None,
                 interval: float | None = 30.0, **monitor_options: Any) -> None:
        self.deployment = deployment
        self.window = window
        self.since = since
        self.rules = [parse_rule(r) for r in (rules or [])]
        self.interval = interval
        self.monitor_options = monitor_options
        self.report: Any = None  # the latest MonitorReport
        self.alerts: Any = None  # the latest AlertCheck, when rules are given
        self.error: str | None = None
        self.refreshes = 0
        self.charts: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.header = w.HTML()
        self.drift_table = w.HTML()
        self.column = w.Dropdown(description="column", options=[])
        self.out = {name: w.Output() for name in ("drift_scores", "distribution", "performance", "latency",
                                                   "latency_histogram")}
        self.alerts_html = w.HTML()
        drift_tab = w.VBox([self.drift_table, self.out["drift_scores"], self.column, self.out["distribution"]])
        perf_tab = w.VBox([self.out["performance"]])
        latency_tab = w.VBox([self.out["latency"], self.out["latency_histogram"]])
        alerts_tab = w.VBox([self.alerts_html])
        self.tabs = w.Tab(children=[drift_tab, perf_tab, latency_tab, alerts_tab])
        self.tabs.titles = TABS
        self.widget = w.VBox([self.header, self.tabs])
        self.column.observe(self._column_changed, names="value")
        self.refresh()
        if interval:
            self.start()

    # -- data -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute the report and redraw every tab (errors are shown in the header, never raised)."""
        with self._lock:
            try:
                report = monitor(self.deployment, window=self.window, since=self.since, **self.monitor_options)
                self.alerts = evaluate(report, self.rules) if self.rules else None
                self.report = report
                self.error = None
            except Exception as exc:  # noqa: BLE001 - a live panel keeps running through a bad refresh
                self.error = f"{type(exc).__name__}: {exc}"
            self.refreshes += 1
            self._draw()

    def _draw(self) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.report is None:
            error = escape(self.error or "")
            self.header.value = f"<b>{escape(self.deployment)}</b>: <span style='color:#b00020'>{error}</span>"
            return
        r = self.report
        # Live from the first drawing on: the first refresh runs before the loop thread starts.
        live = f"live, every {self.interval:g} s" if self.interval and not self._stop.is_set() else "not live"
        err = f" — <span style='color:#b00020'>last refresh failed: {escape(self.error)}</span>" if self.error else ""
        self.header.value = f"<b>{escape(r._headline())}</b><br><small>refreshed {stamp} ({live}){err}</small>"
        last = r.last_drift
        if last is not None:
            self.drift_table.value = last._repr_html_()
            self.charts["drift_scores"] = scores_chart(last)
            ranked = sorted((c for c in last.columns if c.status == "ok"),
                            key=lambda c: (not c.drifted, -(c.statistic or 0), c.column))
            names = [c.column for c in ranked]
            if list(self.column.options) != names:
                keep = self.column.value if self.column.value in names else (names[0] if names else None)
                self.column.options = names
                self.column.value = keep
            self._draw_distribution()
        else:
            self.drift_table.value = "<p><i>No window with enough data for input drift yet.</i></p>"
        self.charts["performance"] = r.chart("performance")
        self.charts["latency"] = r.chart("latency")
        self.charts["latency_histogram"] = r.chart("latency_histogram")
        for name, chart in self.charts.items():
            if name in self.out and name != "distribution":
                self.out[name].outputs = (output(chart),)
        if self.alerts is not None:
            self.alerts_html.value = self.alerts._repr_html_()
        else:
            self.alerts_html.value = "<p><i>No alert rules: pass rules=['p95_ms > 100', …] (or --rule).</i></p>"

    def _draw_distribution(self) -> None:
        last = self.report.last_drift if self.report is not None else None
        if last is None or not self.column.value:
            return
        self.charts["distribution"] = last.chart(self.column.value)
        self.out["distribution"].outputs = (output(self.charts["distribution"]),)

    def _column_changed(self, change) -> None:
        self._draw_distribution()

    # -- the live loop ------------------------------------------------------------------------------
    def start(self) -> "MonitorPanel":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"nbprod-panel-{self.deployment}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self, timeout: float = 30.0) -> None:
        """End the live refresh (waits for a refresh in progress to finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.report is not None:
            self._draw()

    @property
    def live(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    # -- display --------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        """The widget (its tabs of charts): a notebook draws this, not the base's HTML."""
        return self.widget._repr_mimebundle_(**kwargs)

    def _view(self) -> View:
        """Text and HTML where no widget is drawn (a terminal, a log, nbconvert): the report's."""
        if self.report is not None:
            return self.report._view()
        return View(f"monitor {self.deployment}: {self.error}", tone="bad")

    def to_dict(self) -> dict:
        return {"deployment": self.deployment, "live": self.live, "refreshes": self.refreshes, "error": self.error,
                "report": None if self.report is None else self.report.to_dict(),
                "charts": {k: v.to_dict() for k, v in self.charts.items()}}

    @property
    def ok(self) -> bool:
        return self.alerts is None or self.alerts.ok


def panel(deployment: str, **options: Any) -> MonitorPanel:
    """``nbprod.monitoring.panel("credit", window="1h", rules=[...], interval=30)``."""
    return MonitorPanel(deployment, **options)
