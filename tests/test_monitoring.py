"""nbprod.monitor: windows of the prediction log → drift, realised performance, health, version changes."""

from __future__ import annotations

import json
import math

import pytest
from _monitoring_helpers import hour_start, model, traffic

from nbprod.errors import ConfigError, DeploymentError
from nbprod.monitoring.monitor import monitor

pytestmark = pytest.mark.slow  # trains models and writes hours of traffic: seconds per test


@pytest.fixture(scope="module")
def training_profile():
    from nbprod.data.profile import profile

    _, X = model()
    return profile(X)


def _values(report, metric):
    return [w["metrics"][metric] for w in report.windows]


def test_monitor_windows_drift_performance_and_health(db_url, training_profile):
    from nbprod import audit

    start = hour_start(6)
    traffic("credit", start=start, hours=6, per_hour=1000, batch=50, shift="income", shift_from=3,
            versions={3: "2", 4: "2", 5: "2"}, latency_ms=lambda h: 2.0 + h, errors_per_hour=2)
    audit.record("deploy", model_uri="models:/credit/2",  # a canary: its chart label names the canary, not v1
                 details={"deployment": "credit", "generation": 2,
                          "routes": [{"version": "1", "role": "stable", "weight": 80, "uri": "models:/credit/1"},
                                     {"version": "2", "role": "canary", "weight": 20, "uri": "models:/credit/2"}]})
    audit.record("promote", model_uri="models:/credit/2",
                 details={"deployment": "credit", "generation": 2, "from": "1", "to": "2",
                          "routes": [{"version": "2", "role": "stable", "weight": 100, "uri": "models:/credit/2"}]})
    audit.record("undeploy", details={"deployment": "credit"})  # names no version
    report = monitor("credit", window="1h", since=start, reference=training_profile)
    active = [w for w in report.windows if w["metrics"]["requests"][0]]
    assert len(active) == 6 and report.task == "classification"
    first, last = active[0]["metrics"], active[-1]["metrics"]
    assert first["requests"] == (22.0, "ok") and first["rows"] == (1000.0, "ok")
    assert first["error_rate"][0] == pytest.approx(2 / 22) and first["server_error_rate"][0] == pytest.approx(1 / 22)
    assert first["p50_ms"][0] == pytest.approx(2.0, abs=1.01) and last["p99_ms"][0] == pytest.approx(7.0)
    # input drift against the training profile: income moves in the shifted windows only
    drifted = [r.drifted_columns if r is not None else None for r in report.drift_reports if r is not None]
    assert all("income" not in d for d in drifted[:3]) and all("income" in d for d in drifted[3:])
    assert last["drift_share"][1] == "ok" and last["drift_share"][0] > first["drift_share"][0]
    # realised performance on the labels that arrived, prediction drift against the first window
    assert 0.7 < first["accuracy"][0] <= 1 and 0.6 < first["roc_auc"][0] <= 1 and first["f1"][1] == "ok"
    assert first["prediction_drift"] == (None, "reference window") and last["prediction_drift"][1] == "ok"
    assert first["feedback_rate"] == (1.0, "ok")
    # version changes: the audit's promote and the log's first sight of v2
    sources = {(c["source"], c["action"], c["version"]) for c in report.version_changes}
    assert ("audit", "promote", "2") in sources and ("log", "first seen", "2") in sources
    assert "canary v2 20%" in [c["label"] for c in report.version_changes]
    assert "canary v2 20%\n" in str(report) + "\n"  # said once: the routes were its detail too
    assert active[3]["versions"] == {"2": 1000}
    # displays and exports: never a NaN presented as a number
    text = str(report)
    assert "credit" in text and "promote v2" in text and "<table>" in report._repr_html_()
    assert ": undeploy\n" in text + "\n" and "vNone" not in text + report._repr_html_()
    assert "≥ 0.5 (nbprod.monitor's drift_share=0.5)" in text  # it read "(drift_share=)"
    json.dumps(report.to_dict(), allow_nan=False)
    frame = report.to_frame()
    assert set(frame.columns) >= {"window_start", "metric", "value", "status"}
    bad = frame[(frame.status != "ok") & frame.value.notna()]
    assert bad.empty
    assert report.latest("p95_ms")[0] == pytest.approx(7.0)
    assert set(report.drift_frame().column) >= {"income", "age"}


