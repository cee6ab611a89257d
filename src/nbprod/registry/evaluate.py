"""``evaluate``: score a candidate and the champion on the same data, check thresholds, record it.

Thresholds per metric (any combination)::

    {"roc_auc": {"min_absolute_change": 0.0},   # candidate − champion ≥ 0 (sign flips when lower is better)
     "accuracy": {"threshold": 0.8},            # candidate ≥ 0.8 on its own
     "rmse": {"min_relative_change": 0.05, "greater_is_better": False}}

Without a champion only absolute ``threshold``\\s can be checked; change-based ones are reported as
skipped, not as passed. The result is stored on the candidate version (``nbprod.evaluation`` tag
and a JSON artefact on its run, outside the manifest-covered ``model/`` folder) and audited.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from .. import _format, audit, state
from .._display import Display, Lines, Table, View, bundle_with_chart, show_with_chart
from .._quiet import quiet_mlflow
from ..errors import EvaluationError, EvaluationFailed, ModelNotFoundError, NbprodError
from .loading import load_model
from .store import client
from .uris import parse_model_uri
from .versions import _local_path, get_version

__all__ = ["evaluate", "EvaluationResult", "MetricRow", "GREATER_IS_BETTER", "parse_thresholds", "check_thresholds"]

GREATER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
                     "mae": False, "rmse": False, "r2": True}
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = ("mae", "rmse", "r2")
_KNOWN_KEYS = {"threshold", "min_absolute_change", "min_relative_change", "greater_is_better"}
DEFAULT_CHAMPION = "champion"  # the one alias whose absence means "first model, nothing to beat"
TASKS = ("classification", "regression")
NOT_ENOUGH_DATA = "not enough data"


@dataclass
class MetricRow:
    metric: str
    candidate: float | None
    champion: float | None
    change: float | None
    threshold: str | None
    passed: bool | None  # None: nothing to check (no threshold, or change-based without champion)
    note: str | None = None

    def to_dict(self) -> dict:
        keys = ("metric", "candidate", "champion", "change", "threshold", "passed", "note")
        return {k: getattr(self, k) for k in keys}


@dataclass(repr=False)
class EvaluationResult(Display):
    """Per-metric comparison of a candidate with the champion; ``ok`` when no threshold failed."""

    candidate_uri: str
    champion_uri: str | None
    task: str
    n_rows: int
    rows: list[MetricRow] = field(default_factory=list)
    #: classification: the share of each label in y (for the class-imbalance hint); None otherwise
    class_shares: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return all(r.passed is not False for r in self.rows)

    @property
    def passed(self) -> bool:
        return self.ok

    @property
    def failures(self) -> list[MetricRow]:
        return [r for r in self.rows if r.passed is False]

    def __getitem__(self, metric: str) -> MetricRow:
        for row in self.rows:
            if row.metric == metric:
                return row
        raise KeyError(metric)

    def raise_for_failure(self) -> "EvaluationResult":
        if not self.ok:
            failed = ", ".join(f"{r.metric} ({r.note or r.threshold})" for r in self.failures)
            raise EvaluationFailed(f"{self.candidate_uri} failed its thresholds: {failed}",
                                   "improve the candidate, or revisit the thresholds; the champion stays in place",
                                   result=self)
        return self

    def to_dict(self) -> dict:
        return {"candidate": self.candidate_uri, "champion": self.champion_uri, "task": self.task,
                "n_rows": self.n_rows, "ok": self.ok, "metrics": [r.to_dict() for r in self.rows]}

    def _table_rows(self) -> list[list[Any]]:
        def mark(r: MetricRow) -> str:
            if r.passed is not None:
                return "pass" if r.passed else "FAIL"
            return "skipped" if r.threshold else "not gated"

        return [[r.metric, _format.score(r.candidate), _format.score(r.champion), _format.signed_score(r.change),
                 r.threshold or "–", mark(r)] for r in self.rows]

    HEADERS = ["metric", "candidate", "champion", "change", "threshold", "result"]

    @property
    def gated(self) -> list[str]:
        """The metrics a threshold was checked on: what PASSED or FAILED means."""
        return [r.metric for r in self.rows if r.passed is not None]

    def _title(self) -> str:
        return " · ".join(self._title_parts())

    def _title_parts(self) -> list[str]:
        against = f"against {self.champion_uri}" if self.champion_uri else "no champion: absolute thresholds only"
        gated = self.gated
        verdict = "PASSED" if self.ok else "FAILED"
        scope = (f"gated on {', '.join(gated)}" if gated else "nothing gated: no threshold was given")
        return [f"{verdict} ({scope})", f"{self.candidate_uri} {against}", f"{self.task}, {_format.rows(self.n_rows)}"]

    @property
    def notes(self) -> list[str]:
        """What a reader of the table should know: metrics at ~0 next to an imbalanced label, and
        metrics that could not be computed, each with its reason."""
        notes = [f"{r.metric}: {r.note}" for r in self.rows if r.note and r.passed is not False]
        if self.task != "classification":
            return notes
        low = [f"{r.metric} {_format.score(v)} ({who})" for r in self.rows if r.metric in ("precision", "recall", "f1")
               for who, v in (("candidate", r.candidate), ("champion", r.champion)) if v is not None and v < 0.05]
        if low:
            shares = self.class_shares or {}
            minority = min(shares.items(), key=lambda kv: kv[1]) if len(shares) >= 2 else None
            balance = (f"label {minority[0]!s} is only {_format.percent(minority[1])} of the rows"
                       if minority is not None else "the label may be imbalanced")
            notes.append(f"near 0: {', '.join(low)}; {balance}, so a model that rarely predicts it keeps a high "
                         "accuracy. Gate on recall, f1 or roc_auc, or rebalance (class_weight='balanced').")
        return notes

    def _view(self) -> View:
        return View(self._title(), [Table(self.HEADERS, self._table_rows(), limit=0),
                                    Lines([f"note: {n}" for n in self.notes])], tone="ok" if self.ok else "bad")

    def chart(self):
        """A grouped bar chart, candidate vs champion per metric (an ``nbprod._charts.Chart``: it draws
        as Vega-Lite 5 in every notebook front end; ``.altair`` is the Altair object)."""
        import altair as alt
        import pandas as pd

        from .._charts import wrap

        data = []
        for r in self.rows:
            for who, value in (("candidate", r.candidate), ("champion", r.champion)):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    data.append({"metric": r.metric, "model": who, "value": value})
        frame = pd.DataFrame(data, columns=["metric", "model", "value"])
        return wrap(alt.Chart(frame).mark_bar().encode(
            x=alt.X("model:N", title=None, axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("model:N", scale=alt.Scale(domain=["candidate", "champion"], range=["#4c78a8", "#bbbbbb"])),
            column=alt.Column("metric:N", title=None),
            tooltip=["metric", "model", alt.Tooltip("value:Q", format=".4f")],
        ).properties(width=60, height=120, title=self._chart_title(alt)))

    def _chart_title(self, alt):
        """The table's heading over three short lines: on one it ran past the chart's edge, where JupyterLab
        cut it off (five metrics' columns are ~480 px wide)."""
        verdict, models, scope = self._title_parts()
        return alt.TitleParams(text=verdict, subtitle=[models, scope], anchor="start")

    def _ipython_display_(self) -> None:
        """The table, then the chart as its own output (``_display.show_with_chart``: in one bundle
        a front end would draw the HTML and never the chart)."""
        show_with_chart(self, self.chart)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return bundle_with_chart(self, self.chart)


def parse_thresholds(items: list[str]) -> dict[str, dict]:
    """``["roc_auc:min_absolute_change=0", "accuracy:threshold=0.8"]`` → the thresholds dict."""
    out: dict[str, dict] = {}
    for item in items or []:
        metric, sep, rest = item.partition(":")
        if not sep:
            metric, sep, value = item.partition("=")
            rest = f"threshold={value}" if sep else ""
        if not metric or not rest:
            raise EvaluationError(f"cannot read threshold {item!r}",
                                  "write metric:key=value, e.g. roc_auc:min_absolute_change=0 "
                                  "or accuracy:threshold=0.8 (or accuracy=0.8)")
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise EvaluationError(f"cannot read threshold {item!r}",
                                      "write metric:key=value, e.g. accuracy:threshold=0.8")
            value = value.strip()
            key = key.strip()
            parsed = value.lower() in ("true", "1", "yes") if key == "greater_is_better" else value
            out.setdefault(metric.strip(), {})[key] = parsed
    return out


def _bool(metric: str, value) -> bool:
    """``greater_is_better`` as given from Python or a command line: a bool or a true/false word."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise EvaluationError(f"threshold {metric}.greater_is_better={value!r} is not true or false",
                          "pass greater_is_better=True or False (or the strings 'true'/'false')")


def check_thresholds(thresholds: dict | None) -> dict[str, dict]:
    """``thresholds`` as :func:`evaluate` takes them, checked (a pipeline's evaluate step checks them at load)."""
    if thresholds is not None and not isinstance(thresholds, dict):
        raise EvaluationError(f"thresholds must be a dict of metric → spec, "
                              f"got {type(thresholds).__name__} {thresholds!r}",
                              'pass e.g. {"accuracy": {"threshold": 0.8}}, or build one from strings with '
                              'parse_thresholds(["accuracy:threshold=0.8"])')
    checked: dict[str, dict] = {}
    for metric, spec in (thresholds or {}).items():
        if isinstance(spec, (int, float)):
            spec = {"threshold": spec}
        if not isinstance(spec, dict):
            raise EvaluationError(f"threshold for {metric!r} must be a dict or a number, got {spec!r}",
                                  'use e.g. {"accuracy": {"threshold": 0.8}}')
        unknown = set(spec) - _KNOWN_KEYS
        if unknown:
            raise EvaluationError(f"unknown threshold key(s) for {metric!r}: {', '.join(sorted(unknown))}",
                                  f"use {', '.join(sorted(_KNOWN_KEYS))}")
        clean: dict[str, float | bool] = {}
        for key, value in spec.items():
            if key == "greater_is_better":
                clean[key] = _bool(metric, value)
                continue
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                raise EvaluationError(f"threshold {metric}.{key}={value!r} is not a number",
                                      "give numbers, e.g. 0.8") from None
            if not math.isfinite(clean[key]):
                raise EvaluationError(f"threshold {metric}.{key}={value!r} is not a finite number",
                                      "give a finite number, e.g. 0.8 (drop the key to check nothing)")
        checked[metric] = clean
    return checked


def _model_task(model) -> str | None:
    """``classification``/``regression`` from the model itself (scikit-learn's estimator type), or None."""
    raw = getattr(model, "raw_model", None)
    if raw is None:
        return None
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(raw):
            return "classification"
        if is_regressor(raw):
            return "regression"
    except Exception:  # not a scikit-learn estimator
        pass
    if hasattr(raw, "classes_") or hasattr(raw, "predict_proba"):
        return "classification"
    return None


def _task(y) -> str:
    """A guess from the labels alone, for models that do not say (pyfunc models)."""
    import numpy as np
    import pandas as pd

    s = pd.Series(np.asarray(y).ravel()) if not isinstance(y, pd.Series) else y
    if s.dtype.kind in "fc":
        values = s.dropna()
        if len(values) and np.all(np.mod(values, 1) == 0) and values.nunique() <= 20:
            return "classification"
        return "regression"
    return "classification"


def _finite(scores: dict[str, float | None]) -> dict[str, float | None]:
    """NaN/inf metrics (r2 on one row, …) become None: not enough data to compute them."""
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in scores.items()}


def _score(model, X, y, task: str, why: dict[str, str] | None = None) -> dict[str, float | None]:
    """The task's metrics of ``model`` on ``(X, y)``; ``why`` collects the reason of each metric
    that has no value (roc_auc with one class in y, or a model without predict_proba)."""
    why = {} if why is None else why
    import numpy as np
    from sklearn import metrics as m

    pred = np.asarray(model.predict(X))
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred.ravel()
    y_true = np.asarray(y).ravel()
    if task == "regression":
        return {"mae": float(m.mean_absolute_error(y_true, pred)),
                "rmse": float(math.sqrt(m.mean_squared_error(y_true, pred))),
                "r2": float(m.r2_score(y_true, pred))}
    labels = np.unique(np.concatenate([y_true, pred]))
    binary = len(labels) <= 2
    avg = "binary" if binary else "weighted"
    kw = {"average": avg, "zero_division": 0}
    if binary:
        kw["pos_label"] = labels[-1]
    out: dict[str, float | None] = {"accuracy": float(m.accuracy_score(y_true, pred)),
           "precision": float(m.precision_score(y_true, pred, **kw)),
           "recall": float(m.recall_score(y_true, pred, **kw)),
           "f1": float(m.f1_score(y_true, pred, **kw))}
    proba = model.predict_proba(X)
    if proba is None:
        pass  # a model without scores has no roc_auc row at all
    elif len(np.unique(y_true)) < 2:
        out["roc_auc"] = None
        why["roc_auc"] = "n/a: only one class in y, so there is nothing to rank against"
    else:
        try:
            proba = np.asarray(proba)
            if proba.ndim == 2 and proba.shape[1] == 2:
                out["roc_auc"] = float(m.roc_auc_score(y_true, proba[:, 1]))
            elif proba.ndim == 2:
                out["roc_auc"] = float(m.roc_auc_score(y_true, proba, multi_class="ovr",
                                                       labels=model.raw_model.classes_))
        except (ValueError, AttributeError) as exc:
            out["roc_auc"] = None
            why["roc_auc"] = f"n/a: {exc}"
    return out


def _rows(cand: dict, champ: dict | None, thresholds: dict[str, dict], task: str,
          why: dict[str, str] | None = None) -> list[MetricRow]:
    unknown = sorted(set(thresholds) - set(cand))
    if unknown:
        raise EvaluationError(f"threshold(s) for metric(s) not computed for this {task} model: {', '.join(unknown)}",
                              f"use thresholds on {', '.join(cand)}")
    rows = []
    for metric, value in cand.items():
        other = champ.get(metric) if champ else None
        change = None if other is None or value is None else value - other
        spec = thresholds.get(metric, {})
        gib = spec.get("greater_is_better", GREATER_IS_BETTER.get(metric, True))
        sign = 1.0 if gib else -1.0
        checks, texts, notes = [], [], []
        if value is None:
            # Cannot be computed on this data (r2 of one row): a threshold on it cannot be met.
            limits = [k for k in ("threshold",) + (("min_absolute_change", "min_relative_change") if champ else ())
                      if k in spec]
            if limits:
                checks.append(False)
                texts.append(", ".join(limits))
            notes.append((why or {}).get(metric) or f"{NOT_ENOUGH_DATA} to compute {metric}")
            rows.append(MetricRow(metric, None, other, None, "; ".join(texts) or None,
                                  None if not checks else False, "; ".join(notes)))
            continue
        if "threshold" in spec:
            t = spec["threshold"]
            texts.append(f"{'≥' if gib else '≤'} {t:g}")
            ok = sign * (value - t) >= 0
            checks.append(ok)
            if not ok:
                notes.append(f"{_format.score(value)} {'<' if gib else '>'} {t:g}")
        for key, label in (("min_absolute_change", "Δ"), ("min_relative_change", "Δ%")):
            if key not in spec:
                continue
            t = spec[key]
            texts.append(f"{label} {'≥' if gib else '≤'} {'' if gib else '−'}{t:g}" if key == "min_absolute_change"
                         else f"{label} {'≥' if gib else '≤'} {'' if gib else '−'}{t:.0%}")
            if other is None:
                notes.append(f"{key} skipped: " + ("no champion" if champ is None
                                                   else f"{NOT_ENOUGH_DATA} to compute the champion's {metric}"))
                continue
            assert change is not None  # value (checked above) and other are both known here
            improvement = sign * change if key == "min_absolute_change" else (
                sign * change / abs(other) if other else (0.0 if change == 0 else math.inf * sign * change))
            ok = improvement >= t - 1e-12
            checks.append(ok)
            if not ok:
                notes.append(f"{key}: improvement {_format.signed_score(improvement)} < {t:g}")
        passed = None if not checks else all(checks)
        rows.append(MetricRow(metric, value, other, change, "; ".join(texts) or None, passed, "; ".join(notes) or None))
    return rows


@quiet_mlflow()
def evaluate(candidate_uri: str, X, y, *, against: str | None = "@champion", thresholds: dict | None = None,
             task: str | None = None) -> EvaluationResult:
    """Score ``candidate_uri`` and the version ``against`` names on ``(X, y)`` and check thresholds.

    ``against`` may be ``"@alias"`` (same model), a full URI, or None for thresholds only. A
    missing ``@champion`` is not an error: the first model has nothing to beat. Any other unknown
    alias raises :class:`ModelNotFoundError` before anything is scored or recorded.

    ``task`` (``"classification"`` or ``"regression"``) picks the metrics; by default it comes from
    the model (scikit-learn's estimator type), and only for models that do not say from the labels.
    """
    import pandas as pd


    checked = check_thresholds(thresholds)
    if task is not None and task not in TASKS:
        raise EvaluationError(f"task must be 'classification' or 'regression', got {task!r}",
                              "pass task='classification' or task='regression' (--task), "
                              "or leave it out to infer it from the model")
    if not isinstance(X, pd.DataFrame):
        raise EvaluationError(f"X must be a pandas DataFrame, got {type(X).__name__}", "pass the evaluation frame")
    if y is None or len(y) != len(X):
        raise EvaluationError(f"X has {len(X)} rows but y has {None if y is None else len(y)}",
                              "pass the labels that belong to X (same rows, same order)")
    if len(X) == 0:
        raise EvaluationError("X has no rows", "pass a non-empty evaluation frame")
    cand_version = get_version(candidate_uri)
    champ_version = _champion(cand_version.name, against) if against else None
    candidate = load_model(cand_version.uri)
    _check_columns(candidate, X)
    task = task or _model_task(candidate) or _task(y)
    try:
        why: dict[str, str] = {}
        cand_scores = _finite(_score(candidate, X, y, task, why))
        champ_scores = None
        if champ_version is not None:
            champion = load_model(champ_version.uri)
            _check_columns(champion, X)
            champ_scores = _finite(_score(champion, X, y, task))
    except NbprodError:
        raise
    except Exception as exc:
        text = str(exc)
        text = text if len(text) <= 300 else text[:300] + "…"
        raise EvaluationError(f"cannot score the models on this data as {task}: {type(exc).__name__}: {text}",
                              "pass a frame with the columns the model was trained on and the labels that belong to it"
                              + ("" if task == "regression"
                                 else "; for a regression model pass task='regression' (--task regression)")
                              ) from exc
    result = EvaluationResult(cand_version.uri, champ_version.uri if champ_version else None, task, int(len(X)),
                              _rows(cand_scores, champ_scores, checked, task, why),
                              class_shares=_class_shares(y) if task == "classification" else None)
    _record(result, cand_version, checked)
    return result


def _class_shares(y) -> dict[str, float]:
    """Each label's share of ``y`` (what the class-imbalance hint names)."""
    import pandas as pd

    shares = pd.Series(pd.Series(y).to_numpy().ravel()).value_counts(normalize=True)
    return {str(k): float(v) for k, v in shares.items()}


def _check_columns(model, X) -> None:
    """Name the columns X lacks (from the model's signature) before MLflow's error dumps the frame."""
    signature = getattr(model, "signature", None)
    inputs = getattr(signature, "inputs", None)
    if inputs is None:  # no signature: nothing to compare by name
        return
    try:
        names = [n for n in inputs.input_names() if n is not None]
        required = {s.name for s in inputs.inputs if getattr(s, "name", None) and getattr(s, "required", True)}
    except Exception:  # a tensor signature: nothing to compare by name
        return
    if not names:
        return
    missing = [n for n in names if n in required and n not in X.columns]
    if missing:
        extra = [str(c) for c in X.columns if c not in set(names)]
        raise EvaluationError(
            f"X lacks column(s) {missing} that {model.uri or 'the model'} needs"
            + (f"; it has column(s) the model does not use: {extra}" if extra else ""),
            f"pass an evaluation frame with the model's input columns: {names}")


def _record(result: EvaluationResult, version, thresholds: dict) -> None:
    """Audit row and stored result, all or nothing.

    The audit row is written first, in a transaction that commits only after the tag and the
    artefact are stored: a failure storing them rolls the row back, a failure writing the row
    stores nothing, and a failed commit removes what was stored.
    """
    from .versions import TAG, _mlflow_call

    c = client()
    tag = TAG + "evaluation"
    previous = version.tags.get(tag)
    stored: list[str] = []
    try:
        with state.write_transaction() as conn:
            audit.record("evaluate", model_uri=version.uri, connection=conn,
                         details={**result.to_dict(), "thresholds": thresholds})
            try:
                _store(result, version, thresholds, c, TAG, _mlflow_call, stored)
            except NbprodError:
                raise
            except Exception as exc:
                raise EvaluationError(f"cannot store the evaluation of {version.uri}: {type(exc).__name__}: {exc}",
                                      "check that the MLflow store and its artefact location are writable, then "
                                      "evaluate again (nothing was recorded)") from exc
    except BaseException:
        _unstore(c, version, tag, previous, stored)
        raise


def _unstore(c, version, tag: str, previous: str | None, stored: list[str]) -> None:
    """Undo :func:`_store` (best effort): restore the previous tag, delete the artefact written."""
    if "tag" in stored:
        try:
            if previous is None:
                c.delete_model_version_tag(version.name, version.version, tag)
            else:
                c.set_model_version_tag(version.name, version.version, tag, previous)
        except Exception:
            pass
    for rel in stored[1:]:
        try:
            root = _local_path(c.get_run(version.run_id).info.artifact_uri)
            if root is not None:
                (root / rel).unlink(missing_ok=True)
        except Exception:
            pass


def _champion(name: str, against: str):
    """The version ``against`` names, or None for a missing ``@champion`` (the first model).

    Any other unknown alias is a mistake (a typo, a deleted alias), not "no champion": comparing
    with nothing would pass change-based thresholds silently, so it raises and writes nothing.
    """
    from .versions import _mlflow_call, get_version

    if not against.startswith("@"):
        return get_version(against)
    _, _, alias = parse_model_uri(f"{name}{against}")
    try:
        return get_version(f"{name}@{alias}")
    except ModelNotFoundError:
        if alias == DEFAULT_CHAMPION:
            return None  # no champion yet: absolute thresholds only
        model = _mlflow_call(client().get_registered_model, name)
        existing = sorted(dict(getattr(model, "aliases", None) or {}))
        raise ModelNotFoundError(
            f"cannot evaluate against @{alias}: model {name!r} has no alias @{alias} "
            f"(its aliases: {', '.join('@' + a for a in existing) or 'none'})",
            f"compare with one of its aliases or a version (e.g. against='{name}/1'), or pass against=None "
            "(--against none) to check absolute thresholds only",
        ) from None


def _store(result: EvaluationResult, version, thresholds: dict, c, TAG: str, call, stored: list[str]) -> None:
    summary = {"ok": result.ok, "against": result.champion_uri, "task": result.task, "n_rows": result.n_rows,
               "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "metrics": {r.metric: r.candidate for r in result.rows},
               "failed": [r.metric for r in result.failures]}
    text = json.dumps(summary, allow_nan=False)
    call(c.set_model_version_tag, version.name, version.version, TAG + "evaluation", text)
    stored.append("tag")
    if version.run_id:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        rel = f"nbprod-evaluations/{stamp}-{int(time.time() * 1000) % 1000:03d}.json"
        stored.append(rel)
        call(c.log_text, version.run_id, json.dumps({**result.to_dict(), "thresholds": thresholds}, indent=1,
                                                    allow_nan=False), rel)
