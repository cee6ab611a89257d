"""The result of a drift computation: one row per column, dataset drift, and its displays.

A :class:`DriftReport` holds summaries only (scores, counts, per-bin shares for the charts),
never raw rows, so its HTML stays small however large the data was.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import _format
from .._display import Display, Lines, Table, View
from .._files import write_text_atomic
from ..errors import DriftError

__all__ = ["ColumnDrift", "DriftReport", "psi_band", "NOT_IN_CURRENT", "TYPE_CHANGED"]

#: The reason of a reference column's row when the current data lacks that column.
NOT_IN_CURRENT = "not in the current data"
#: The status of a column whose kind changed (numbers arriving as text): judged, as drifted.
TYPE_CHANGED = "type changed"
#: Statuses with a decision (drifted or not): the columns the drift share counts.
JUDGED = ("ok", TYPE_CHANGED)


def psi_band(value: float | None) -> str | None:
    """The conventional PSI reading: < 0.1 stable, 0.1–0.25 moderate shift, ≥ 0.25 significant shift."""
    if value is None or not math.isfinite(value):
        return None
    return "stable" if value < 0.1 else "moderate" if value < 0.25 else "significant"


@dataclass
class ColumnDrift:
    """Drift of one column. ``status`` is "ok" when tested, otherwise says why there is no score."""

    column: str
    role: str  # "feature" | "prediction" | "target"
    kind: str  # "numeric" | "categorical" | "datetime"
    test: str | None
    test_display: str | None
    score_name: str | None  # "p_value" | "distance"
    score: float | None  # the p-value or distance the threshold applies to
    statistic: float | None  # the test statistic (KS D, chi², z) or the distance itself
    threshold: float | None
    drifted: bool
    status: str = "ok"  # "ok" | "not enough data" | "not tested" | "type changed" (drifted, without a score)
    reason: str | None = None
    exact: bool = True
    method: str = ""
    n_reference: int = 0
    n_current: int = 0
    nulls_reference: int = 0
    nulls_current: int = 0
    infinite_reference: int = 0  # ±inf values, left out of the test (as Evidently does) but counted
    infinite_current: int = 0
    distribution: dict = field(default_factory=dict, repr=False)

    @property
    def p_value(self) -> float | None:
        return self.score if self.score_name == "p_value" else None

    @property
    def distance(self) -> float | None:
        return self.score if self.score_name == "distance" else None

    @property
    def band(self) -> str | None:
        return psi_band(self.score) if self.test == "psi" else None

    def to_dict(self, *, distribution: bool = True) -> dict:
        out = asdict(self)
        for key in ("score", "statistic"):
            value = out[key]
            if value is not None and not math.isfinite(value):
                out[key] = "inf" if value > 0 else "-inf"
        out["band"] = self.band
        if not distribution:
            out.pop("distribution")
        return out


@dataclass(repr=False)
class DriftReport(Display):
    """Per-column drift and dataset drift (share of drifted feature columns ≥ ``drift_share``)."""

    columns: list[ColumnDrift]
    drift_share: float = 0.5
    reference: str = ""  # what the reference was: "profile", "frame", "model <uri>"
    n_reference: int = 0
    n_current: int = 0
    extra_columns: list[str] = field(default_factory=list)
    fail_on_drift: bool = False  # set by `nbprod drift --fail-on-drift`: then ``ok`` is False on drift or a type change

    # -- the numbers -------------------------------------------------------------------------
    @property
    def features(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.role == "feature"]

    @property
    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.features if c.status == "ok"]

    @property
    def judged(self) -> list[ColumnDrift]:
        """Feature columns with a decision: tested, or whose type changed (drifted)."""
        return [c for c in self.features if c.status in JUDGED]

    @property
    def type_changed(self) -> list[str]:
        """Columns (of any role) whose type changed since the reference."""
        return [c.column for c in self.columns if c.status == TYPE_CHANGED]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def share_drifted(self) -> float:
        judged = self.judged
        return len(self.drifted_columns) / len(judged) if judged else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.judged) and self.share_drifted >= self.drift_share

    @property
    def missing_columns(self) -> list[str]:
        """Reference columns the current data lacks (reported as "not tested" rows)."""
        return [c.column for c in self.columns if c.status == "not tested" and c.reason == NOT_IN_CURRENT]

    @property
    def not_enough_data(self) -> list[str]:
        return [c.column for c in self.columns if c.status not in JUDGED]

    @property
    def prediction_drift(self) -> ColumnDrift | None:
        return next((c for c in self.columns if c.role == "prediction"), None)

    @property
    def target_drift(self) -> ColumnDrift | None:
        return next((c for c in self.columns if c.role == "target"), None)

    @property
    def ok(self) -> bool:
        """False only when asked to gate (``fail_on_drift``) and the dataset drifted or a column's type changed."""
        return not (self.fail_on_drift and (self.dataset_drift or bool(self.type_changed)))

    def __getitem__(self, column: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise DriftError(f"no column {column!r} in this drift report",
                         f"use one of: {', '.join(c.column for c in self.columns)}")

    def to_dict(self) -> dict:
        return {
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "share_drifted": self.share_drifted,
            "n_drifted": len(self.drifted_columns),
            "n_tested": len(self.tested),
            "n_judged": len(self.judged),
            "type_changed": self.type_changed,
            "drifted_columns": self.drifted_columns,
            "not_enough_data": self.not_enough_data,
            "extra_columns": list(self.extra_columns),
            "missing_columns": self.missing_columns,
            "reference": self.reference,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "prediction_drift": _decision(self.prediction_drift),
            "target_drift": _decision(self.target_drift),
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_frame(self):
        """One row per column (without the chart data): a tidy pandas frame."""
        return pd.DataFrame([c.to_dict(distribution=False) for c in self.columns])

    # -- displays ----------------------------------------------------------------------------
    def _headline(self) -> str:
        verdict = "DATASET DRIFT" if self.dataset_drift else "no dataset drift"
        if self.type_changed:
            verdict += f"{', but' if not self.dataset_drift else ','} TYPE CHANGED ({', '.join(self.type_changed)})"
        sides = f"reference {self.reference} ({_format.rows(self.n_reference)}), current {_format.rows(self.n_current)}"
        if not self.judged:
            return f"{verdict}: no feature column could be judged (each row says why); {sides}"
        share = _format.score(self.share_drifted)
        compared = f"{share} {'≥' if self.dataset_drift else '<'} {_format.number(self.drift_share)}"
        unjudged = len(self.features) - len(self.judged)
        return (f"{verdict}: {_format.count(len(self.drifted_columns))} of {_format.rows(len(self.judged), 'column')} "
                f"drifted{f', {_format.count(unjudged)} not judged' if unjudged else ''} (drift share {compared}); "
                f"{sides}")

    def _notes(self) -> list[str]:
        """What the headline's share means, and the columns the report could not compare."""
        threshold = _format.number(self.drift_share)
        notes = [f"drift share: the share of judged feature columns that drifted; the dataset drifted when it is "
                 f"≥ {threshold} (drift_share={threshold}, --drift-share {threshold})"]
        if self.type_changed:
            notes.append(f"type changed: {', '.join(self.type_changed)} (counted as drifted; --fail-on-drift fails on "
                         "it): cast the column back to its reference type, or fix its source")
        if self.missing_columns:
            notes.append(f"not in the current data, not judged: {', '.join(self.missing_columns)}")
        if self.extra_columns:
            notes.append(f"not in the reference, not tested: {', '.join(self.extra_columns)}")
        return notes

    def _rows(self) -> list[list[Any]]:
        order = sorted(self.columns, key=lambda c: (not c.drifted, c.status != "ok", c.role != "feature", c.column))
        rows = []
        for c in order:
            note = c.reason or ("" if c.exact else f"approx.: {c.method}")
            if c.band:
                note = f"{c.band}; {note}" if note else c.band
            rows.append([c.column + ("" if c.role == "feature" else f" ({c.role})"), c.kind, c.test or _format.MISSING,
                         _format.score(_num(c.score)), _format.score(c.threshold),
                         "YES" if c.drifted else (_format.MISSING if c.status != "ok" else "no"),
                         c.status, note])
        return rows

    _HEADER = ["column", "kind", "test", "score", "threshold", "drifted", "status", "note"]

    def _view(self) -> View:
        tone = "bad" if self.dataset_drift or self.type_changed else "ok"
        return View(self._headline(), [Table(self._HEADER, self._rows(), more="more columns", all_in_text=True),
                                       Lines(self._notes(), style="plain")], tone=tone)

    def chart(self, column: str | None = None):
        """Altair charts: ``column`` → its reference vs current distribution; None → the drift
        scores of every column above the overlays of the (up to four) most drifted columns."""
        # here, not at the top: altair loads only when a report is drawn, and charts imports this module
        from .charts import distribution_chart, overview_chart

        if column is not None:
            return distribution_chart(self[column])
        return overview_chart(self)

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML report (summaries and per-bin shares only, no scripts)."""
        from .charts import html_document  # here: as in chart() (altair; charts imports this module)

        path = Path(path)
        text = html_document(self)
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise DriftError(f"cannot write the drift report to {path}: {exc}", "choose a writable path") from exc
        return path

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _decision(row: ColumnDrift | None) -> bool | None:
    """Whether a column drifted; None when it is absent or was not judged."""
    return None if row is None or row.status not in JUDGED else row.drifted


def _num(value: float | None) -> Any:
    if value is None:
        return None
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.4g}")