def test_small_windows_say_not_enough_data(nbprod_home, training_profile):
    start = hour_start(3)
    traffic("credit", start=start, hours=1, per_hour=10, batch=5)  # 10 rows, 2 requests
    report = monitor("credit", window="1h", since=start, reference=training_profile)
    m = report.windows[0]["metrics"]
    for metric in ("drift_share", "accuracy", "roc_auc", "prediction_drift", "p95_ms", "error_rate", "label_drift"):
        assert m[metric] == (None, "not enough data"), metric
    assert m["requests"] == (2.0, "ok")
    empty = report.windows[1]["metrics"]
    assert empty["requests"] == (0.0, "ok") and empty["accuracy"][0] is None
    assert "not enough data" in str(report)
    assert all(v is None or not math.isnan(v) for v in report.to_frame().value)
    assert report.latest("accuracy") == (None, "not enough data", None)


def test_concept_drift_shows_as_falling_accuracy_with_stable_inputs(nbprod_home, training_profile):
    start = hour_start(4)
    traffic("credit", start=start, hours=4, per_hour=400, batch=50, shift="concept", shift_from=2)
    report = monitor("credit", window="1h", since=start, reference=training_profile)
    acc = [v for v, s in _values(report, "accuracy") if s == "ok"]
    assert len(acc) == 4 and max(acc[2:]) < min(acc[:2])
    label = [v for v, s in _values(report, "label_drift") if s == "ok"]
    assert label and label[-1] == 1.0  # the default rate rose: label drift against the first window


def test_reference_defaults_to_the_serving_versions_training_profile(nbprod_home, training_profile, tmp_path):
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    model_dir = tmp_path / "model"
    (model_dir / "nbprod").mkdir(parents=True)
    (model_dir / "nbprod" / "profile.json").write_text(training_profile.to_json(), encoding="utf-8")
    save_spec("credit", DeploymentSpec("credit", [Route("models:/credit/1", "1", 100, "stable", path=str(model_dir))]))
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=100, shift="income", shift_from=0)
    report = monitor("credit", window="1h", since=start)
    assert report.drift_reports[0] is not None and "income" in report.drift_reports[0].drifted_columns
    # a version without a profile is said so, not skipped silently
    traffic("credit", start=start + 3600, hours=1, per_hour=100, version="7", seed=9)
    later = monitor("credit", window="1h", since=start)
    assert later.windows[1]["metrics"]["drift_share"][1].startswith("no reference")


@pytest.mark.parametrize(("shift", "moved", "still"), [("income", "prediction_drift", "label_drift"),
                                                      ("label", "label_drift", "prediction_drift")])
def test_prediction_and_label_drift_against_the_training_outputs(nbprod_home, training_profile, tmp_path,
                                                                 shift, moved, still):
    """A shift present from the period's first window on is seen: the baseline is what the model
    answered on its training data and the training labels, not the first window."""
    from _monitoring_helpers import model

    from nbprod.datasets import credit
    from nbprod.registry.outputs import outputs_profile
    from nbprod.serving.spec import DeploymentSpec, Route, save_spec

    pipe, X = model()
    _, y = credit(len(X), 0)
    model_dir = tmp_path / "model"
    (model_dir / "nbprod").mkdir(parents=True)
    (model_dir / "nbprod" / "profile.json").write_text(training_profile.to_json(), encoding="utf-8")
    (model_dir / "nbprod" / "outputs.json").write_text(outputs_profile(pipe.predict_proba, X, y).to_json())
    save_spec("credit", DeploymentSpec("credit", [Route("models:/credit/1", "1", 100, "stable", path=str(model_dir))]))
    start = hour_start(3)
    traffic("credit", start=start, hours=2, per_hour=400, batch=50, shift=shift, shift_from=0)
    report = monitor("credit", window="1h", since=start, until=start + 7200)
    assert [w["metrics"][moved] for w in report.windows] == [(1.0, "ok"), (1.0, "ok")]
    assert [w["metrics"][still] for w in report.windows] == [(0.0, "ok"), (0.0, "ok")]
    # without training outputs (an MLflow directory registered as it is), the first window is the baseline
    (model_dir / "nbprod" / "outputs.json").unlink()
    fallback = monitor("credit", window="1h", since=start, until=start + 7200)
    assert fallback.windows[0]["metrics"][moved] == (None, "reference window")


