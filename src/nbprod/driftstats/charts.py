"""Pictures of a drift report: Altair charts for notebooks, plain HTML/CSS for the saved report.

Both draw only what the report holds (scores and per-bin shares), never raw rows. The saved HTML
uses no scripts and no network: bars are sized ``<div>`` elements, so the file opens anywhere and
stays a few tens of kilobytes. The Altair charts come back as ``nbprod._charts.Chart``, which
draws as Vega-Lite 5 in JupyterLab, Notebook 7 and VS Code (``.altair`` is the Altair object).
"""

from __future__ import annotations

import math
from html import escape

import altair as alt
import pandas as pd

from .._charts import Chart, wrap
from .report import _num

__all__ = ["distribution_chart", "scores_chart", "overview_chart", "html_document"]


def _distribution_rows(col) -> list[dict]:
    d = col.distribution or {}
    rows = []
    if d.get("type") == "numeric":
        edges = d["edges"]
        for side in ("reference", "current"):
            for i, share in enumerate(d[side]):
                rows.append({"side": side, "start": edges[i], "end": edges[i + 1], "share": share})
    elif d.get("type") == "categorical":
        for side in ("reference", "current"):
            for label, share in zip(d["labels"], d[side], strict=False):
                rows.append({"side": side, "value": label, "share": share})
    return rows


def distribution_chart(col) -> Chart:
    """Reference vs current distribution of one column (overlaid bars per bin or category)."""
    rows = _distribution_rows(col)
    title = f"{col.column}: {col.test or 'not tested'}" + (" — drifted" if col.drifted else "")
    colors = alt.Scale(domain=["reference", "current"], range=["#7f8c8d", "#e67e22"])
    if not rows:
        return wrap(alt.Chart(pd.DataFrame({"x": []})).mark_text().properties(title=f"{col.column}: no data"))
    frame = pd.DataFrame(rows)
    share = alt.Tooltip("share", format=".3f")
    if "start" in frame:
        chart = alt.Chart(frame, title=title).mark_bar(opacity=0.55, binSpacing=0).encode(
            # y2 at 0: with x and x2 both set, a bar without y2 is drawn as a thin line at its share
            x=alt.X("start:Q", title=col.column), x2="end:Q",
            y=alt.Y("share:Q", stack=None, title="share"), y2=alt.datum(0),
            color=alt.Color("side:N", scale=colors), tooltip=["side", "start", "end", share])
    else:
        chart = alt.Chart(frame, title=title).mark_bar().encode(
            x=alt.X("value:N", sort="-y", title=col.column), xOffset="side:N", y=alt.Y("share:Q", title="share"),
            color=alt.Color("side:N", scale=colors), tooltip=["side", "value", share])
    return wrap(chart.properties(width=320, height=160))


def scores_chart(report) -> Chart:
    """One bar per tested column: its score, with the threshold as a tick; drifted bars in red."""
    rows = [{"column": c.column, "score": c.score, "threshold": c.threshold, "test": c.test,
             "kind": c.score_name, "drifted": c.drifted}
            for c in report.columns if c.status == "ok" and c.score is not None and math.isfinite(c.score)]
    empty = {"column": "", "score": 0.0, "threshold": 0.0, "test": "", "kind": "", "drifted": False}
    frame = pd.DataFrame(rows or [empty])
    base = alt.Chart(frame)
    bars = base.mark_bar().encode(
        y=alt.Y("column:N", sort="-x", title=None), x=alt.X("score:Q", title="score (p-value or distance)"),
        color=alt.Color("drifted:N", scale=alt.Scale(domain=[False, True], range=["#95a5a6", "#c0392b"])),
        tooltip=["column", "test", "kind", alt.Tooltip("score", format=".4g"), "threshold", "drifted"],
    )
    ticks = base.mark_tick(color="black", thickness=2).encode(y="column:N", x="threshold:Q")
    return wrap((bars + ticks).properties(title="Drift scores", width=320))


def overview_chart(report) -> Chart:
    ranked = sorted((c for c in report.columns if c.status == "ok"), key=lambda c: (not c.drifted, c.column))[:4]
    parts = [distribution_chart(c).altair for c in ranked]
    rows = [alt.hconcat(*parts[i:i + 2]) for i in range(0, len(parts), 2)]
    return wrap(alt.vconcat(scores_chart(report).altair, *rows))


def _bars_html(col) -> str:
    d = col.distribution or {}
    if d.get("type") == "numeric":
        edges = d["edges"]
        labels = [f"{edges[i]:.4g}" for i in range(len(edges) - 1)]
    elif d.get("type") == "categorical":
        labels = d["labels"]
    else:
        return "<p>no distribution</p>"
    top = max([*d["reference"], *d["current"], 1e-12])
    cells = []
    for label, r, c in zip(labels, d["reference"], d["current"], strict=False):
        cells.append(
            f"<tr><td class=l>{escape(str(label))}</td><td><div class=r style='width:{160 * r / top:.1f}px'></div>"
            f"<div class=c style='width:{160 * c / top:.1f}px'></div></td><td class=n>{r:.3f} / {c:.3f}</td></tr>")
    return "<table class=bars>" + "".join(cells) + "</table>"


def html_document(report) -> str:
    """The whole report as one HTML page with inline CSS and no scripts."""
    rows = "".join(
        f"<tr class={'d' if c.drifted else ''}><td>{escape(c.column)}</td><td>{escape(c.role)}</td>"
        f"<td>{escape(c.kind)}</td><td>{escape(c.test or '-')}</td>"
        f"<td>{'-' if c.score is None else escape(str(_num(c.score)))}</td>"
        f"<td>{c.threshold if c.threshold is not None else '-'}</td>"
        f"<td>{'YES' if c.drifted else 'no' if c.status == 'ok' else '-'}</td><td>{escape(c.status)}</td>"
        f"<td>{escape(c.reason or ('exact' if c.exact else 'approx.: ' + c.method))}</td></tr>"
        for c in report.columns)
    sections = "".join(
        f"<div class=col><h3>{escape(c.column)} — {escape(c.test or c.status)}"
        f"{' — drifted' if c.drifted else ''}</h3>{_bars_html(c)}</div>"
        for c in report.columns if c.status == "ok")
    extra = "".join(f"<p>{escape(line)}</p>" for line in report._notes())
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}"
        "tr.d td{color:#b00020;font-weight:bold}.col{display:inline-block;vertical-align:top;margin:1em}"
        ".r{background:#7f8c8d;height:6px}.c{background:#e67e22;height:6px;margin-top:1px}"
        ".bars td{font-size:11px;padding:0 4px}.n{color:#555}.legend span{padding:0 6px}")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>nbprod drift report</title>"
        f"<style>{style}</style></head><body><h1>Drift report</h1><p><b>{escape(report._headline())}</b></p>"
        "<table><thead><tr><th>column</th><th>role</th><th>kind</th><th>test</th><th>score</th><th>threshold</th>"
        f"<th>drifted</th><th>status</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>{extra}"
        "<h2>Distributions</h2><p class=legend><span style='background:#7f8c8d;color:white'>reference</span>"
        f"<span style='background:#e67e22'>current</span> (share per bin or category)</p>{sections}</body></html>")
