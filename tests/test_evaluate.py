"""Champion/challenger evaluation on a real MLflow store."""

from __future__ import annotations

import json

import pytest
from _registry_helpers import module_home, pipeline

from nbprod.errors import EvaluationError, EvaluationFailed

pytestmark = pytest.mark.slow  # every test uses the module's registered versions (an MLflow store: seconds to build)


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
    spec = result.chart().to_dict()
    assert spec["mark"]["type"] == "bar"
    # the heading over short lines: on one line it ran past the chart's edge and JupyterLab cut it off
    assert spec["title"]["text"].startswith("PASSED (gated on ") and len(spec["title"]["subtitle"]) == 2
    assert max(len(line) for line in [spec["title"]["text"], *spec["title"]["subtitle"]]) < 70


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

    rows, tag = len(audit.history("credit")), get_version("credit/2").tags.get("nbprod.evaluation")
    files = evaluations()
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
    given = ["roc_auc:min_absolute_change=0", "accuracy=0.8", "rmse:threshold=2,greater_is_better=false"]
    assert parse_thresholds(given) == {
        "roc_auc": {"min_absolute_change": "0"}, "accuracy": {"threshold": "0.8"},
        "rmse": {"threshold": "2", "greater_is_better": False}}
    with pytest.raises(EvaluationError):
        parse_thresholds(["accuracy"])


# --- bad input and partial failures: a typed error and nothing stored --------------------------

def _stored(version):
    """(audit rows of the model, the evaluation tag, the evaluation artefacts) of ``version``."""
    from nbprod import audit
    from nbprod.registry import get_version
    from nbprod.registry.store import client

    files = [f.path for f in client().list_artifacts(version.run_id, "nbprod-evaluations")]
    return len(audit.history(version.name)), get_version(version.uri).tags.get("nbprod.evaluation"), files


def test_non_finite_threshold_is_refused_before_anything_is_stored(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    before = _stored(versions[1])
    for bad in (float("nan"), float("inf"), "nan"):
        with pytest.raises(EvaluationError, match="not a finite number") as err:
            evaluate("credit/2", X, y, against=None, thresholds={"accuracy": {"threshold": bad}})
        assert "finite" in err.value.fix
    assert _stored(versions[1]) == before


def test_unreachable_state_db_stores_no_evaluation(versions, split, tmp_path):
    from nbprod import audit
    from nbprod.config import settings
    from nbprod.errors import ConfigError
    from nbprod.registry import evaluate

    _, (X, y) = split
    before = _stored(versions[1])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state DB's folder should be")
    settings.set(db_url=f"sqlite:///{blocker}/nbprod.db")
    try:
        with pytest.raises(ConfigError) as err:
            evaluate("credit/2", X, y, against=None, thresholds={"accuracy": {"threshold": 0.5}})
        assert str(blocker) in err.value.problem and "NBPROD_DB_URL" in err.value.fix
    finally:
        settings.set(db_url="")
    assert _stored(versions[1]) == before and audit.verify().ok


def test_failure_storing_the_result_rolls_the_tag_and_the_audit_row_back(nbprod_home):
    """The result is stored inside the audit row's transaction: when storing the artefact fails, the
    tag already set is restored and the audit row is rolled back."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from nbprod import audit
    from nbprod.registry import evaluate, get_version, register
    from nbprod.registry.store import client
    from nbprod.registry.versions import _local_path

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"a": rng.normal(size=60)})
    y = pd.Series(2 * X["a"], name="y")
    version = register(LinearRegression().fit(X, y), "store-fails", X, y)
    root = _local_path(client().get_run(version.run_id).info.artifact_uri)
    (root / "nbprod-evaluations").write_text("a file where the evaluations folder should be")
    rows = len(audit.history("store-fails"))
    with pytest.raises(EvaluationError, match="cannot store the evaluation") as err:
        evaluate("store-fails/1", X, y, against=None)
    assert err.value.fix
    assert get_version("store-fails/1").tags.get("nbprod.evaluation") is None
    assert len(audit.history("store-fails")) == rows and audit.verify().ok


def test_metrics_that_cannot_be_computed_are_none_not_nan(nbprod_home):
    """r2 of a single row is undefined: reported and stored as "not enough data", never NaN."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from nbprod import audit
    from nbprod.registry import evaluate, get_version, register

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=50)})
    y = pd.Series(3 * X["a"] + 0.5, name="y")
    register(LinearRegression().fit(X, y), "one-row", X, y)
    result = evaluate("one-row/1", X.head(1), y.head(1), against=None)
    r2 = result["r2"]
    assert r2.candidate is None and r2.passed is None and "not enough data" in r2.note
    assert result["mae"].candidate is not None and result.ok
    stored = get_version("one-row/1").evaluation
    assert stored["metrics"]["r2"] is None and stored["ok"] is True
    assert audit.history("one-row")[0].action == "evaluate" and audit.verify().ok
    # A threshold on a metric that cannot be computed cannot be met.
    strict = evaluate("one-row/1", X.head(1), y.head(1), against=None, thresholds={"r2": {"threshold": 0.9}})
    assert strict["r2"].passed is False and not strict.ok
    assert json.dumps(strict.to_dict(), allow_nan=False)