def test_regression_metrics(nbprod_home):
    import numpy as np

    from nbprod.monitoring.feedback import feedback
    from nbprod.monitoring.predlog import log_rows

    rng = np.random.default_rng(0)
    start = hour_start(1)  # the last whole hour: the 60 rows in one window, whenever the test runs
    y = rng.normal(100, 10, 60)
    pred = y + rng.normal(0, 2, 60)
    log_rows("prices", [("prediction", start + i, {"request_id": f"p{i}", "version": "1", "role": "stable", "n": 1,
                                                        "inputs": {"x": np.array([float(i)])},
                                                        "predictions": np.array([pred[i]]),
                                                        "ood": None, "latency_ms": 1.0}) for i in range(60)])
    feedback([f"p{i}-0" for i in range(60)], y)
    report = monitor("prices", window="1h", since=start, until=start + 3600, reference=None)
    assert report.task == "regression"
    mae, status, _ = report.latest("mae")
    assert status == "ok" and mae == pytest.approx(np.abs(pred - y).mean())
    assert report.latest("rmse")[0] == pytest.approx(float(np.sqrt(((pred - y) ** 2).mean())))


def test_bad_arguments_are_explained(nbprod_home):
    with pytest.raises(DeploymentError, match="no deployment"):
        monitor("ghost")
    traffic("credit", start=hour_start(1), hours=1, per_hour=10, send_labels=False)
    with pytest.raises(ConfigError, match="duration"):
        monitor("credit", window="soon")
    with pytest.raises(ConfigError, match="not a time"):
        monitor("credit", since="yesterday-ish")
    with pytest.raises(ConfigError, match="too many"):
        monitor("credit", window="1s", since="-30d")


def test_charts_mark_version_changes(nbprod_home, training_profile):
    start = hour_start(3)
    traffic("credit", start=start, hours=3, per_hour=60, versions={2: "2"})
    report = monitor("credit", window="1h", since=start, reference=training_profile)
    for kind in ("performance", "latency", "latency_histogram", "drift", "features", "traffic", "overview"):
        spec = report.chart(kind).to_dict()
        assert "$schema" in spec
    perf = report.chart("performance").to_dict()
    layers = json.dumps(perf)
    assert "first seen v2" in layers and "accuracy" in layers
    # every time is drawn in UTC, as the axes say, not in the browser's zone (tests/ui run in Asia/Kolkata)
    times = [(channel, enc) for kind in ("overview", "performance") for channel, enc
             in _encodings(report.chart(kind).to_dict()) if enc.get("type") == "temporal"]
    assert {"x", "tooltip"} <= {channel for channel, _ in times}
    for channel, enc in times:
        assert enc.get("scale", {}).get("type") == "utc" if channel == "x" else enc.get("formatType") == "utc", enc
    with pytest.raises(Exception, match="unknown chart"):
        report.chart("pie")


def test_the_time_axis_holds_the_window_still_filling():
    """A window's point is drawn at its middle; the axis ended at ``until``, so the point of the last window,
    still filling, fell outside the chart (the quickstart's panel: at its right edge, past the last rule)."""
    from types import SimpleNamespace

    from nbprod.monitoring.charts import _end

    report = SimpleNamespace(since=0.0, until=130.0, window_s=60.0,
                             windows=[{"start": 0.0}, {"start": 60.0}, {"start": 120.0}])
    assert _end(report) == 180.0 > 120.0 + 30.0
    assert _end(SimpleNamespace(since=0.0, until=130.0, window_s=60.0, windows=[])) == 130.0


