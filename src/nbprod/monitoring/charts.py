"""Altair charts of a MonitorReport: metrics over time with the deployment's version changes marked.

Only windows where a metric has a value are drawn (a gap means "not enough data", never a zero).
Version changes are dashed vertical rules labelled with the action and version. Times are in UTC on
every axis and tooltip, whatever the browser's time zone. Every function
returns a ``nbprod._charts.Chart``, which draws as Vega-Lite 5 in JupyterLab, Notebook 7 and VS
Code (``.altair`` is the Altair object).
"""

from __future__ import annotations

from functools import wraps

import altair as alt
import pandas as pd

from .._charts import wrap

__all__ = ["performance", "latency", "latency_histogram", "drift", "features", "traffic", "overview", "metric_lines"]

_WIDTH, _HEIGHT = 520, 160


def _shown(make):
    """Return what ``make`` draws as a Chart that every notebook front end renders."""
    @wraps(make)
    def shown(*args, **kwargs):
        return wrap(make(*args, **kwargs))

    return shown


def _time_x(field: str, domain: list | None = None) -> alt.X:
    """A time axis in UTC, as its title says. Vega-Lite draws times in the browser's time zone unless its
    scale says otherwise: a user east or west of UTC read local times under "window (UTC)"."""
    scale = alt.Scale(type="utc") if domain is None else alt.Scale(type="utc", domain=domain)
    return alt.X(f"{field}:T", title="window (UTC)", scale=scale)


def _time_tip(field: str) -> alt.Tooltip:
    """A time in a tooltip, in UTC and to the second (the browser's zone otherwise, see :func:`_time_x`)."""
    return alt.Tooltip(f"{field}:T", title=f"{field} (UTC)", format="%Y-%m-%d %H:%M:%S", formatType="utc")


def _end(report) -> float:
    """Where the time axis ends: the end of the last window, which is still filling (its point, drawn at its
    middle, fell past ``until`` and outside the chart)."""
    return max([report.until] + [w["start"] + report.window_s for w in report.windows[-1:]])


def _points(report, metrics: tuple[str, ...]):
    rows = []
    for w in report.windows:
        for m in metrics:
            value, status = w["metrics"].get(m, (None, "n/a"))
            if value is not None and (status == "ok" or status.startswith("ok ")):
                rows.append({"time": pd.Timestamp(w["start"] + report.window_s / 2, unit="s", tz="UTC"),
                             "metric": m, "value": float(value)})
    return pd.DataFrame(rows, columns=["time", "metric", "value"])


#: Label lines a run of close changes steps down through (11 px each, within the chart's height) before it wraps.
_LINES = 12


def _change_lines(times: list[float], span: float) -> list[int]:
    """The label line of each change (``times`` in order): a change within a tenth of the period of the one
    before it goes one line lower, any other starts again at the top. The labels of close changes (deploy,
    canary, promote, rollback in one minute) then neither overprint each other nor run into the legend;
    four fixed lines overprinted the fifth change's label on the first's (the quickstart has five)."""
    lines: list[int] = []
    for i, ts in enumerate(times):
        close = i > 0 and ts - times[i - 1] < span / 10
        lines.append((lines[-1] + 1) % _LINES if close else 0)
    return lines


def _changes(report):
    changes = sorted(report.version_changes, key=lambda c: c["ts"])
    lines = _change_lines([c["ts"] for c in changes], report.until - report.since)
    rows = [{"time": pd.Timestamp(c["ts"], unit="s", tz="UTC"), "label": c["label"], "line": 8 + 11 * line}
            for c, line in zip(changes, lines, strict=True)]
    frame = pd.DataFrame(rows, columns=["time", "label", "line"])
    base = alt.Chart(frame)
    rules = base.mark_rule(strokeDash=[4, 3], color="#555").encode(x=_time_x("time"),
                                                                    tooltip=["label", _time_tip("time")])
    text = base.mark_text(align="right", dx=-3, fontSize=9, color="#555").encode(
        x=_time_x("time"), y=alt.Y("line:Q", scale=None, axis=None), text="label:N")
    return rules + text


