"""``PredictionResult``: what ``Deployment.predict`` returns, displayed like every other result.

The server's answer was handed back as a bare dict, which a notebook printed as
``{'predictions': [...], 'ood': [[], ...]}``. This is still that dict (a ``dict`` subclass, so
``answer["predictions"]``, ``json.dumps(answer)`` and ``isinstance(answer, dict)`` keep working)
and it also renders itself: a table of the predictions with the serving version, each prediction
id and its out-of-distribution flags in a notebook, readable text in a terminal. ``to_dict()``
gives the plain dict.
"""

from __future__ import annotations

from typing import Any

from .. import _format
from .._display import Display, Lines, Table, View
from ..config import settings

__all__ = ["PredictionResult"]

_HEADER = ["#", "prediction", "version", "prediction id", "out of distribution"]


class PredictionResult(Display, dict):
    """The server's answer (``predictions``, ``model_version``, ``prediction_ids``, ``ood``)."""

    def __init__(self, answer: dict[str, Any], deployment: str | None = None) -> None:
        super().__init__(answer)
        self.deployment = deployment

    @property
    def predictions(self) -> list:
        return list(self.get("predictions") or [])

    @property
    def model_version(self) -> str | None:
        return self.get("model_version")

    @property
    def prediction_ids(self) -> list[str]:
        return list(self.get("prediction_ids") or [])

    @property
    def ood(self) -> list[list[str]]:
        return list(self.get("ood") or [])

    def to_dict(self) -> dict[str, Any]:
        """The server's answer as a plain dict (what ``predict`` returned before)."""
        return dict(self)

    # -- displays ---------------------------------------------------------------------------------
    def _title(self) -> str:
        n = len(self.predictions)
        flagged = sum(1 for flags in self.ood if flags)
        where = f"{self.deployment}: " if self.deployment else ""
        ood = f"; {_format.rows(flagged)} out of distribution" if flagged else ""
        return f"{where}{_format.rows(n, 'prediction')} by model version {self.model_version or '?'}{ood}"

    def _rows(self, limit: int) -> list[list[str]]:
        ids, ood = self.prediction_ids, self.ood
        rows = []
        for i, value in enumerate(self.predictions[:limit]):
            flags = ood[i] if i < len(ood) else []
            rows.append([str(i), _prediction(value), str(self.model_version or "?"),
                         ids[i] if i < len(ids) else _format.MISSING, "; ".join(flags) if flags else "–"])
        return rows

    def _view(self) -> View:
        """The predictions as a table (cut at ``display_limit``); ``repr`` is this text, so a
        notebook's ``text/plain`` and a terminal show the table, not the dict."""
        limit = max(int(settings.display_limit), 1)  # rows are made for what is shown: an answer can be long
        more = len(self.predictions) - limit
        return View(self._title(), [
            Table(_HEADER, self._rows(limit), limit=0),
            Lines([f"… {_format.count(more)} more (to_dict() has them all)"] if more > 0 else [], style="plain"),
            Lines([".to_dict() gives the server's answer; the prediction ids join late labels (nbprod.feedback)"]),
        ])


def _prediction(value: Any) -> str:
    """One prediction: a label or number as it is, class probabilities as scores."""
    if isinstance(value, list):
        return "[" + ", ".join(_format.score(v) if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, float):
        return _format.number(value)
    return str(value)
