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


def test_one_table_renderer_writes_numbers_by_the_one_format():
    """The registry's and the data reports' tables were two renderers that disagreed ("–" vs "-",
    "yes" vs "True"); now every table goes through nbprod._display, cells through _format."""
    from nbprod import _display

    text = _display.text_table(["n", "score", "missing", "flag"], [[1000, 0.123456, None, True]])
    html = _display.html_table(["n", "score", "missing", "flag"], [[1000, 0.123456, None, True]])
    for shown in (text, html):
        assert "1,000" in shown and "0.1235" in shown and "–" in shown and "yes" in shown
    assert "<script>" not in _display.html_table(["x"], [["<script>"]])  # every cell escaped


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


def test_drift_headline_names_the_share_and_its_threshold(tmp_path):
    import nbprod
    from nbprod.datasets import credit

    X, _ = credit(2000)
    cur, _ = credit(1500, seed=3, shift="income")
    report = nbprod.drift(nbprod.profile(X), cur)
    head = report._headline()
    assert re.search(r"drift share \d\.\d{4} < 0\.5\)", head), head
    assert "2,000 rows" in head and "1,500 rows" in head
    assert "=)" not in head  # no option name left without its value
    for shown in (str(report), report._repr_html_(), report.to_html(tmp_path / "r.html").read_text()):
        assert "the dataset drifted when it is ≥ 0.5 (drift_share=0.5, --drift-share 0.5)" in shown
    gate = nbprod.drift(nbprod.profile(X), cur, drift_share=0.1)
    assert gate.dataset_drift and re.search(r"drift share \d\.\d{4} ≥ 0\.1\)", gate._headline())


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


# --- one display base for every result (issue 10, section 3) ---------------------------------------

import ast  # noqa: E402
from pathlib import Path  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "nbprod"
#: Widgets that wrap a result: their text, HTML and repr are the wrapped result's (tests/test_widget_panels.py).
WRAPPERS = {"widgets/panels.py"}
#: The one exception to "str == repr": a deployment's token is shown once, by print() only.
REVEALS_A_SECRET = {"Deployment"}


