"""Every chart nbprod shows displays as a Vega-Lite 5 bundle, the one mimetype that JupyterLab 4.x,
Notebook 7 and VS Code all draw offline, and compiles with Vega-Lite 5 (tests/ui shows it drawn)."""

from __future__ import annotations

import json

import pytest
from _monitoring_helpers import hour_start, model, traffic
from _registry_helpers import module_home

from nbprod._charts import SCHEMA, VEGALITE_MIME, Chart, bundle, output

MONITOR_KINDS = ("performance", "latency", "latency_histogram", "drift", "features", "traffic", "overview")


@pytest.fixture(scope="module")
def charts(tmp_path_factory):
    """Every chart a user can be shown, by name: monitor report, drift report, evaluation, panel.
    Built once for the module (the two tests only read them): ~2-4 s of CPU each time."""
    from nbprod import state

    with module_home(tmp_path_factory, "charts"):
        yield _every_chart()
        state.dispose()


def _every_chart() -> dict:
    from nbprod.data.profile import profile
    from nbprod.driftstats.api import drift
    from nbprod.monitoring.monitor import monitor
    from nbprod.monitoring.widget import panel
    from nbprod.registry.evaluate import EvaluationResult, MetricRow

    start = hour_start(3)
    _, X = model()
    reference = profile(X)
    traffic("credit", start=start, hours=3, per_hour=200, batch=50, shift="income", shift_from=2, versions={2: "2"})
    report = monitor("credit", window="1h", since=start, reference=reference)
    found = {f"monitor {k}": report.chart(k) for k in MONITOR_KINDS}
    shifted = X.assign(income=X.income * 3)
    drifted = drift(reference, shifted)
    found["drift overview"] = drifted.chart()
    found["drift income"] = drifted.chart("income")
    found["drift employment"] = drifted.chart("employment")
    rows = [MetricRow("roc_auc", 0.8, 0.7, 0.1, "min_absolute_change=0", True, None)]
    found["evaluation"] = EvaluationResult("models:/c/2", "models:/c/1", "classification", 100, rows).chart()
    p = panel("credit", since=start, reference=reference, interval=None)
    found.update({f"panel {k}": c for k, c in p.charts.items()})
    found.update({f"panel output {k}": o for k, o in p.out.items()})
    return found


def test_every_chart_displays_as_vegalite_5(charts):
    for name, chart in charts.items():
        if name.startswith("panel output"):
            outputs = chart.outputs
            assert len(outputs) == 1 and outputs[0]["output_type"] == "display_data", name
            data = outputs[0]["data"]
        else:
            assert isinstance(chart, Chart), name
            data = chart._repr_mimebundle_()
        assert set(data) == {VEGALITE_MIME, "text/plain"}, name  # never v6: the front ends draw no v6
        assert data[VEGALITE_MIME]["$schema"] == SCHEMA, name
        assert "<Chart>" not in data["text/plain"] and "[chart: " in data["text/plain"], name


def test_every_chart_compiles_with_vegalite_5(charts):
    """Altair 6 writes v6 specs: nbprod's charts keep to what Vega-Lite 5 (the front ends' 5.6) reads."""
    vlc = pytest.importorskip("vl_convert", reason="vl-convert-python is a test extra")
    for name, chart in charts.items():
        spec = chart.outputs[0]["data"][VEGALITE_MIME] if name.startswith("panel output") else chart.to_dict()
        svg = vlc.vegalite_to_svg(spec, vl_version="5.8")
        assert svg.startswith("<svg") and "<path" in svg, name


def test_chart_passes_altair_through_and_stays_drawable():
    import altair as alt
    import pandas as pd

    raw = alt.Chart(pd.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_line().encode(x="x:Q", y="y:Q")
    chart = Chart(raw).properties(title="t", width=100)  # an Altair method: the result still draws
    assert isinstance(chart, Chart) and chart.altair.width == 100 and chart.mark == raw.mark
    assert bundle(chart)[VEGALITE_MIME]["title"] == "t" and "[chart: t " in bundle(chart)["text/plain"]
    assert output(raw)["data"][VEGALITE_MIME]["$schema"] == SCHEMA
    assert json.loads(chart.to_json())["$schema"] == SCHEMA
    assert (raw + raw).to_dict()["$schema"] != SCHEMA  # Altair's own objects stay Altair's
    from IPython.core.interactiveshell import InteractiveShell

    shown, _ = InteractiveShell.instance().display_formatter.format(chart)  # what a notebook cell gets
    assert set(shown) == {VEGALITE_MIME, "text/plain"}
    import copy

    assert copy.copy(chart).altair is raw or copy.copy(chart).to_dict() == chart.to_dict()


def test_evaluation_shows_its_table_then_its_chart():
    """One output per mimetype choice: in one bundle the front end would show the HTML table only."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from nbprod.registry.evaluate import EvaluationResult, MetricRow

    result = EvaluationResult("models:/c/2", "models:/c/1", "classification", 100,
                              [MetricRow("roc_auc", 0.8, 0.7, 0.1, "min_absolute_change=0", True, None)])
    shell = InteractiveShell.instance()
    with capture_output() as captured:
        shell.display_formatter.format(result)
    table, chart = (o.data for o in captured.outputs)
    assert {"text/html", "text/plain"} <= set(table) and VEGALITE_MIME not in table
    assert set(chart) == {VEGALITE_MIME} and chart[VEGALITE_MIME]["$schema"] == SCHEMA
