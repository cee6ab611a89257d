"""Champion/challenger evaluation on a real MLflow store."""

from __future__ import annotations

import json

import pytest
from _registry_helpers import module_home, pipeline

from nbprod.errors import EvaluationError, EvaluationFailed


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with module_home(tmp_path_factory, "evaluate") as h:
        yield h


@pytest.fixture(scope="module")
def split():
    from nbprod.datasets import credit

    X, y = credit(1500, seed=3)
    return (X[:1000], y[:1000]), (X[1000:].reset_index(drop=True), y[1000:].reset_index(drop=True))


@pytest.fixture(scope="module")
def versions(home, split):
    """v1: a weak model, no alias yet; v2: a good one."""
    from nbprod.registry import register

    (X, y), _ = split
    weak = pipeline(X[["age", "country"]], y)
    v1 = register(weak, "credit", X[["age", "country"]], y)
    v2 = register(pipeline(X, y), "credit", X, y, alias="challenger")
    return v1, v2


def test_without_champion_only_absolute_thresholds_count(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    result = evaluate("credit@challenger", X, y, thresholds={"roc_auc": {"min_absolute_change": 0.0},
                                                              "accuracy": {"threshold": 0.5}})
    assert result.ok and result.passed and result.champion_uri is None and result.task == "classification"
    assert {r.metric for r in result.rows} == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    auc = result["roc_auc"]
    assert auc.champion is None and auc.passed is None and "no champion" in auc.note
    assert result["accuracy"].passed is True
    assert "no champion" in str(result) and "<table" in result._repr_html_()
    assert result.raise_for_failure() is result


def test_with_champion_compares_on_the_same_data_and_stores_the_result(versions, split):
    from nbprod import audit
    from nbprod.registry import evaluate, get_version, set_alias
    from nbprod.registry.store import client

    _, (X, y) = split
    set_alias("credit/1", "champion")  # the weak model is the champion
    result = evaluate("credit@challenger", X, y, thresholds={"roc_auc": {"min_absolute_change": 0.01}})
    assert result.champion_uri == "models:/credit/1" and result.ok
    auc = result["roc_auc"]
    assert auc.candidate > auc.champion and auc.change == pytest.approx(auc.candidate - auc.champion)
    stored = get_version("credit/2").evaluation
    assert stored["ok"] is True and stored["against"] == "models:/credit/1"
    assert stored["metrics"]["roc_auc"] == pytest.approx(auc.candidate)
    c = client()
    files = [f.path for f in c.list_artifacts(versions[1].run_id, "nbprod-evaluations")]
    assert files and json.loads(c.download_artifacts(versions[1].run_id, files[-1]) and
                                open(c.download_artifacts(versions[1].run_id, files[-1])).read())["ok"] is True
    assert "evaluate" in [e.action for e in audit.history("credit")]
    # The evaluation artefact lives outside model/: the manifest still verifies.
    from nbprod.registry import load_model

    assert load_model("credit@challenger").metadata["verified"]
    bundle = result._repr_mimebundle_()
    assert "application/vnd.vegalite.v5+json" in bundle and "text/html" in bundle
    assert result.chart().to_dict()["mark"]["type"] == "bar"


def test_failing_thresholds_raise_evaluation_failed(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    # The weak champion against the good model: it must lose on roc_auc.
    result = evaluate("credit/1", X, y, against="credit/2",
                      thresholds={"roc_auc": {"min_absolute_change": 0.0}, "accuracy": {"threshold": 0.99},
                                  "f1": {"min_relative_change": 0.0}})
    assert not result.ok and {r.metric for r in result.failures} >= {"roc_auc", "accuracy"}
    assert "FAIL" in str(result)
    with pytest.raises(EvaluationFailed) as err:
        result.raise_for_failure()
    assert err.value.result is result and "roc_auc" in err.value.problem
    assert result.to_dict()["ok"] is False


def test_unknown_alias_other_than_champion_is_an_error_and_writes_nothing(versions, split):
    """Only a missing @champion means "first model, nothing to beat"; a typo must not silently turn
    change-based thresholds into skipped ones."""
    from nbprod import audit
    from nbprod.errors import ModelNotFoundError
    from nbprod.registry import evaluate, get_version
    from nbprod.registry.store import client

    _, (X, y) = split
    c = client()

    def evaluations():
        return [f.path for f in c.list_artifacts(versions[1].run_id, "nbprod-evaluations")]

    rows, tag, files = len(audit.history("credit")), get_version("credit/2").tags.get("nbprod.evaluation"), evaluations()
    with pytest.raises(ModelNotFoundError) as err:
        evaluate("credit@challenger", X, y, against="@champoin", thresholds={"roc_auc": {"min_absolute_change": 0.0}})
    assert "@champoin" in err.value.problem and "@challenger" in err.value.problem  # names it, lists what exists
    assert "against=None" in err.value.fix and "credit/1" in err.value.fix
    assert len(audit.history("credit")) == rows and audit.verify().ok
    assert get_version("credit/2").tags.get("nbprod.evaluation") == tag and evaluations() == files


def test_regression_metrics_and_lower_is_better(nbprod_home):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression, Ridge

    from nbprod.registry import evaluate, register

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(2 * X["a"] - X["b"] + rng.normal(scale=0.1, size=300), name="target")
    register(Ridge(alpha=500).fit(X, y), "reg", X, y, alias="champion")
    register(LinearRegression().fit(X, y), "reg", X, y)
    result = evaluate("reg/2", X, y, thresholds={"rmse": {"min_relative_change": 0.1}, "r2": {"threshold": 0.9}})
    assert result.task == "regression" and [r.metric for r in result.rows] == ["mae", "rmse", "r2"]
    assert result["rmse"].change < 0 and result["rmse"].passed and result.ok
    worse = evaluate("reg/1", X, y, against="reg/2", thresholds={"mae": {"min_absolute_change": 0}})
    assert worse["mae"].passed is False


def test_bad_evaluation_requests(versions, split):
    from nbprod.errors import ModelNotFoundError
    from nbprod.registry import evaluate, parse_thresholds

    _, (X, y) = split
    with pytest.raises(EvaluationError, match="not computed"):
        evaluate("credit/2", X, y, thresholds={"rmse": {"threshold": 1}})
    with pytest.raises(EvaluationError, match="unknown threshold key"):
        evaluate("credit/2", X, y, thresholds={"accuracy": {"minimum": 1}})
    with pytest.raises(EvaluationError, match="rows but y has"):
        evaluate("credit/2", X, y[:5])
    with pytest.raises(ModelNotFoundError):
        evaluate("credit@nope", X, y)
    with pytest.raises(ModelNotFoundError):
        evaluate("credit/2", X, y, against="credit/77")
    assert parse_thresholds(["roc_auc:min_absolute_change=0", "accuracy=0.8", "rmse:threshold=2,greater_is_better=false"]) == {
        "roc_auc": {"min_absolute_change": "0"}, "accuracy": {"threshold": "0.8"},
        "rmse": {"threshold": "2", "greater_is_better": False}}
    with pytest.raises(EvaluationError):
        parse_thresholds(["accuracy"])