def _result_classes() -> dict[str, list[str]]:
    """Module -> classes that display themselves (define _repr_html_ or _view, or subclass Display)."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in WRAPPERS or rel == "_display.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            methods = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            bases = {ast.unparse(b) for b in node.bases}
            if methods & {"_repr_html_", "_view"} or "Display" in bases:
                module = "nbprod." + rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
                found.setdefault(module, []).append(node.name)
    return found


def test_every_result_class_uses_the_display_base():
    """A result gives _view(); the base gives str, repr, _repr_html_ and _repr_pretty_. A class that
    writes its own _repr_html_, or a dataclass that generates its own repr, fails here."""
    import importlib

    from nbprod._display import Display

    found = _result_classes()
    assert sum(map(len, found.values())) >= 25, found
    for module, names in found.items():
        mod = importlib.import_module(module)
        for name in names:
            cls = getattr(mod, name)
            where = f"{module}.{name}"
            assert issubclass(cls, Display), f"{where} displays itself without nbprod._display.Display"
            assert "_view" in vars(cls) or cls._view is not Display._view, f"{where} gives no _view()"
            for method in ("__repr__", "_repr_html_", "_repr_pretty_"):
                assert getattr(cls, method) is getattr(Display, method), f"{where} overrides {method}"
            if name not in REVEALS_A_SECRET:
                assert cls.__str__ is Display.__str__, f"{where} overrides __str__"


def _results(tmp_path):
    """One of each result, built without a server or a store (their displays are what is tested)."""
    from datetime import datetime, timezone

    import nbprod
    from nbprod._info import info
    from nbprod.audit import AuditEntry, AuditTable, AuditVerification
    from nbprod.batch.score import ScoreResult
    from nbprod.batch.sweep import SweepResult
    from nbprod.commands.results import ServeResult
    from nbprod.data.rules import Rules
    from nbprod.datasets import credit
    from nbprod.deployments.prediction import PredictionResult
    from nbprod.deployments.results import Deployment, DeploymentStatus, StatusTable
    from nbprod.monitoring.alerts import AlertCheck, AlertOutcome
    from nbprod.monitoring.feedback import FeedbackResult
    from nbprod.monitoring.report import MonitorReport
    from nbprod.packaging.results import Bundle
    from nbprod.registry.evaluate import EvaluationResult, MetricRow
    from nbprod.registry.loading import LoadedModel
    from nbprod.registry.versions import AliasChange, ModelTable, ModelVersion

    X, _ = credit(600)
    cur, _ = credit(400, seed=3, shift="income")
    prof = nbprod.profile(X[["age", "income", "country"]])
    version = ModelVersion("credit-risk", "3", ["champion"], {"accuracy": 0.81234}, "run", "<alice>",
                           datetime(2026, 1, 1, tzinfo=timezone.utc), None, None, "cloudpickle", {})
    entry = AuditEntry(2, "2026-01-01T00:00:00Z", "alice", "h", "alias.set", "credit-risk", "models:/credit-risk/3",
                       {"note": "<b>x</b>"}, "/w/q.ipynb", "abcdef12", False, "p", "h")
    check = AlertCheck("credit", [AlertOutcome("p95_ms > 100", "firing", 123.4, 0, 3600, "sent")])
    metrics = {"requests": (1200.0, "ok"), "error_rate": (0.0, "ok"), "p95_ms": (3.2, "ok"),
               "drift_share": (0.25, "ok"), "prediction_drift": (0.0, "ok"), "feedback_rows": (0.0, "no feedback yet"),
               "roc_auc": (None, "no feedback yet"), "accuracy": (None, "no feedback yet")}
    window = {"start": 0, "end": 3600, "partial": True, "versions": {"1": 1200}, "metrics": metrics}
    row = DeploymentStatus("credit", "http://127.0.0.1:1", "dead", None, "0/1", [], 1)
    return [
        prof, nbprod.validate(cur[["age", "income", "country"]], against=prof), nbprod.drift(prof, cur),
        Rules.from_dict({"age": {"min": 18}}), version, ModelTable([version]), ModelTable([]),
        AliasChange("credit-risk", "champion", "move", "3", "2"),
        EvaluationResult("a@challenger", None, "classification", 800, [MetricRow("accuracy", 0.8, None, None,
                                                                                  ">= 0.5", True)]),
        LoadedModel("credit-risk", "3", "models:/credit-risk/3", tmp_path, None, None, None, {}),
        entry, AuditTable([entry]), AuditVerification(False, 3, None, 2, "hash mismatch", ["row 2", "row 3"]),
        ScoreResult("credit-risk", "3", 1000, 990, 10, 2, None, None, 1, "local", 1.0),
        SweepResult(str(tmp_path / "t.ipynb"), {"C": [1.0]}, [{"params": {"C": 1.0}, "status": "FINISHED",
                                                               "metrics": {"acc": 0.8}, "run_id": "r", "seconds": 1.0,
                                                               "error": None}], "acc", "local"),
        Deployment("credit", "http://127.0.0.1:1", "deployed", [], 1, 1, 1, token="secret-token"),
        row, StatusTable([row]), PredictionResult({"predictions": [1], "model_version": "1"}, "credit"),
        check, MonitorReport("credit", 3600, 0, 3600, "classification", [window], alerts=check),
        FeedbackResult(stored=["a"], unknown=["<z>"]), info(),
        Bundle(tmp_path, "models:/credit/1", "credit", "1", "credit:1", files=["model/MLmodel"]),
        ServeResult("http://127.0.0.1:1", "credit-risk@champion"),
        *_job_results(tmp_path), *_pipeline_results(),
    ]


def _pipeline_results():
    """A plan, a run stopped at a gate (its graph, its steps, what to type next) and the runs table."""
    from nbprod.pipelines.results import PipelineRun, PipelineRuns, Plan

    steps = [{"name": "train", "kind": "notebook", "needs": [], "inputs": {"notebook": "<b>x</b>.ipynb"},
              "changes": "runs the notebook", "status": "done"},
             {"name": "evaluate", "kind": "evaluate", "needs": ["train"], "inputs": {"model": "<train.model_uri>"},
              "changes": "a gate", "status": "gate_failed", "reason": "roc_auc lost <alice>"}]
    run = PipelineRun("r-1", "retrain", "p.yaml", "GATE_FAILED", steps, "evaluate: <b>x</b>")
    return [Plan("retrain", "p.yaml", {}, steps), run, PipelineRuns([run.to_dict() | {"started_at": "2026"}]),
            PipelineRuns([])]


def _job_results(tmp_path):
    """A job card (with its cell times), the jobs table, a comparison, a re-run, a lint and a parameters report."""
    from datetime import datetime, timezone

    from nbprod.jobs.compare import JobDiff
    from nbprod.jobs.lint import CheckReport, Finding
    from nbprod.jobs.params import Parameter, Parameters
    from nbprod.jobs.replay import Rerun
    from nbprod.jobs.results import JobResult, RunTable

    cells = [{"cell": i, "seconds": 0.01 * i, "status": "ok", "source": f"x = {i}  # <b>x</b>"} for i in range(1, 16)]
    job = JobResult(tmp_path / "t.ipynb", tmp_path / "o.ipynb", {"alpha": "<alice>"}, 2.0, run_id="abcdef1234",
                    metrics={"acc": 0.8}, notes=["<b>x</b>"], start=datetime(2026, 1, 1, tzinfo=timezone.utc),
                    cells=cells)
    failed = JobResult(tmp_path / "t.ipynb", None, {}, 1.0, ok=False, status="FAILED", run_id="12345678ab",
                       error={"message": "ZeroDivisionError <b>x</b>"}, metrics={"acc": 0.7})
    diff = JobDiff(job, failed, parameters=[("alpha", "<alice>", None)], metrics=[("acc", 0.8, 0.7, -0.1, -0.125)])
    return [job, RunTable([job, failed]), RunTable([]), diff, JobDiff(job, job), Rerun(failed, diff),
            CheckReport(tmp_path / "t.ipynb", [Finding("unseeded-random", 2, 3, "<b>x</b>", "seed it")]),
            CheckReport(tmp_path / "t.ipynb"), Parameters(tmp_path / "t.ipynb"),
            Parameters(tmp_path / "t.ipynb", [Parameter("alpha", "str", "'<alice>'")], True)]


def test_text_html_and_repr_follow_the_one_rule(nbprod_home, tmp_path):
    """repr is the text (a terminal, a log and a saved notebook's text/plain show what print shows);
    the HTML shows the same headline, escaped; IPython's pretty printer shows the repr."""
    from html import escape

    from IPython.lib.pretty import pretty

    from nbprod._display import Display, html, text

    results = _results(tmp_path)
    converted = {type(r) for r in results}
    for module, names in _result_classes().items():  # every result class is exercised here
        missing = set(names) - {c.__name__ for c in converted if c.__module__ == module}
        assert not missing - {"MonitorPanel", "DemoSummary"}, (module, missing)  # a widget; a job wrapper
    for result in results:
        name = type(result).__name__
        view = result._view()
        assert repr(result) == text(view) == pretty(result), name
        assert result._repr_html_() == html(view), name
        assert view.headline.splitlines()[0] in repr(result).splitlines()[0], name
        assert escape(view.headline) in result._repr_html_(), name
        assert f"{name}(" not in repr(result) and "<nbprod." not in repr(result), name
        assert not hasattr(Display, "_repr_mimebundle_")  # charts and widgets keep their own bundles
        if name in REVEALS_A_SECRET:
            assert "secret-token" in str(result) and "secret-token" not in repr(result) + result._repr_html_()
        else:
            assert str(result) == repr(result), name
        assert "<b>x</b>" not in result._repr_html_() and "<alice>" not in result._repr_html_(), name


def test_charts_keep_their_own_output_next_to_the_base(tmp_path):
    """A result with a chart shows the base's text and HTML and its chart as Vega-Lite 5, the one
    chart mimetype JupyterLab draws offline (nbprod._charts)."""
    from nbprod._charts import VEGALITE_MIME
    from nbprod.batch.sweep import SweepResult
    from nbprod.registry.evaluate import EvaluationResult, MetricRow

    evaluation = EvaluationResult("a@challenger", "a@champion", "classification", 800,
                                  [MetricRow("accuracy", 0.8, 0.7, 0.1, ">= 0.5", True)])
    sweep = SweepResult(str(tmp_path / "t.ipynb"), {"C": [0.1, 1.0]},
                        [{"params": {"C": c}, "status": "FINISHED", "metrics": {"acc": a}, "run_id": "r",
                          "seconds": 1.0, "error": None} for c, a in ((0.1, 0.7), (1.0, 0.8))], "acc", "local")
    for result in (evaluation, sweep):
        bundle = result._repr_mimebundle_()
        assert bundle["text/plain"] == repr(result) and bundle["text/html"] == result._repr_html_()
        assert bundle[VEGALITE_MIME]["$schema"].endswith("/v5.json")


def test_a_pipeline_shows_its_graph_in_html_and_its_steps_in_text():
    """The graph of steps is a Markup part: nbprod's own SVG, drawn (not escaped) in HTML, absent from
    the text, where the steps' table and the commands to inspect and resume say the same."""
    plan, run, _, _ = _pipeline_results()
    html, text = run._repr_html_(), str(run)
    assert html.count("<rect") == 2 and "#e65100" in html and "&lt;svg" not in html and "<svg" not in text
    assert "roc_auc lost &lt;alice&gt;" in html and "roc_auc lost <alice>" in text
    assert "nbprod pipeline resume r-1" in text and "nbprod pipeline resume r-1" in html
    assert "1. train [notebook]" in str(plan) and "     model: <train.model_uri>" in str(plan)
    assert "<svg" in plan._repr_html_() and "&lt;train.model_uri&gt;" in plan._repr_html_()
