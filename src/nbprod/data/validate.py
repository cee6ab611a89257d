"""Validate a frame against a training profile and/or rules; flag out-of-distribution rows.

``validate(df, against=profile_or_rules)`` is *lazy*: it runs every check and collects all
failures (no rows at all, missing/extra columns, dtype mismatches, nulls where none were seen or
clearly more than were seen, values outside the seen range, unseen categories, duplicate keys,
rule violations) into one
:class:`ValidationReport`, each with a count and a few example rows. Nothing raises on bad data
until you ask (``report.raise_for_errors()``); bad *input* (not a frame, an unreadable profile,
a malformed rule, rules that hold no rule) raises a typed :class:`~nbprod.errors.NbprodError`
at once.

``row_flags(df, profile)`` is the per-row variant the model server calls on every request: which
rows hold a value outside the seen range or an unseen category, and why.

All checks are vectorised, one column at a time (see :mod:`nbprod.data._checks`).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from pandas.api.types import is_object_dtype

from .. import _format
from .._display import Display, Table, View
from ..config import settings
from ..errors import DataError, ModelNotFoundError, RuleError, ValidationError
from . import _checks as K
from . import _columns as C
from ._checks import Failure
from .ood import OodChecker, bounds, resolve_tolerance
from .profile import ColumnProfile, Profile
from .rules import Rules

__all__ = ["validate", "validate_part", "resolve_against", "require_rules", "resolve_null_tolerance",
           "null_share_message", "ValidationReport", "Failure", "row_flags", "checker_for", "parse_profiled_dates",
           "NO_SUCH_AGAINST", "NO_ROWS", "NULL_SIGNIFICANCE"]


@dataclass(repr=False)
class ValidationReport(Display):
    """All failures of one validation. ``ok`` is True when there are none."""

    n_rows: int
    failures: list[Failure] = field(default_factory=list)
    against: str = ""
    n_columns: int = 0
    #: Missing values per profiled column that had some in training, of a part of the data
    #: (``validate_part(whole=False)``): the merge of the parts judges their share.
    _null_counts: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    def failures_for(self, column: str) -> list[Failure]:
        return [f for f in self.failures if f.column == column]

    @property
    def checks(self) -> list[str]:
        """The distinct failed checks, in order of first appearance."""
        return list(dict.fromkeys(f.check for f in self.failures))

    def raise_for_errors(self) -> ValidationReport:
        """Raise :class:`~nbprod.errors.ValidationError` (carrying this report) unless ``ok``."""
        if not self.ok:
            raise ValidationError(
                f"validation failed: {self._summary()}",
                "inspect err.report (or display it) for counts and example rows; if the change is expected, "
                "profile the new data and validate against that", report=self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "n_rows": self.n_rows, "n_columns": self.n_columns, "against": self.against,
                "failures": [f.to_dict() for f in self.failures]}

    def _summary(self) -> str:
        n = len(self.failures)
        cols = len({f.column for f in self.failures if f.column is not None})
        if any(f.check == "no_rows" for f in self.failures):
            more = f"; {_format.rows(n - 1, 'more failure')} in {_format.rows(cols, 'column')}" if n > 1 else ""
            return f"the data has no rows ({_format.rows(self.n_columns, 'column')}){more}"
        return (f"{_format.rows(n, 'failure')} in {_format.rows(cols, 'column')} of {_format.rows(self.n_rows)}")

    def _headline(self) -> str:
        against = f" against {self.against}" if self.against else ""
        if self.ok:
            return (f"Validation passed: {_format.rows(self.n_rows)} × {_format.rows(self.n_columns, 'column')}"
                    f"{against}")
        return f"Validation FAILED: {self._summary()}{against}"

    def _rows(self) -> list[list[Any]]:
        return [[f.column or _format.MISSING, f.check, f.count, f.message] for f in self.failures]

    def _view(self) -> View:
        mark = "✔" if self.ok else "✘"
        parts = [] if self.ok else [Table(["column", "check", "rows", "message"], self._rows(), more="more failures")]
        return View(f"{mark} {self._headline()}", parts, tone="ok" if self.ok else "bad")


# ---------------------------------------------------------------------------------------------
def validate(df: pd.DataFrame, against: Any = None, *, rules: Rules | dict | str | None = None,
             key: str | list[str] | None = None, tolerance: float | None = None,
             null_tolerance: float | None = None,
             model_profile: Callable[[str], Profile] | None = None) -> ValidationReport:
    """Check ``df`` against a profile and/or rules; collect every failure into a report.

    ``against`` is a :class:`Profile`, :class:`Rules`, a dict of rules, a path to a profile JSON
    (or a YAML rules file), or a model URI (``"credit-risk@champion"``, ``"models:/credit-risk/3"``)
    whose registered training profile ``model_profile(uri)`` returns — :func:`nbprod.validate`
    passes the registry's (nbprod.data sits below the registry and does not import it).
    ``rules`` adds rules on top of a profile. ``key`` (default: the profile's key) is checked for
    duplicates. ``tolerance`` widens the seen range by that fraction of its span (default
    ``settings.range_tolerance``). A column that had no missing value in training fails ``nulls``
    on any; one that had some fails when its share of missing values is more than
    ``null_tolerance`` above the training share (default ``settings.null_tolerance``, 0.05: five
    percentage points) and a binomial test at the training rate puts the chance of that many at
    under :data:`NULL_SIGNIFICANCE` (so a few rows are not judged on one missing value). A
    ``dask.dataframe.DataFrame`` is validated partition by partition on Dask
    (:func:`nbprod.data.partitioned.validate_partitioned`).
    """
    from .partitioned import is_dask_frame, validate_partitioned  # it calls back into this function

    if is_dask_frame(df):
        return validate_partitioned(df, against, rules=rules, key=key, tolerance=tolerance,
                                    null_tolerance=null_tolerance, model_profile=model_profile)
    return validate_part(df, against, rules=rules, key=key, tolerance=tolerance, null_tolerance=null_tolerance,
                         model_profile=model_profile, whole=True)


def validate_part(df: pd.DataFrame, against: Any = None, *, rules: Rules | dict | str | None = None,
                  key: str | list[str] | None = None, tolerance: float | None = None,
                  null_tolerance: float | None = None, model_profile: Callable[[str], Profile] | None = None,
                  whole: bool = False) -> ValidationReport:
    """:func:`validate` of a pandas frame that may be one part of the data (``whole=False``: a
    partition, checked on a Dask worker); then the checks of the data as a whole (that it has rows,
    each column's share of missing values: counted in ``report._null_counts``) are left to
    whoever merges the parts' reports."""
    df = C.check_frame(df)
    profile, against_rules, label = resolve_against(against, model_profile=model_profile)
    extra_rules = _as_rules(rules) if rules is not None else None
    if profile is None and against_rules is None and extra_rules is None:
        raise DataError("nothing to validate against", "pass against=<Profile | Rules | profile.json | model URI>, "
                        "or rules=...; to describe the data itself use nbprod.profile(df)")
    require_rules(against_rules, extra_rules)
    tolerance = resolve_tolerance(tolerance)
    null_tolerance = resolve_null_tolerance(null_tolerance)
    keys = _keys(key, profile)
    collector = K.Collector(df, key=[k for k in keys if k in {str(c) for c in df.columns}])
    if whole and not len(df):
        collector.add(None, "no_rows", None, NO_ROWS, count=0)
    missing: set[str] = set()
    null_counts: dict[str, int] | None = None if whole else {}
    if profile is not None:
        missing = _check_profile(df, profile, collector, tolerance, null_tolerance, null_counts)
    for r in (against_rules, extra_rules):
        if r is not None:
            r.check(df, collector, missing_ok=missing)
    if keys:
        _check_key(df, keys, collector, missing)
    report = ValidationReport(n_rows=len(df), failures=collector.failures, against=label, n_columns=df.shape[1])
    report._null_counts = null_counts or {}
    return report


#: A column's missing values fail only when, at the training rate, chance would give that many
#: less often than this (a binomial test): a few rows are not judged on one missing value.
NULL_SIGNIFICANCE = 0.001


def resolve_null_tolerance(null_tolerance: float | None) -> float:
    """``null_tolerance`` as a fraction in [0, 1] (default: ``settings.null_tolerance``), else a DataError."""
    value = settings.null_tolerance if null_tolerance is None else null_tolerance
    fix = "pass a fraction between 0 and 1, e.g. 0.05 (5 percentage points above the training share)"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DataError(f"null_tolerance {value!r} is not a number", fix) from None
    if not 0 <= value <= 1:  # NaN too
        raise DataError(f"null_tolerance {value} is not between 0 and 1", fix)
    return value


def null_share_message(name: str, col: ColumnProfile, nulls: int, n: int, null_tolerance: float) -> str | None:
    """The ``nulls`` failure of a column that had missing values in training and has ``nulls`` of
    ``n`` now, or None while that share is not clearly above the training share (see :func:`validate`)."""
    rate = col.null_rate
    if col.never_null or not 0 < rate < 1 or not n or nulls / n <= rate + null_tolerance:
        return None
    from scipy.special import bdtrc  # only here: a share past the tolerance is rare

    if bdtrc(nulls - 1, n, rate) >= NULL_SIGNIFICANCE:  # P(at least `nulls` missing at the training rate)
        return None
    return (f"{name}: {nulls:,} missing values ({K.pct(nulls, n)}), the training data had {rate:.2%}: find what "
            f"empties the column upstream, or if this is expected raise null_tolerance (now {null_tolerance:g})")


#: The failure of data without rows (``no_rows``): a header-only file or an empty extract is no valid data.
NO_ROWS = ("0 rows: a header-only file or an empty extract is no data to pass; check the export or query "
           "that produced it")


def require_rules(*rules: Rules | None) -> None:
    """A RuleError for rules that hold no rule (an empty or comment-only YAML): they would check nothing."""
    for r in rules:
        if r is not None and not len(r):
            raise RuleError("the rules hold no rules: nothing would be checked",
                            "write at least one column rule, e.g. `income: {min: 0, nullable: false}`, "
                            "or add a custom check with rules.add(name, fn)")


def parse_profiled_dates(df: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """``df`` with text columns parsed as datetimes where ``profile`` says the column is a datetime
    and every non-null value is an ISO 8601 time (as CSV and JSON files hold them); a column with
    any other value stays as it is, so its dtype failure stands. Other columns are untouched."""
    parsed = {}
    for name, col in profile.columns.items():
        if col.kind != "datetime" or name not in df.columns or C.kind_of(df[name].dtype) == "datetime":
            continue
        series = df[name]
        if not (is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)) \
                or isinstance(series.dtype, pd.CategoricalDtype):
            continue
        present = series.notna()
        if not present.any():
            continue
        try:
            values = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
        except (TypeError, ValueError, OverflowError):
            continue
        if int(values.notna().sum()) != int(present.sum()):
            continue
        tz = col.dtype.split(",", 1)[1].rstrip("]").strip() if "," in col.dtype else None
        values = values.dt.tz_convert(tz) if tz else values.dt.tz_localize(None)
        try:
            parsed[name] = values.astype(col.dtype) if not tz else values
        except (TypeError, ValueError):
            parsed[name] = values
    return df.assign(**parsed) if parsed else df


def _keys(key: str | list[str] | None, profile: Profile | None) -> list[str]:
    if key is None:
        return list(profile.key or []) if profile is not None else []
    return [key] if isinstance(key, str) else [str(k) for k in key]


def _as_rules(value: Any) -> Rules:
    if isinstance(value, Rules):
        return value
    if isinstance(value, dict):
        return Rules.from_dict(value)
    if isinstance(value, (str, Path)) and Path(value).suffix.lower() in (".yaml", ".yml"):
        return Rules.load(value)
    if isinstance(value, str):
        one_word = value.strip() and "\n" not in value and ":" not in value and value.strip()[0] not in "{#"
        if one_word:  # a file name, not YAML rules
            if Path(value).expanduser().is_file():
                return Rules.load(Path(value).expanduser())
            raise RuleError(f"no rules file called {value!r} (and it is not YAML rules text)",
                            "pass a .yaml path, YAML text such as `income: {min: 0}`, Rules(...) "
                            "or a dict of column rules")
        return Rules.from_yaml(value)
    raise DataError(f"rules must be Rules, a dict or YAML, got {type(value).__name__}",
                    "pass Rules({...}), a dict of column rules, or YAML text / a .yaml path")


def resolve_against(against: Any, *, model_profile: Callable[[str], Profile] | None = None,
                    ) -> tuple[Profile | None, Rules | None, str]:
    """What to validate against: (profile, rules, label for the report). A text that is no file
    is a model URI, whose profile ``model_profile`` reads (see :func:`validate`)."""
    if against is None:
        return None, None, ""
    if isinstance(against, Profile):
        return against, None, f"profile of {against.n_rows:,} rows"
    if isinstance(against, Rules):
        return None, against, "rules"
    if isinstance(against, dict):
        if "schema_version" in against and "columns" in against:
            p = Profile.from_dict(against)
            return p, None, f"profile of {p.n_rows:,} rows"
        return None, Rules.from_dict(against), "rules"
    if isinstance(against, (str, Path)):
        text = str(against)
        path = Path(text).expanduser()
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return None, Rules.load(path), f"rules {text}"
        if path.is_file() or suffix == ".json" or "/" in text and not text.startswith(("models:/", "runs:/")):
            if not path.is_file():
                raise DataError(f"no profile file at {text}",
                                "pass the path of a profile JSON (Profile.save / `nbprod profile -o`) or a model URI")
            return Profile.load(path), None, text
        if model_profile is None:
            raise ModelNotFoundError(NO_SUCH_AGAINST.format(text), "pass a Profile, a profile .json path or a rules "
                                     ".yaml path; to validate against a registered model use nbprod.validate")
        return model_profile(text), None, text
    raise DataError(f"cannot validate against a {type(against).__name__}",
                    "pass a Profile, Rules, a dict of rules, a profile JSON path or a model URI such as "
                    "'name@champion'")


#: What a bare name (``validate(df, "typo")``) that is neither a file nor a registered model gets.
NO_SUCH_AGAINST = "no profile file and no registered model called {!r}"


def _check_profile(df: pd.DataFrame, profile: Profile, out: K.Collector, tolerance: float, null_tolerance: float,
                   null_counts: dict[str, int] | None = None) -> set[str]:
    names = {str(c): c for c in df.columns}
    n = len(df)
    missing = [c for c in profile.columns if c not in names]
    for c in missing:
        out.add(c, "missing_column", None, f"{c}: column missing (the training data had {profile.columns[c].dtype})",
                count=n)
    for c in names:
        if c not in profile.columns:
            out.add(c, "extra_column", None, f"{c}: column not in the training data ({df[names[c]].dtype})", count=n)
    todo = [(name, df[names[name]], col) for name, col in profile.columns.items() if name in names]

    def run(i: int, extremes: tuple | None = None) -> _Pending:
        pending = _Pending(out.max_examples)
        name, series, col = todo[i]
        _check_column(name, series, col, pending, tolerance, n, extremes, null_tolerance, null_counts)
        return pending

    costs = [_pass_cost(series) for _, series, _ in todo]
    workers = _workers(n, sum(c > 0 for c in costs))
    early: dict[int, _Pending | tuple] = {}
    if workers > 1:  # the long passes first, on every thread (the caller's among them), costliest first:
        # whichever thread is free takes the next, so a thread that wakes late or stalls holds no one up
        queue = deque(sorted((i for i, c in enumerate(costs) if c > 0), key=lambda i: -costs[i]))

        def long_passes() -> list[tuple[int, _Pending | tuple]]:
            done: list[tuple[int, _Pending | tuple]] = []
            while True:
                try:
                    i = queue.popleft()  # atomic: each column is taken once, by whichever thread is free
                except IndexError:
                    return done
                done.append((i, _numeric_read(*todo[i][1:]) or run(i)))

        others = [_pool(workers - 1).submit(long_passes) for _ in range(workers - 1)]
        early.update(long_passes())
        for future in others:
            early.update(future.result())
    for i in range(len(todo)):  # the rest, in the profile's column order, whatever thread finished first
        done = early.get(i)
        pending = done if isinstance(done, _Pending) else run(i, done)
        pending.replay(out)
    return set(missing)


# --- columns in parallel -----------------------------------------------------------------------------
#: Frames with fewer rows are checked serially (a thread hand-off costs more than the column).
PARALLEL_MIN_ROWS = 200_000
#: At most this many threads (pyarrow hashing and numpy reductions release the GIL).
MAX_WORKERS = 4
_POOL: tuple[int, int, Any] | None = None  # (pid, workers, executor)


#: Relative cost per row of a column's pass: a string is hashed (pyarrow: ~11 ms per 1M), a
#: number is read by two reductions (~0.6 ms per 1M).
_STRING_COST, _NUMBER_COST = 15.0, 1.0


def _numeric_read(series: pd.Series, col: ColumnProfile) -> tuple | None:
    """The ``(min, max)`` read of a plain numpy numeric column (None for any other column).

    On threads, a column's long pass is that read alone; the rest of its check follows on the
    calling thread. Run with the whole check, the threads overlapped badly: one back from a
    reduction waited for the other's Python to let go of the GIL, now and then for milliseconds
    (1M x 25, 2 threads: 18-20 -> 11-13 ms, BENCHMARKS.md, Validation)."""
    if col.kind != "numeric" or not isinstance(series.dtype, np.dtype) or series.dtype.kind not in "iuf":
        return None
    return K.numeric_extremes(series.to_numpy(), None, col.never_null)


def _pass_cost(series: pd.Series) -> float:
    """The relative cost of the column's pass over every value if it is work that releases the
    GIL, else 0 (the column is checked on the calling thread, after the threads are done).

    Numeric columns (a min and a max reduction), Arrow strings and object columns of a few shared
    strings (a hash of the strings or of their addresses) are worth a thread. ``category`` columns
    (a look-up of a few codes) are too cheap to hand off; other object and Python string columns
    hash Python objects, GIL held: on a thread they only stalled the others (pandas 2, 5 such
    columns in 1M x 25: 191 ms on 2 threads, 159 ms serial)."""
    kind = C.kind_of(series.dtype)
    if kind == "numeric":
        return _NUMBER_COST
    if kind == "categorical" and (K.arrow_strings(series) is not None
                                  or (is_object_dtype(series.dtype) and K.shares_objects(series.to_numpy()))):
        return _STRING_COST
    return 0.0


def _workers(n_rows: int, n_columns: int) -> int:
    """Threads for ``n_columns`` long-pass columns of ``n_rows`` rows (1: check serially)."""
    if n_rows < PARALLEL_MIN_ROWS or n_columns < 2:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus, n_columns))


