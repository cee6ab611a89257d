"""``nbprod.drift(reference, current)``: compare new data with a training baseline.

The reference can be a training profile (``nbprod.profile(df)`` or a ``profile.json`` path), a
registered model (``"credit@champion"``: its stored profile), or a DataFrame. With a frame every
statistic equals scipy's; with a profile the statistics come from its quantiles, category counts
and sample, so the training data need not be kept — each result row says how it was computed.
The current frame is read one column at a time (one sorted copy of one column at a time), so the
memory used beyond the current frame is one column plus O(columns × bins).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..data._columns import check_frame, kind_of
from ..data.partitioned import drift_sample, is_dask_frame, profile_partitioned
from ..errors import DriftError
from . import engine, sides
from .choice import default_test, get_test
from .report import NOT_IN_CURRENT, TYPE_CHANGED, ColumnDrift, DriftReport

__all__ = ["drift"]


#: Usable (non-null, finite) values a column needs on each side before it is tested.
MIN_ROWS = 30


def drift(reference: Any, current: Any, *, columns: list[str] | None = None,
          tests: str | Mapping[str, str] | None = None, thresholds: float | Mapping[str, float] | None = None,
          drift_share: float = 0.5, prediction: str | None = None, target: str | None = None,
          min_rows: int = MIN_ROWS) -> DriftReport:
    """Drift of ``current`` against ``reference``, per column and for the dataset.

    ``tests``: one test name for every column, or ``{column: test}`` (``ks``, ``chisquare``, ``z``,
    ``wasserstein``, ``jensenshannon``, ``psi``); unlisted columns get Evidently's default choice.
    ``thresholds``: one value or ``{column: value}``; default 0.05 for p-values, 0.1 for distances.
    ``prediction`` / ``target`` name the model-output and label columns: they are tested with the
    same machinery and reported as prediction drift and label drift, outside the dataset share.
    ``min_rows``: a column with fewer usable (non-null, finite) values than this on either side
    is reported as "not enough data" instead of tested (default 30: a test on a handful of rows
    flags noise as drift).

    A reference column the current data lacks (the label of a training profile, checked against
    unlabelled traffic) is a "not tested" row that says so; the drift share is computed over the
    columns that were judged. Only current data sharing no column with the reference is an error.
    A column whose type changed (numbers arriving as text) is a "type changed" row counted as
    drifted: it is judged, and ``fail_on_drift`` (``--fail-on-drift``) fails on it.
    """
    if is_dask_frame(reference):  # a dask reference becomes its partitioned profile
        reference = profile_partitioned(reference)
    if is_dask_frame(current):  # the tests run on a uniform sample of the partitions (nbprod.data.partitioned)
        current = drift_sample(current)

    if not 0 < drift_share <= 1:
        raise DriftError(f"drift_share must be in (0, 1], got {drift_share}",
                         "use e.g. drift_share=0.5 (--drift-share 0.5)")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise DriftError(f"min_rows must be a whole number ≥ 1, got {min_rows!r}", f"use e.g. min_rows={MIN_ROWS}")
    ref = _Reference.resolve(reference)
    current = check_frame(current, "the current data")
    if len(current) == 0:
        raise DriftError("the current data has no rows (an empty window)",
                         "pass a frame with rows, or widen the time window")
    names, missing = _choose_columns(ref.names, list(map(str, current.columns)), columns, prediction, target)
    test_for = _per_column(tests, names, "tests")
    threshold_for = _per_column(thresholds, names, "thresholds")
    for name, value in threshold_for.items():
        _threshold(value, name)
    label_of = {str(c): c for c in current.columns}  # names are text; the frame may use other labels
    rows = []
    for name in names:
        role = "prediction" if name == prediction else "target" if name == target else "feature"
        if name in missing:
            rows.append(_not_in_current(name, role, ref))
            continue
        changed = _type_changed(name, role, ref, current[label_of[name]])
        if changed is not None:
            rows.append(changed)
            continue
        rows.append(_column(name, role, ref, current[label_of[name]], test_for.get(name), threshold_for.get(name),
                            min_rows))
    extra = [c for c in map(str, current.columns) if c not in ref.names]
    return DriftReport(rows, drift_share=drift_share, reference=ref.label, n_reference=ref.n_rows,
                       n_current=len(current), extra_columns=extra)


class _Reference:
    """The reference, whatever was passed: a frame, or a profile (possibly from a model)."""

    def __init__(self, *, frame=None, profile=None, label: str = "") -> None:
        self.frame = frame
        self.profile = profile
        self.label = label
        self._sample = None
        if frame is not None:
            self.names = list(map(str, frame.columns))
            self._labels = dict(zip(self.names, frame.columns, strict=True))
            self.n_rows = len(frame)
        else:
            self.names = list(profile.columns)
            self.n_rows = int(profile.n_rows)
            sample = getattr(profile, "sample", None) or {}
            self.sample_rows = len(next(iter(sample.values()))) if sample else 0

    @classmethod
    def resolve(cls, reference: Any) -> "_Reference":
        if isinstance(reference, pd.DataFrame):
            return cls(frame=check_frame(reference, "the reference data"), label="frame")
        if hasattr(reference, "columns") and hasattr(reference, "n_rows"):
            return cls(profile=reference, label="profile")
        if isinstance(reference, str):
            return cls._from_string(reference)
        if isinstance(reference, pd.Series):
            raise DriftError("the reference is a pandas Series", "pass a DataFrame, a profile or a model URI")
        raise DriftError(f"cannot use a {type(reference).__name__} as the drift reference",
                         "pass a training profile, a profile.json path, a model URI like 'credit@champion' "
                         "or a DataFrame")

    @classmethod
    def _from_string(cls, text: str) -> "_Reference":
        path = Path(text)
        if path.suffix.lower() == ".json" and path.is_file():
            from ..data.profile import Profile

            try:
                return cls(profile=Profile.from_json(path.read_text(encoding="utf-8")), label=f"profile {path.name}")
            except DriftError:
                raise
            except Exception as exc:  # a JSON that is not a profile: say so
                from ..errors import NbprodError

                if isinstance(exc, NbprodError):
                    raise
                raise DriftError(f"{text} is not a readable nbprod profile: {exc}",
                                 "pass a profile written by Profile.to_json, or a data file") from exc
        if path.is_file():
            from ..data.io import read_frame

            return cls(frame=read_frame(text), label=f"frame {path.name}")
        if path.suffix.lower() in DATA_SUFFIXES:
            raise DriftError(f"the reference file {text} does not exist",
                             "check the path (relative paths start at the working directory), or pass a model URI "
                             "like 'credit@champion'")
        from ..registry import load_profile  # here: only a model URI needs the registry (and mlflow)

        return cls(profile=load_profile(text), label=f"model {text}")

    # -- per column ----------------------------------------------------------------------------
    def column(self, name: str):
        """The reference frame's column called ``name`` (whatever its label's type)."""
        return self.frame[self._labels[name]]

    def kind(self, name: str) -> str:
        if self.frame is not None:
            return series_kind(self.column(name))
        return getattr(self.profile.columns[name], "kind", "categorical")

    def side(self, name: str):
        if self.frame is not None:
            series = self.column(name)
            return sides.from_series(series, reference_kind=_object_kind(series))
        col = self.profile.columns[name]
        if self.sample_rows and self.sample_rows >= self.n_rows:
            # the sample holds every reference row: use it as the reference itself (exact)
            series = self._sample_frame()[name]
            integer = str(getattr(col, "dtype", "")).lower().startswith(("int", "uint"))
            side = sides.from_series(series, reference_kind=getattr(col, "kind", None))
            if side.kind in ("numeric", "categorical") and getattr(col, "kind", "") == "numeric":
                categorical = integer and (side.distinct or 0) <= sides.INTEGER_CARDINALITY_LIMIT
                if categorical and side.kind == "numeric":
                    side = sides.from_series(series, reference_kind="numeric", categorical=True)
            return side
        sample = None
        if getattr(col, "kind", "") == "numeric" and self.sample_rows:
            import pandas as pd

            sample = pd.Series(self.profile.sample[name], dtype="float64")
        return sides.from_profile_column(col, sample)

    def _sample_frame(self):
        if self._sample is None:
            self._sample = self.profile.sample_frame()
        return self._sample


def _choose_columns(ref_names: list[str], cur_names: list[str], columns, prediction,
                    target) -> tuple[list[str], list[str]]:
    """The columns to report on, and those of them the current data lacks (reported, not tested)."""
    if columns is not None:
        if isinstance(columns, str):
            columns = [columns]
        unknown = [c for c in columns if c not in ref_names]
        if unknown:
            raise DriftError(f"column(s) not in the reference: {', '.join(map(repr, unknown))}",
                             f"choose among the reference columns: {', '.join(ref_names)}")
        names = list(dict.fromkeys(columns))
    else:
        names = list(ref_names)
    for role, name in (("prediction", prediction), ("target", target)):
        if name is None:
            continue
        if name not in ref_names:
            raise DriftError(f"the {role} column {name!r} is not in the reference",
                             f"name a reference column as {role}= (--{role}); columns: {', '.join(ref_names)}")
        if name not in names:
            names.append(name)
    missing = [c for c in names if c not in cur_names]
    if len(missing) == len(names):
        shared = [c for c in ref_names if c in cur_names]
        if columns is not None and shared:
            fix = (f"choose columns both sides have: {_some(shared)} (columns=[...], "
                   "or --columns a,b)")
        else:
            fix = ("pass current data with the reference's columns (the same features, named the same), "
                   "or a reference profiled from data like it")
        raise DriftError(f"the current data has none of the column(s) to compare: {_some(names)} "
                         f"(its columns: {_some(cur_names)})", fix)
    return names, missing


def _some(names: list[str], limit: int = 10) -> str:
    """Up to ``limit`` names, quoted, and how many more."""
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "") if names else "none"


def _not_in_current(name: str, role: str, ref: "_Reference") -> ColumnDrift:
    """The row of a reference column the current data lacks: not tested, and why."""
    r = ref.side(name)
    return ColumnDrift(name, role, r.kind, None, None, None, None, None, None, False, status="not tested",
                       reason=NOT_IN_CURRENT, n_reference=r.n, nulls_reference=r.nulls,
                       infinite_reference=r.infinite)


def _per_column(value, names: list[str], what: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = [c for c in value if c not in names]
        if unknown:
            raise DriftError(f"{what} name column(s) that are not tested: {', '.join(map(repr, unknown))}",
                             f"use columns among: {', '.join(names)}")
        return dict(value)
    return {n: value for n in names}


def _object_kind(series) -> str | None:
    """The kind of an ``object`` column's non-null values (JSON with nulls: ``[True, None]`` is
    boolean, ``[1, None, 2.5]`` numeric); None for any other dtype. One C-level pass."""
    if series.dtype != object:
        return None

    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "boolean":
        return "boolean"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    return "categorical"


def series_kind(series) -> str:
    """:func:`nbprod.data._columns.kind_of` of the dtype, an object column read by its values."""
    return _object_kind(series) or kind_of(series.dtype)


def _type_changed(name: str, role: str, ref: _Reference, series) -> ColumnDrift | None:
    """The row of a column whose kind changed (numbers arriving as text…), or None when it did not.

    Such a column cannot be tested against its reference, but it is a data problem, not a lack of
    data: it is judged as drifted."""
    want, got = ref.kind(name), series_kind(series)
    if want == got or series.isna().all():
        return None
    r = ref.side(name)
    before = _kind_label(want, getattr(ref.profile.columns[name], "dtype", "") if ref.frame is None
                         else ref.column(name).dtype)
    after = _kind_label(got, series.dtype)
    present = series.notna()
    n = int(present.sum())
    detail = ""
    if want == "numeric" and after == "text":  # how many values broke it (counted, never shown)
        text = int((present & pd.to_numeric(series, errors="coerce").isna()).sum())
        if text == 0:
            detail = ": numbers stored as text"
        else:
            detail = f": {text:,} of {n:,} values {'is not a number' if text == 1 else 'are not numbers'}"
    return ColumnDrift(name, role, r.kind, None, None, None, None, None, None, True, status=TYPE_CHANGED,
                       reason=f"{before} → {after}{detail}; counted as drifted", n_reference=r.n, n_current=n,
                       nulls_reference=r.nulls, nulls_current=len(series) - n, infinite_reference=r.infinite)


def _kind_label(kind: str, dtype: Any) -> str:
    """A column's kind as a user reads it: strings are "text", a pandas category is "categorical"."""
    return "text" if kind == "categorical" and str(dtype) != "category" else kind


