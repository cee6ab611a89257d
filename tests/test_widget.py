"""The live monitoring panel, headless: widget state, chart specs, live refresh and stop."""

from __future__ import annotations

import json
import time

import pytest
from _monitoring_helpers import hour_start, model, traffic


@pytest.fixture
def panel_data(nbprod_home):
    from nbprod.data.profile import profile

    start = hour_start(3)
    traffic("credit", start=start, hours=3, per_hour=300, batch=50, shift="income", shift_from=2,
            versions={2: "2"}, latency_ms=lambda h: 3.0 + 10 * h)
    return start, profile(model()[1])


def test_panel_tabs_and_chart_specs(panel_data):
    from nbprod.monitoring.widget import TABS, panel

    start, reference = panel_data
    p = panel("credit", since=start, reference=reference, rules=["p95_ms > 10"], interval=None)
    assert p.tabs.titles == TABS and len(p.tabs.children) == 4 and not p.live
    assert set(p.charts) == {"drift_scores", "distribution", "performance", "latency", "latency_histogram"}
    assert p.column.value == "income" and "income" in p.column.options  # the most drifted column first
    dist = p.charts["distribution"].to_dict()
    assert "income" in json.dumps(dist)
    perf = json.dumps(p.charts["performance"].to_dict())
    assert "first seen v2" in perf and "roc_auc" in perf
    bundle = p.out["latency"].outputs[0]["data"]
    assert any(k.startswith("application/vnd.vegalite") for k in bundle)
    assert "FIRING" in p.alerts_html.value or "firing" in p.alerts_html.value
    p.column.value = "age"
    assert "age" in json.dumps(p.charts["distribution"].to_dict())
    assert "application/vnd.jupyter.widget-view+json" in p._repr_mimebundle_()
    assert "credit" in str(p) and "<table>" in p._repr_html_()
    json.dumps(p.to_dict())


def test_panel_refreshes_live_and_stops(panel_data):
    from nbprod.monitoring.widget import panel

    start, reference = panel_data
    p = panel("credit", since=start, reference=reference, interval=0.05)
    try:
        assert p.live
        deadline = time.monotonic() + 60
        while p.refreshes < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.refreshes >= 3
    finally:
        p.stop()
    assert not p.live and "(not live)" in p.header.value
    n = p.refreshes
    time.sleep(0.2)
    assert p.refreshes == n  # stopped means stopped


def test_header_reads_live_from_the_first_drawing(panel_data):
    """The first refresh runs before the loop thread starts: it must not say "(not live)"."""
    from nbprod.monitoring.widget import panel

    start, reference = panel_data
    p = panel("credit", since=start, reference=reference, interval=3600)
    try:
        assert p.refreshes == 1 and "(live, every 3600 s)" in p.header.value
    finally:
        p.stop()
    assert "(not live)" in p.header.value


def test_a_failing_refresh_shows_the_error_and_keeps_running(nbprod_home):
    from nbprod.monitoring.widget import panel

    p = panel("ghost", interval=None)
    assert p.report is None and "no deployment" in p.header.value and "ghost" in str(p)


def test_magic_returns_the_panel(panel_data, monkeypatch):
    from nbprod import commands
    from nbprod.commands import Context, parse
    from nbprod.monitoring.widget import MonitorPanel

    if "monitoring" not in commands.MODULES:
        monkeypatch.setattr(commands, "MODULES", [*commands.MODULES, "monitoring"])
    start, reference = panel_data
    command, args = parse("%nbprod", ["monitor", "credit", "--since", "4h", "--interval", "0", "--reference", "ref"])
    result = command.run(args, Context(namespace={"ref": reference}, front_end="magic"))
    assert isinstance(result, MonitorPanel) and not result.live and result.report is not None


def _empty_datasets(spec: dict) -> list[str]:
    """Names of the datasets a Vega-Lite spec carries with no rows (inline data too)."""
    empty = [name for name, rows in (spec.get("datasets") or {}).items() if not rows]
    for layer in spec.get("layer", []) + spec.get("vconcat", []):
        empty += _empty_datasets(layer)
    values = (spec.get("data") or {}).get("values")
    return empty + (["inline"] if values == [] else [])


def test_no_chart_of_the_panel_carries_an_empty_layer(nbprod_home):
    """A deployment with no labelled rows yet: its performance chart has nothing to draw. An empty
    line layer made JupyterLab's Vega renderer loop forever (the page stopped answering after
    ``%nbprod monitor`` from the sidebar); the chart says there is nothing yet instead."""
    from nbprod.monitoring.widget import panel

    traffic("credit", start=hour_start(2), hours=2, per_hour=120, send_labels=False)
    p = panel("credit", since="3h", interval=None)
    assert p.report is not None and set(p.charts) >= {"performance", "latency", "latency_histogram"}
    for name, chart in p.charts.items():
        assert _empty_datasets(chart.to_dict()) == [], name
    assert "no window has score values yet" in json.dumps(p.charts["performance"].to_dict())


def test_the_drift_heat_map_of_a_period_without_tested_windows_is_a_note(nbprod_home):
    """Too few rows for any drift test: the heat map would be an empty layer (see above); it says so."""
    from nbprod import monitor
    from nbprod.monitoring import charts

    traffic("credit", start=hour_start(2), hours=1, per_hour=3, send_labels=False)
    report = monitor("credit", since="3h")
    assert report.drift_frame().query("status == 'ok'").empty
    spec = charts.features(report).to_dict()
    assert _empty_datasets(spec) == [] and "no window has enough rows" in json.dumps(spec)