def _encodings(spec):
    """``(channel, encoding)`` of every mark of a Vega-Lite spec, layers and concatenations included."""
    if isinstance(spec, dict):
        for channel, enc in (spec.get("encoding") or {}).items():
            for one in enc if isinstance(enc, list) else [enc]:
                yield channel, one
        for value in spec.values():
            if isinstance(value, (dict, list)):
                yield from _encodings(value)
    elif isinstance(spec, list):
        for item in spec:
            yield from _encodings(item)


def test_close_version_changes_get_a_label_line_each():
    """The labels of changes close in time step down a line each (the quickstart's five changes in a minute:
    four fixed lines overprinted the fifth label on the first); a change far from the one before starts at the
    top again, and a long run wraps rather than leave the chart."""
    from nbprod.monitoring.charts import _LINES, _change_lines

    minute = [0, 5, 12, 30, 50]  # deploy, canary (first seen), promote, rollback, deploy again: one minute
    assert _change_lines(minute, span=1200) == [0, 1, 2, 3, 4]
    assert _change_lines([0, 600, 605, 1190], span=1200) == [0, 0, 1, 0]
    assert _change_lines(list(range(_LINES + 2)), span=1200) == [*range(_LINES), 0, 1]
    assert _change_lines([], span=0) == []


def test_cli_monitor_and_feedback(nbprod_home, tmp_path, capsys):
    import pandas as pd

    from nbprod.cli import main

    start = hour_start(2)
    out = traffic("credit", start=start, hours=1, per_hour=40, send_labels=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"prediction_id": out["ids"][:30] + ["missing-0"],
                  "label": out["labels"][:30] + [1]}).to_csv(labels, index=False)
    assert main(["feedback", str(labels)]) == 1  # one unknown id: reported, exit 1
    assert "1 unknown" in capsys.readouterr().out
    assert main(["feedback", "--id", out["ids"][30], "--label", "1"]) == 0
    assert main(["monitor", "credit", "--since", "3h", "--min-rows", "10"]) == 0
    printed = capsys.readouterr().out
    assert "credit:" in printed and "window (UTC)" in printed


def test_reference_columns_missing_from_the_logged_inputs_are_reported(db_url, training_profile):
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=200, batch=20, drop_inputs=("income",), send_labels=False)
    report = monitor("credit", window="1h", since=start, reference=training_profile)
    rep = report.last_drift
    row = rep["income"]
    assert row.status == "not tested" and row.reason.startswith("not in the logged inputs") and row.score is None
    assert row.kind == "numeric" and "income" in rep.not_enough_data and "income" not in rep.drifted_columns
    assert any("income" in n and "not in the logged inputs" in n for n in report.notes)
    assert "income" in str(report) and report.latest("drift_share")[1] == "ok"
    assert set(report.drift_frame().column) >= {"income", "age"}
    json.dumps(report.to_dict(), allow_nan=False)


def test_a_logged_boolean_input_with_nulls_is_still_tested(nbprod_home):
    import numpy as np
    import pandas as pd

    from nbprod.monitoring.predlog import log_rows

    start = hour_start(2)
    flags = [True, None, False] * 20  # JSON true / null / false: an object column once read back
    log_rows("credit", [("prediction", start + i, {"request_id": f"r{i}", "version": "1", "n": 1,
                                                   "inputs": {"b": [flags[i]], "x": np.array([float(i)])},
                                                   "predictions": np.array([0.0]), "latency_ms": 2.0})
                        for i in range(60)])
    reference = pd.DataFrame({"b": [True, False] * 300, "x": np.arange(600.0) % 60})
    report = monitor("credit", window="1h", since=start, reference=reference)
    assert report.latest("drift_share")[1] == "ok"
    row = report.last_drift["b"]
    assert row.status == "ok" and row.nulls_current == 20 and not row.drifted


def test_monitor_passes_min_rows_to_the_drift_engine(nbprod_home, training_profile):
    start = hour_start(2)
    traffic("credit", start=start, hours=1, per_hour=20, batch=5, send_labels=False)
    report = monitor("credit", window="1h", since=start, reference=training_profile, min_rows=10)
    assert report.latest("drift_share")[1] == "ok" and report.last_drift.tested