DATA_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".json", ".jsonl", ".feather", ".arrow", ".xlsx")


def _threshold(value: Any, column: str, score: str | None = None) -> float:
    """A threshold as a float: finite, in (0, 1] for p-values, ≥ 0 for distances; else DriftError."""
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise DriftError(f"the threshold for {column!r} is not a number: {value!r}",
                         "use e.g. 0.05 for p-value tests, 0.1 for distances") from None
    if isinstance(value, bool) or not math.isfinite(limit) or limit < 0:
        raise DriftError(f"the threshold for {column!r} must be a finite number ≥ 0, got {value!r}",
                         "use e.g. 0.05 for p-value tests, 0.1 for distances")
    if score == "p_value" and not 0 < limit <= 1:
        raise DriftError(f"the p-value threshold for {column!r} must be in (0, 1], got {value!r}",
                         "use e.g. 0.05 (drift when the p-value is below it)")
    return limit


def _column(name: str, role: str, ref: _Reference, series, test_name, threshold, min_rows: int) -> ColumnDrift:
    r = ref.side(name)
    kind = "categorical" if r.kind == "categorical" else r.kind
    categorical = r.kind == "categorical"
    if r.kind == "datetime":
        return ColumnDrift(name, role, "datetime", None, None, None, None, None, None, False, status="not tested",
                           reason="datetime columns are not tested for drift (as in Evidently); "
                                  "derive a numeric feature from it to test it",
                           n_reference=r.n, nulls_reference=r.nulls)
    c = sides.from_series(series, reference_kind="numeric" if r.numeric_values else r.kind, categorical=categorical)
    base = dict(column=name, role=role, kind=kind, n_reference=r.n, n_current=c.n,
                nulls_reference=r.nulls, nulls_current=c.nulls, infinite_reference=r.infinite,
                infinite_current=c.infinite)
    if r.n < min_rows or c.n < min_rows:
        side, s = ("reference", r) if r.n < min_rows else ("current data", c)
        if s.n == 0 and s.infinite and not s.nulls:
            why = f"all values are infinite in the {side}"
        elif s.n == 0 and s.infinite:
            why = f"no finite values in the {side} ({s.nulls:,} null, {s.infinite:,} infinite)"
        elif s.n == 0:
            why = f"no non-null values in the {side}"
        else:
            why = f"only {s.n:,} usable value(s) in the {side}, fewer than min_rows={min_rows}"
        return ColumnDrift(test=test_name, test_display=None, score_name=None, score=None, statistic=None,
                           threshold=None, drifted=False, status="not enough data", reason=why, **base)
    if test_name is not None:
        test = get_test(test_name, name, not r.numeric_values, counts=r.counts is not None)
    else:
        test = default_test(categorical=categorical, n_reference=r.n, n_values=engine.union_values(r, c))
    limit = _threshold(threshold, name, test.score) if threshold is not None else test.threshold
    outcome = engine.run_test(test, r, c, categorical=categorical)
    distribution = engine.distributions(r, c, categorical)
    value = outcome.score if test.score == "p_value" else outcome.statistic
    method = outcome.method
    if value is None or math.isnan(value):
        why = "only one category on both sides" if (r.distinct or 0) <= 1 else f"cannot compute {test.name}: {method}"
        return ColumnDrift(test=test.name, test_display=test.display, score_name=test.score, score=None, statistic=None,
                           threshold=limit, drifted=False, status="not enough data", reason=why,
                           exact=outcome.exact, method=method, distribution=distribution, **base)
    statistic = outcome.statistic if test.score == "p_value" else value
    return ColumnDrift(test=test.name, test_display=test.display, score_name=test.score, score=float(value),
                       statistic=None if statistic is None or math.isnan(statistic) else float(statistic),
                       threshold=limit, drifted=bool(test.drifted(value, limit)), exact=outcome.exact, method=method,
                       distribution=distribution, **base)