def test_integer_regression_target_is_evaluated_as_regression(nbprod_home):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from nbprod.commands import parse
    from nbprod.registry import evaluate, register

    rng = np.random.default_rng(2)
    X = pd.DataFrame({"rooms": rng.integers(1, 6, 200), "area": rng.normal(80, 20, 200)})
    price = (1000 * X["rooms"] + 50 * X["area"] + rng.normal(0, 100, 200)).round().astype(int).rename("price")
    register(LinearRegression().fit(X, price), "price", X, price)
    result = evaluate("price/1", X, price, against=None, thresholds={"r2": {"threshold": 0.9}})
    assert result.task == "regression" and [r.metric for r in result.rows] == ["mae", "rmse", "r2"] and result.ok
    # Few distinct float values that look like classes: still the model's task.
    small = (X["rooms"] * 1.0).rename("rooms_again")
    register(LinearRegression().fit(X, small), "small", X, small)
    assert evaluate("small/1", X, small, against=None).task == "regression"
    # task= overrides the inference; a wrong value is refused.
    with pytest.raises(EvaluationError, match="task must be") as err:
        evaluate("price/1", X, price, against=None, task="ranking")
    assert "regression" in err.value.fix
    frame = X.assign(price=price)
    command, args = parse("nbprod", ["evaluate", "price/1", "--data", "frame", "price", "--against", "none",
                                     "--task", "regression"])
    from nbprod.commands import Context

    assert command.run(args, Context(namespace={"frame": frame})).task == "regression"


def test_tampered_champion_raises_integrity_error_unchanged(nbprod_home):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression, Ridge

    from nbprod.errors import IntegrityError
    from nbprod.registry import evaluate, register
    from nbprod.registry.versions import local_model_dir

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    y = pd.Series(X["a"] - X["b"], name="y")
    register(LinearRegression().fit(X, y), "reg", X, y)
    v2 = register(Ridge().fit(X, y), "reg", X, y)
    (local_model_dir(v2) / "input_example.json").write_text("{}")
    before = _stored(v2)
    with pytest.raises(IntegrityError) as err:
        evaluate("reg/1", X, y, against="reg/2")
    assert type(err.value) is IntegrityError and str(err.value).count("Fix:") == 1
    assert "input_example.json" in err.value.problem
    assert _stored(v2) == before


def test_missing_columns_are_named_without_dumping_the_frame(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    with pytest.raises(EvaluationError) as err:
        evaluate("credit/2", X.drop(columns=["income"]).assign(extra=1), y, against=None)
    assert "['income']" in err.value.problem and "['extra']" in err.value.problem
    assert len(str(err.value)) < 600 and "income" in err.value.fix


def test_threshold_specs_are_checked_strictly(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    result = evaluate("credit/2", X, y, against=None,
                      thresholds={"accuracy": {"threshold": 0.99, "greater_is_better": "false"}})
    assert result["accuracy"].passed is True and "≤" in result["accuracy"].threshold  # lower is better now
    with pytest.raises(EvaluationError, match="greater_is_better") as err:
        evaluate("credit/2", X, y, against=None,
                 thresholds={"accuracy": {"threshold": 0.5, "greater_is_better": "maybe"}})
    assert "True or False" in err.value.fix
    with pytest.raises(EvaluationError, match="thresholds must be a dict") as err:
        evaluate("credit/2", X, y, against=None, thresholds=["accuracy"])
    assert "parse_thresholds" in err.value.fix


def test_result_repr_is_the_readable_table(versions, split):
    from nbprod.registry import evaluate

    _, (X, y) = split
    result = evaluate("credit/2", X, y, against=None)
    assert repr(result) == str(result) and "EvaluationResult(" not in repr(result)