def _nothing_yet(report, title: str, what: str):
    """The chart of a metric with no value in the period: a line saying so, and the version changes.

    Never a layer of empty data: JupyterLab's Vega renderer loops forever on an empty line layer
    (the page stops answering; tests/ui/test_sidebar.py's monitor test caught it on a deployment
    with no labelled rows yet)."""
    note = alt.Chart(pd.DataFrame([{"note": f"no window has {what} yet"}])).mark_text(
        color="#888", fontSize=12).encode(text="note:N")
    layers = [note] + ([_changes(report)] if report.version_changes else [])
    return alt.layer(*layers).properties(title=title, width=_WIDTH, height=_HEIGHT)


@_shown
def metric_lines(report, metrics: tuple[str, ...], title: str, y_title: str):
    frame = _points(report, metrics)
    if frame.empty:
        return _nothing_yet(report, title, f"{y_title} values")
    lines = alt.Chart(frame).mark_line(point=True).encode(
        x=_time_x("time", domain=[report.since * 1000, _end(report) * 1000]),
        y=alt.Y("value:Q", title=y_title), color=alt.Color("metric:N", title=None),
        tooltip=["metric", _time_tip("time"), alt.Tooltip("value:Q", format=".4g")])
    changes = [_changes(report)] if report.version_changes else []  # no empty layer (see _nothing_yet)
    return alt.layer(lines, *changes).properties(title=title, width=_WIDTH, height=_HEIGHT)


@_shown
def performance(report):
    names = report.performance_metrics
    title = "Realised performance (labelled rows)" + ("" if report.task == "classification" else " — error")
    return metric_lines(report, names, title, "score" if report.task == "classification" else "error")


@_shown
def latency(report):
    return metric_lines(report, ("p50_ms", "p95_ms", "p99_ms"), "Latency per window", "ms")


@_shown
def traffic(report):
    return metric_lines(report, ("request_rate",), "Requests per second", "req/s")


@_shown
def drift(report):
    return metric_lines(report, ("drift_share", "prediction_drift_score", "error_rate", "ood_rate"),
                        "Drift and errors per window", "share / score")


@_shown
def latency_histogram(report):
    h = report.latency_ms or {}
    edges, counts = h.get("edges") or [], h.get("counts") or []
    frame = pd.DataFrame([{"start": edges[i], "end": edges[i + 1], "requests": counts[i]} for i in range(len(counts))],
                         columns=["start", "end", "requests"])
    if frame.empty:  # no empty layer on a log scale either (see _nothing_yet)
        note = alt.Chart(pd.DataFrame([{"note": "no request latencies logged in this period"}])).mark_text(
            color="#888", fontSize=12).encode(text="note:N")
        return note.properties(title="Latency histogram (whole period)", width=_WIDTH, height=_HEIGHT)
    return alt.Chart(frame).mark_bar(color="#2c7fb8").encode(
        x=alt.X("start:Q", scale=alt.Scale(type="log"), title="latency (ms, log scale)"), x2="end:Q",
        y=alt.Y("requests:Q", title="requests"), tooltip=["start", "end", "requests"],
    ).properties(title="Latency histogram (whole period)", width=_WIDTH, height=_HEIGHT)


@_shown
def features(report):
    """A heat map: one row per input column, one cell per window, coloured by drifted."""
    frame = report.drift_frame()
    frame = frame[frame.status == "ok"]
    if frame.empty:  # a window too small to test, or no traffic: a note, never an empty layer (see _nothing_yet)
        note = alt.Chart(pd.DataFrame([{"note": "no window has enough rows for a drift test yet"}])).mark_text(
            color="#888", fontSize=12).encode(text="note:N")
        return note.properties(title="Input drift per column", width=_WIDTH, height=_HEIGHT)
    return alt.Chart(frame).mark_rect().encode(
        x=_time_x("window_start"), y=alt.Y("column:N", title=None),
        color=alt.Color("drifted:N", scale=alt.Scale(domain=[False, True], range=["#d9d9d9", "#c0392b"])),
        tooltip=["column", _time_tip("window_start"), "test", alt.Tooltip("score:Q", format=".4g"), "threshold",
                 "drifted"],
    ).properties(title="Input drift per column", width=_WIDTH)


@_shown
def overview(report):
    parts = (make(report).altair for make in (performance, latency, drift, features))
    return alt.vconcat(*parts).resolve_scale(color="independent")
