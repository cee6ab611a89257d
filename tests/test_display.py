"""What a user reads: one number format for counts and scores, every n/a with its reason, every
verdict with its thresholds, the audit table inside the page (issue 12, points 5 and 7)."""

from __future__ import annotations

import re

import pytest

from nbprod import _format


def test_one_count_format_and_one_score_format():
    assert _format.count(5000) == "5,000" and _format.rows(1000) == "1,000 rows" and _format.rows(1) == "1 row"
    assert _format.rows(3, "column") == "3 columns"
    assert [_format.score(v) for v in (0.3063, 0.03338, 0.333, 1 / 3)] == ["0.3063", "0.0334", "0.3330", "0.3333"]
    assert _format.score(None) == _format.score(float("nan")) == "–"
    assert _format.signed_score(0) == "+0.0000" and _format.number(2.5e7) == "25,000,000"
    assert _format.truncate("x" * 10, 5) == "xxxx…"


def test_registry_and_data_tables_share_the_number_format():
    from nbprod.data import _render
    from nbprod.registry import _html

    assert _render.fmt(1000) == _html.fmt(1000) == "1,000"
    assert _render.fmt(0.123456) == _html.fmt(0.123456) == "0.1235"
    assert _render.fmt(None) == _html.fmt(None) == "–"


def _counts_without_separators(text: str) -> list[str]:
    return re.findall(r"(?<![\d.,:\-#v/])\d{4,}(?![\d.,:\-])", text)


def test_profile_and_validation_write_counts_with_separators():
    import nbprod
    from nbprod.datasets import credit

    X, _ = credit(3500)
    prof = nbprod.profile(X[["age", "income", "country"]])
    head = prof._headline()
    assert "3,500 rows × 3 columns" in head and "sample of 1,000 rows" in head
    assert not _counts_without_separators(head.split(";")[0]), head
    report = nbprod.validate(X[["age", "income", "country"]], against=prof)
    assert "3,500 rows × 3 columns" in str(report)


def test_monitor_report_explains_every_n_a_the_star_and_its_threshold():
    from nbprod.monitoring.report import MonitorReport

    def window(start, partial, roc):
        metrics = {"requests": (1200.0, "ok"), "error_rate": (0.0, "ok"), "p95_ms": (3.2, "ok"),
                   "drift_share": (1 / 3, "ok"), "prediction_drift": (0.0, "ok"), "feedback_rows": (1500.0, "ok"),
                   "roc_auc": roc, "accuracy": (0.8612345, "ok")}
        return {"start": start, "end": start + 3600, "partial": partial, "versions": {"1": 1200}, "metrics": metrics}

    report = MonitorReport(
        deployment="credit", window_s=3600, since=0, until=7000, task="classification",
        windows=[window(0, False, (None, "n/a: the model returns labels, not scores")),
                 window(3600, True, (None, "not enough data: one class only in the window"))],
        drift_share_threshold=0.5)
    text, html = str(report), report._repr_html_()
    for shown in (text, html):
        assert "the model returns labels, not scores" in shown and "one class only in the window" in shown
        assert "window still in progress" in shown          # the * has a legend, in HTML too
        assert "dataset drift when it is ≥ 0.5" in shown   # the drift share's own threshold
        assert "0.3333" in shown and "0.8612" in shown and "1,200" in shown and "1,500" in shown
    assert "n/a [1]" in text and "[1] roc_auc: the model returns labels, not scores" in text


def test_drift_headline_names_the_share_and_its_threshold():
    import nbprod
    from nbprod.datasets import credit

    X, _ = credit(2000)
    cur, _ = credit(1500, seed=3, shift="income")
    report = nbprod.drift(nbprod.profile(X), cur)
    head = report._headline()
    assert re.search(r"drift share \d\.\d{4}; dataset drift when it is ≥ 0\.5", head), head
    assert "2,000 rows" in head and "1,500 rows" in head


def test_audit_html_keeps_long_details_inside_the_page(nbprod_home):
    from nbprod import audit

    note = "a long note " * 40
    audit.record("alias", model_uri="models:/credit-risk/1", details={"note": note.strip()})
    html = audit.history()._repr_html_()
    assert "max-width:32em" in html and "white-space:normal" in html
    assert f"title='note={note.strip()}'" in html  # the whole text on hover


@pytest.mark.slow
def test_evaluation_names_what_it_gated_and_hints_at_class_imbalance(nbprod_home):
    import warnings

    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import nbprod
    from nbprod.datasets import credit

    X, y = credit(800)
    cols = ["age", "income"]
    pre = make_column_transformer((make_pipeline(SimpleImputer(), StandardScaler()), cols))
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(X[cols], y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbprod.register(model, "credit-risk", X[cols], y, alias="champion")
        nbprod.register(model, "credit-risk", X[cols], y, alias="challenger")
    result = nbprod.evaluate("credit-risk@challenger", X[cols], y, thresholds={"accuracy": {"threshold": 0.5}})
    text = str(result)
    assert text.startswith("PASSED (gated on accuracy)") and "800 rows" in text
    assert "not gated" in text
    assert re.search(r"recall \d\.\d{4} \(candidate\)", text) and "of the rows" in text
    assert "rebalance (class_weight=" in result._repr_html_()
    ungated = nbprod.evaluate("credit-risk@challenger", X[cols], y)
    assert "nothing gated" in str(ungated)
    negatives = y == 0
    one_class = nbprod.evaluate("credit-risk@challenger", X.loc[negatives, cols], y[negatives])
    assert one_class["roc_auc"].candidate is None
    assert "roc_auc: n/a: only one class in y" in str(one_class)


def test_a_prediction_answer_displays_as_a_table_and_stays_the_dict():
    import json

    from nbprod.deployments.prediction import PredictionResult

    answer = {"predictions": [0, 1, 0], "model_version": "2", "prediction_ids": ["p-0", "p-1", "p-2"],
              "ood": [[], ["country: unseen category 'PL'"], []]}
    result = PredictionResult(answer, deployment="credit")
    assert result["predictions"] == [0, 1, 0] and result.to_dict() == answer
    assert json.loads(json.dumps(result)) == answer
    text, html = str(result), result._repr_html_()
    assert text.startswith("credit: 3 predictions by model version 2; 1 row out of distribution")
    assert "p-1" in text and "unseen category 'PL'" in text and "{'predictions'" not in repr(result)
    assert "<table>" in html and "p-2" in html and "unseen category" in html
    from IPython.lib.pretty import pretty

    assert pretty(result) == text


@pytest.mark.slow
def test_deployment_predict_returns_the_displayable_answer(nbprod_home):
    import warnings

    from conftest import kill_recorded_servers
    from sklearn.linear_model import LogisticRegression

    import nbprod
    from nbprod.datasets import credit
    from nbprod.deployments.prediction import PredictionResult

    X, y = credit(300)
    cols = ["age", "credit_lines"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbprod.register(LogisticRegression(max_iter=500).fit(X[cols], y), "credit-risk", X[cols], y, alias="champion")
    try:
        service = nbprod.deploy("credit-risk@champion", name="credit")
        answer = service.predict(X[cols].head(4))
        assert isinstance(answer, PredictionResult) and isinstance(answer, dict)
        assert len(answer["predictions"]) == 4 and answer.model_version == "1"
        assert "4 predictions by model version 1" in str(answer) and "<table>" in answer._repr_html_()
        nbprod.undeploy("credit")
    finally:
        kill_recorded_servers()
