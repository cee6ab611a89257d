"""The training-time distributions of a model's outputs: its predictions and the labels.

Input drift is measured against the training profile. Prediction drift and label drift need a
baseline of the same kind: without one, a monitor can only compare a window with an earlier
window, and a shift that is already there when the period starts is never seen. At registration
nbprod predicts on (a sample of) the training frame exactly as the server will answer, reduces
each answer the way the monitor reduces a logged prediction (:func:`prediction_value`), and stores
the profile of ``prediction`` and ``label`` as ``nbprod/outputs.json`` beside the input profile.
"""

from __future__ import annotations

from typing import Any, Callable

from ..monitoring.performance import infer_task, normalise

__all__ = ["OUTPUTS_FILE", "SAMPLE_ROWS", "outputs_profile", "prediction_value"]

OUTPUTS_FILE = "outputs.json"
#: Rows of the training frame predicted on at registration: enough for decile and frequency
#: estimates (the drift tests' bins), bounded so registering a 10M-row frame stays quick.
SAMPLE_ROWS = 50_000


def prediction_value(pred: Any, task: str) -> Any:
    """The one value of a logged prediction that drift is measured on: the positive-class score
    when the model gave probabilities for two classes, else the predicted value."""
    value, score = normalise(pred, task)
    return score if score is not None else value


def outputs_profile(predict: Callable[[Any], Any], X: Any, y: Any = None, *, seed: int = 0):
    """Profile of ``prediction`` (and ``label`` when ``y`` is given) on up to :data:`SAMPLE_ROWS`
    rows of ``X``; None when the model cannot predict on them (the monitor then falls back to its
    first window and says so)."""
    import numpy as np
    import pandas as pd

    from ..data.profile import profile

    n = len(X)
    rows = np.sort(np.random.default_rng(seed).choice(n, SAMPLE_ROWS, replace=False)) if n > SAMPLE_ROWS else None
    Xs = X if rows is None else (X.iloc[rows] if hasattr(X, "iloc") else X[rows])
    labels = None
    if y is not None:
        yv = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
        labels = (yv if rows is None else yv[rows]).tolist()
    try:
        raw = predict(Xs)
    except Exception:  # noqa: BLE001 - a model that predicts only through its server: no baseline
        return None
    raw = raw.to_numpy() if hasattr(raw, "to_numpy") else np.asarray(raw)
    answers = raw.tolist()  # what the server's JSON carries: a scalar or a list per row
    task = infer_task(labels) if labels else infer_task([a for a in answers[:200] if not isinstance(a, list)]) \
        if not (answers and isinstance(answers[0], list)) else "classification"
    frame = pd.DataFrame({"prediction": [prediction_value(a, task) for a in answers]})
    if labels is not None:
        frame["label"] = labels
    return profile(frame)
