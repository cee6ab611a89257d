"""Realised performance where ground truth has arrived: classification or regression metrics.

Predictions come from the log as JSON: a class label, a number, or a list of class probabilities
(``predict_proba``). :func:`normalise` turns them into a predicted label and, when the model
gave one, a score for the positive class — what ROC AUC needs. A metric that cannot be computed
says why (``status``) instead of returning NaN: one class only in the window, labels only (no
scores) for ROC AUC, and so on.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["infer_task", "normalise", "performance", "CLASSIFICATION", "REGRESSION"]

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = ("mae", "rmse")
_MAX_CLASSES = 20


def _is_int_like(v: Any) -> bool:
    return isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and float(v).is_integer())


def infer_task(labels: list) -> str:
    """Classification when labels are strings, bools or few distinct integers; else regression."""
    values = [v for v in labels if v is not None]
    if not values:
        return "classification"
    if all(_is_int_like(v) for v in values) and len(set(values)) <= _MAX_CLASSES:
        return "classification"
    return "regression"


def normalise(pred: Any, task: str) -> tuple[Any, float | None]:
    """(predicted value, positive-class score or None) of one logged prediction."""
    if isinstance(pred, dict) and pred:
        pred = next(iter(pred.values())) if len(pred) == 1 else list(pred.values())
    if isinstance(pred, list):
        if not pred:
            return None, None
        if len(pred) == 1:
            return normalise(pred[0], task)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pred):
            best = max(range(len(pred)), key=lambda i: pred[i])
            return best, (float(pred[-1]) if len(pred) == 2 else None)
        return None, None
    if task == "classification" and isinstance(pred, float) and not pred.is_integer() and 0.0 <= pred <= 1.0:
        return int(pred >= 0.5), pred  # a probability of the positive class
    if isinstance(pred, float) and pred.is_integer() and task == "classification":
        return int(pred), None
    return pred, None


def _positive(labels: list) -> Any:
    classes = set(labels)
    for candidate in (1, True, "1", "yes", "true"):
        if candidate in classes:
            return candidate
    return None


def performance(labels: list, predicted: list, scores: list, task: str) -> dict[str, tuple[float | None, str]]:
    """Metric name → (value, status) for one window's labelled rows."""
    import numpy as np

    out: dict[str, tuple[float | None, str]] = {}
    if task == "regression":
        try:
            y_num = np.asarray(labels, dtype=float)
            p_num = np.asarray(predicted, dtype=float)
        except (TypeError, ValueError):
            return {m: (None, "predictions are not numbers") for m in REGRESSION}
        ok = np.isfinite(y_num) & np.isfinite(p_num)
        if not ok.any():
            return {m: (None, "no numeric predictions") for m in REGRESSION}
        err = p_num[ok] - y_num[ok]
        out["mae"] = (float(np.abs(err).mean()), "ok")
        out["rmse"] = (float(math.sqrt((err ** 2).mean())), "ok")
        return out
    from sklearn import metrics as skm

    y = [str(v) if not isinstance(v, (int, bool)) else int(v) for v in labels]
    p = [str(v) if not isinstance(v, (int, bool)) and v is not None else (None if v is None else int(v))
         for v in predicted]
    # labels, predicted and scores are parallel per-row lists (monitor() builds them from one index list);
    # strict=False keeps this public function as lenient as it always was.
    pairs = [(a, b) for a, b in zip(y, p, strict=False) if b is not None]
    if not pairs:
        return {m: (None, "no usable predictions") for m in CLASSIFICATION}
    ys, ps = [a for a, _ in pairs], [b for _, b in pairs]
    y_types, p_types = {type(v) for v in ys}, {type(v) for v in ps}
    if y_types != p_types and not (y_types | p_types) <= {int, bool}:
        ys, ps = [str(v) for v in ys], [str(v) for v in ps]
    out["accuracy"] = (float(np.mean([a == b for a, b in zip(ys, ps, strict=True)])), "ok")
    positive = _positive(ys + ps)
    binary = len(set(ys) | set(ps)) <= 2 and positive is not None
    kwargs = {"pos_label": positive, "average": "binary"} if binary else {"average": "macro"}
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        out[name] = (float(fn(ys, ps, zero_division=0, **kwargs)), "ok" if binary else "ok (macro)")
    scored = [(a, s) for a, s in zip(y, scores, strict=False) if s is not None and math.isfinite(s)]
    if not binary:
        out["roc_auc"] = (None, "n/a: not a binary task")
    elif len(scored) < len(y):
        out["roc_auc"] = (None, "n/a: the model returns labels, not scores")
    elif len({a for a, _ in scored}) < 2:
        out["roc_auc"] = (None, "not enough data: one class only in the window")
    else:
        truth = [1 if a == positive else 0 for a, _ in scored]
        out["roc_auc"] = (float(skm.roc_auc_score(truth, [s for _, s in scored])), "ok")
    return out