def _pool(workers: int):
    """A process-wide thread pool (re-created after a fork, whose child has no threads)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbprod-validate"))
    return _POOL[2]


class _Pending:
    """One column's failures, collected in a worker: masks are reduced at once (count + first
    positions) so memory stays at one mask per worker; replayed into the report in order."""

    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.items: list[tuple] = []

    def add(self, column, check, mask, message, *, count=None) -> None:
        if mask is not None and not isinstance(mask, K.Found):
            mask = K.reduce_mask(mask, self.max_examples)
            if mask is None:
                return
        elif mask is None and count is None:
            return
        self.items.append((column, check, mask, message, count))

    def replay(self, out: K.Collector) -> None:
        for column, check, found, message, count in self.items:
            out.add(column, check, found, message, count=count)


def _check_column(name: str, series: pd.Series, col: ColumnProfile, out: K.Collector | _Pending, tolerance: float,
                  n: int, extremes: tuple | None = None, null_tolerance: float = 0.0,
                  null_counts: dict[str, int] | None = None) -> None:
    if not col.never_null and 0 < col.null_rate < 1:  # missing values seen in training: is their share up?
        nulls = K.null_count(series)
        if null_counts is not None:  # a part of the data: the merge judges the share
            null_counts[name] = nulls
        else:
            message = null_share_message(name, col, nulls, n, null_tolerance)
            if message is not None:
                out.add(name, "nulls", K.null_mask(series), message)
    problem = K.dtype_problem(series, col.dtype, col.kind)
    if problem is not None and is_object_dtype(series.dtype) and not series.notna().any():
        # all missing in an object column (a header-only CSV, a column of None): the dtype says
        # nothing about the values, so only the nulls are reported
        if n and col.never_null:
            out.add(name, "nulls", None, f"{name}: {n:,} missing values (100.00%); the training data had none", count=n)
        return
    if problem is not None:
        message, mask, comparable = problem
        out.add(name, "dtype", mask, f"{name}: {message}", count=None if mask is not None else n)
        if not comparable:
            return
    seen_any = col.count > 0
    if col.kind == "numeric" and C.kind_of(series.dtype) in ("numeric", "boolean"):
        lo, hi = bounds(col, tolerance) if col.min is not None else (None, None)
        inf_ok = (getattr(col, "neg_inf_count", 0) > 0, getattr(col, "pos_inf_count", 0) > 0)
        nulls, found = K.numeric_nulls_and_range(series, col.never_null, lo, hi, inf_ok, extremes)
        if nulls is not None:
            out.add(name, "nulls", nulls, 
                    lambda k: f"{name}: {k:,} missing values ({K.pct(k, n)}); the training data had none")
        if found is not None:
            _add_range(name, col, found, tolerance, out, n)
        return
    if col.kind == "categorical" and is_object_dtype(series.dtype):
        allowed = col.categories if seen_any and col.categories_complete else None
        nulls, found = K.object_nulls_and_unseen(series, col.never_null, allowed)
        if nulls is not None:
            out.add(name, "nulls", nulls, 
                    lambda k: f"{name}: {k:,} missing values ({K.pct(k, n)}); the training data had none")
        if found is not None:
            _add_unseen(name, found, out, n)
        return
    if col.never_null:
        mask = K.null_mask(series)
        if mask is not None:
            out.add(name, "nulls", mask, 
                    lambda k: f"{name}: {k:,} missing values ({K.pct(k, n)}); the training data had none")
            del mask
    if col.kind in ("numeric", "datetime") and col.min is not None:
        lo, hi = bounds(col, tolerance)
        found = K.range_mask(series, col.kind, lo, hi)
        if found is not None:
            _add_range(name, col, found, tolerance, out, n)
    elif col.kind in ("categorical", "boolean") and seen_any and col.categories_complete:
        found = K.unseen_mask(series, col.categories or {})
        if found is not None:
            _add_unseen(name, found, out, n)


def _add_unseen(name: str, found: tuple, out: K.Collector | _Pending, n: int) -> None:
    mask, values = found
    out.add(name, "unseen_category", mask,
            lambda k: f"{name}: {k:,} values ({K.pct(k, n)}) in categories the training data never had, "
                      f"e.g. {', '.join(map(repr, values))}")


def _add_range(name: str, col: ColumnProfile, found: tuple, tolerance: float, out: K.Collector | _Pending,
               n: int) -> None:
    mask, below, above = found
    tol = f", tolerance {tolerance:g}" if tolerance else ""
    out.add(name, "out_of_range", mask,
            lambda k: f"{name}: {k:,} values ({K.pct(k, n)}) outside the seen range [{col.min}, {col.max}]"
                      f"{tol} ({below:,} below, {above:,} above)")


def _check_key(df: pd.DataFrame, keys: list[str], out: K.Collector, missing: set[str]) -> None:
    names = {str(c): c for c in df.columns}
    absent = [k for k in keys if k not in names]
    for k in absent:
        if k not in missing:
            out.add(k, "missing_column", None, f"{k}: key column missing", count=len(df))
    if absent:
        return
    mask = K.duplicate_mask(df, [names[k] for k in keys])
    label = ", ".join(keys)
    out.add(keys[0] if len(keys) == 1 else label, "duplicate_key", mask,
            lambda k: f"{label}: {k:,} rows share their key with another row")


# --- per-row out-of-distribution flags ------------------------------------------------------------
def row_flags(df: pd.DataFrame, profile: Profile, *,
              tolerance: float | None = None) -> tuple[np.ndarray, list[list[str]]]:
    """Which rows are out of distribution, and why.

    Returns ``(flags, reasons)``: ``flags[i]`` is True when row ``i`` holds a value outside the
    seen range (widened by ``tolerance``) or a category the training data never had;
    ``reasons[i]`` lists why, e.g. ``"income=1e9 above the seen max 250000"``. Missing values and
    columns the profile lacks are not flagged (``validate`` reports those). Values are compared
    leniently (numbers sent as text are parsed), since requests arrive as JSON. The rules are
    those of :class:`nbprod.data.ood.OodChecker` — the model server runs the same checker.
    """
    df = C.check_frame(df)
    if not isinstance(profile, Profile):
        raise DataError(f"row_flags needs a Profile, got {type(profile).__name__}", "pass nbprod.profile(training_df)")
    n = len(df)
    if not n:
        return np.zeros(0, dtype=bool), []
    return checker_for(profile, tolerance).check_frame(df)


def checker_for(profile: Profile, tolerance: float | None = None) -> OodChecker:
    """The profile's compiled :class:`OodChecker` for ``tolerance``, built once and cached on it."""
    tolerance = resolve_tolerance(tolerance)
    cache = profile._cache.setdefault("ood", {})
    checker = cache.get(tolerance)
    if checker is None:
        checker = cache[tolerance] = OodChecker.from_profile(profile, tolerance)
    return checker
