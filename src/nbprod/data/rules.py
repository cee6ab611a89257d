"""Validation rules written by hand: in YAML (a ``%%nbprod expect`` cell) or in Python.

One entry per column, with any of these keys::

    income:  {dtype: float, min: 0, nullable: false}
    country: {in: [DE, FR, US]}
    id:      {unique: true}

- ``dtype``: a family (``int``, ``float``, ``numeric``, ``bool``, ``datetime``, ``string``,
  ``category``) or an exact pandas dtype name (``Int64``, ``float32``…);
- ``min`` / ``max``: inclusive bounds (numbers, or ISO dates for datetime columns; a text
  column under date bounds is read as ISO 8601 times, and a value that is none is a ``dtype``
  failure);
- ``nullable``: ``false`` forbids missing values;
- ``in``: the allowed values (missing values are governed by ``nullable``, not by ``in``);
- ``unique``: ``true`` forbids repeated values.

Custom checks are Python functions of the whole frame returning a boolean Series/array that is
True for GOOD rows: ``rules.add("adult", lambda df: df.age >= 18, column="age")``.

YAML is read as YAML 1.2 scalars: ``NO``, ``yes``, ``on`` and ``off`` stay strings (country
codes!), only ``true``/``false`` are booleans, and ``1e6`` is a number. A column (or a rule key)
given twice is an error rather than a silent override. ``min``/``max`` of a datetime column must
be dates, and no bound may be NaN. Any mistake — malformed YAML, an unknown key, a bad value, a
rule on a column the data lacks — raises :class:`~nbprod.errors.RuleError` saying what to fix.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path
from typing import AbstractSet, Any, Callable

import numpy as np
import pandas as pd
import yaml
from pandas.api.types import is_object_dtype, pandas_dtype
from yaml.constructor import ConstructorError

from .. import _format
from .._display import Display, Table, View
from ..errors import RuleError
from . import _checks as K
from . import _columns as C

__all__ = ["Rules", "RULE_KEYS", "DTYPE_FAMILIES", "parse_rule_dates", "iso_times"]

RULE_KEYS = ("dtype", "min", "max", "nullable", "in", "unique")
DTYPE_FAMILIES = ("int", "integer", "float", "numeric", "number", "bool", "boolean", "datetime", "string", "str",
                  "text", "category", "categorical", "object")
_EXAMPLE = "income: {min: 0, nullable: false}"


class _DuplicateKey(Exception):
    """Marker base of the loader's duplicate-key error (see :func:`_yaml_loader`)."""


class _BadValue(Exception):
    """Marker base of the loader's error for a value its tag cannot build (see :func:`_yaml_loader`)."""


def _yaml_loader():
    class DuplicateKey(ConstructorError, _DuplicateKey):
        pass

    class BadValue(ConstructorError, _BadValue):
        pass

    class Loader(yaml.SafeLoader):
        """SafeLoader with YAML 1.2 scalars: only true/false are booleans, ``1e6`` is a float;
        a key given twice in one mapping is an error (PyYAML keeps the last one silently); a
        value its tag's constructor cannot build (``2024-02-30``, ``!!float abc``) is a
        ConstructorError at that value's line, not a bare ValueError."""

        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep)
            except yaml.YAMLError:
                raise
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                tag = str(node.tag).rsplit(":", 1)[-1]
                value = node.value if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
                why = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
                raise BadValue(None, None, f"{value!r} is not a valid {tag}{why}", node.start_mark) from None

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: set = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        if key in seen:
                            raise DuplicateKey(None, None, f"{key!r} is given twice (the second would silently "
                                               "replace the first)", key_node.start_mark)
                        seen.add(key)
                    except TypeError:  # an unhashable key: the base constructor reports it
                        pass
            return super().construct_mapping(node, deep)

    Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    # YAML 1.2 floats PyYAML (YAML 1.1) reads as strings: 1e6, 2.5E-3, .5e1. Checked after the int
    # resolver, so plain integers stay ints.
    Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
                                 list("-+.0123456789"))
    return Loader


class Rules(Display):
    """Per-column rules plus custom Python checks. ``Rules({"income": {"min": 0}})``."""

    def __init__(self, columns: dict[str, dict[str, Any] | None] | None = None) -> None:
        if columns is None:
            columns = {}
        if not isinstance(columns, dict):
            raise RuleError(f"rules must be a mapping of column -> rules, got {type(columns).__name__}",
                            f"write one line per column, e.g. `{_EXAMPLE}`")
        self.columns: dict[str, dict[str, Any]] = {str(c): _check_spec(str(c), spec) for c, spec in columns.items()}
        self.custom: dict[str, tuple[Callable, str | None]] = {}

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rules:
        return cls(d)

    @classmethod
    def from_yaml(cls, text: str) -> Rules:
        if not isinstance(text, str):
            raise RuleError(f"YAML rules must be text, got {type(text).__name__}",
                            f"pass a string such as `{_EXAMPLE}`")
        try:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            fix = f"write one mapping per column, e.g. `{_EXAMPLE}`"
            if isinstance(exc, _BadValue):
                fix = ("write a valid value (a real date such as 2024-02-29, a number such as 1e6), "
                       "or quote it to make it text")
            elif isinstance(exc, _DuplicateKey):
                fix = "give each column (and each rule key) once: merge them, e.g. `income: {min: 0, max: 1}`"
            raise RuleError(f"the rules are not valid YAML{at}: {getattr(exc, 'problem', None) or exc}", fix) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RuleError(f"the YAML rules must be a mapping of column -> rules, got a {type(data).__name__}",
                            f"write one line per column, e.g. `{_EXAMPLE}`")
        return cls(data)

    @classmethod
    def load(cls, path: str | Path) -> Rules:
        """Rules from a YAML file; a file with no rule in it (empty, only comments) is a RuleError."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleError(f"cannot read rules from {path}: {exc}", "pass the path of a YAML rules file") from exc
        except UnicodeDecodeError:
            raise RuleError(f"{path} is not a YAML rules file (it is not UTF-8 text; a data file?)",
                            f"pass the path of a YAML rules file, one line per column, e.g. `{_EXAMPLE}`") from None
        rules = cls.from_yaml(text)
        if not rules.columns:
            raise RuleError(f"{path} holds no rules (it is empty or only comments): nothing would be checked",
                            f"write one line per column, e.g. `{_EXAMPLE}`")
        return rules

    def add(self, name: str, fn: Callable[[Any], Any], *, column: str | None = None) -> Rules:
        """Add a custom check; ``fn(df)`` returns a boolean Series/array, True for GOOD rows."""
        if not isinstance(name, str) or not name:
            raise RuleError(f"a custom rule needs a non-empty name, got {name!r}", "rules.add('positive', fn)")
        if not callable(fn):
            raise RuleError(f"custom rule {name!r} is not callable",
                            "pass a function df -> boolean Series of good rows")
        self.custom[name] = (fn, None if column is None else str(column))
        return self

    # --- export -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The column rules (custom Python checks cannot be written out and are left out)."""
        return {c: dict(spec) for c, spec in self.columns.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None)

    def date_columns(self) -> list[str]:
        """The columns a rule treats as times: ``dtype: datetime`` (or a datetime64 dtype), or an
        ISO date as ``min``/``max``. Text files hold their times as text: see :func:`parse_rule_dates`."""
        return [col for col, spec in self.columns.items() if _wants_datetime(spec)]

    def __len__(self) -> int:
        return sum(len(s) or 1 for s in self.columns.values()) + len(self.custom)

    def _view(self) -> View:
        rows = [[c, ", ".join(f"{k}: {v}" for k, v in spec.items()) or "(present)"]
                for c, spec in self.columns.items()]
        rows += [[c or "(whole frame)", f"rule:{n}"] for n, (_, c) in self.custom.items()]
        head = f"Rules: {_format.rows(len(self.columns), 'column')}, {_format.count(len(self.custom))} custom"
        return View(head, [Table(["column", "rules"], rows, limit=0)] if rows else [])

    # --- checking -----------------------------------------------------------------------------
    def check(self, df, collector, *, missing_ok: AbstractSet[str] = frozenset()) -> None:
        """Apply the rules to ``df``, adding failures to ``collector`` (see nbprod.data.validate).

        A rule on a column the frame lacks raises :class:`RuleError` — unless the column is in
        ``missing_ok`` (the profile already reported it as a missing column).
        """
        names = {str(c): c for c in df.columns}
        n = len(df)
        for col, spec in self.columns.items():
            if col not in names:
                if col in missing_ok:
                    continue
                close = difflib.get_close_matches(col, list(names), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise RuleError(f"a rule names column {col!r}, which the data does not have",
                                f"{hint}rule columns must be among: {', '.join(list(names)[:20]) or '(none)'}")
            series = df[names[col]]
            kind = C.kind_of(series.dtype)
            if is_object_dtype(series.dtype) and not series.notna().any():
                # no value at all (a header-only CSV, a column of None): its dtype says nothing about
                # the values, so only the rules about missing and repeated values apply
                spec = {k: v for k, v in spec.items() if k in ("nullable", "unique")}
            dtype_failed = "dtype" in spec and not K.rule_dtype_ok(series, spec["dtype"])
            if dtype_failed:
                not_times = iso_times(series)[1] if _wants_datetime(spec) and _is_text(series) else None
                if not_times is not None:  # times as text, some of them no time: those are the failure
                    collector.add(col, "dtype", not_times, _not_times_message(col, series, not_times, n, "dtype"))
                else:
                    hint = ""
                    if _wants_datetime(spec) and _is_text(series) and series.notna().any():
                        hint = " (its values are ISO times as text: parse them, e.g. with pd.to_datetime)"
                    collector.add(col, "dtype", None, f"{col}: is {series.dtype}, the rule wants {spec['dtype']}{hint}",
                                  count=n)
            if spec.get("nullable") is False:
                mask = K.null_mask(series)
                collector.add(col, "nulls", mask, lambda k, col=col:
                              f"{col}: {k:,} missing values ({K.pct(k, n)}); the rule says nullable: false")
            if ("min" in spec or "max" in spec) and kind not in ("numeric", "datetime") and _is_text(series) \
                    and _date_bounds(spec):  # times as text: compared as times, the values that are none reported
                times, not_times = iso_times(series)
                if not_times is not None and not dtype_failed:
                    collector.add(col, "dtype", not_times, _not_times_message(col, series, not_times, n, "min/max"))
                series, kind = times, "datetime"
            if "min" in spec or "max" in spec:
                if kind not in ("numeric", "datetime"):
                    raise RuleError(f"column {col!r} is {series.dtype}: min/max need a numeric or datetime column",
                                    f"drop min/max from {col!r} or use `in:` for allowed values")
                numbers = [b for b in ("min", "max") if b in spec and not isinstance(spec[b], str)]
                if kind == "datetime" and numbers:  # pandas would read 5 as 5 ns after 1970-01-01
                    b = numbers[0]
                    raise RuleError(f"column {col!r} holds datetimes, but its {b} {spec[b]!r} is a number",
                                    f"write {b} as an ISO date, e.g. `{col}: {{{b}: 2024-01-01}}`")
                try:
                    found = K.range_mask(series, kind, spec.get("min"), spec.get("max"))
                except (TypeError, ValueError) as exc:
                    raise RuleError(f"min/max of {col!r} cannot be compared with its {series.dtype} values: {exc}",
                                    "use numbers for numeric columns and ISO dates for datetime columns") from exc
                if found is not None:
                    mask, below, above = found
                    bounds = f"[{spec.get('min', '-inf')}, {spec.get('max', 'inf')}]"
                    collector.add(col, "out_of_range", mask,
                                  lambda k, col=col, b=bounds, lo=below, hi=above:
                                  f"{col}: {k:,} values ({K.pct(k, n)}) outside {b} ({lo:,} below, {hi:,} above)")
            if "in" in spec:
                unseen = K.unseen_mask(series, spec["in"])
                if unseen is not None:
                    mask, values = unseen
                    collector.add(col, "unseen_category", mask,
                                  lambda k, col=col, v=values:
                                  f"{col}: {k:,} values ({K.pct(k, n)}) not among the allowed values, "
                                  f"e.g. {', '.join(map(repr, v))}")
            if spec.get("unique"):
                mask = K.duplicate_mask(df, [names[col]])
                collector.add(col, "duplicate_key", mask, lambda k, col=col:
                              f"{col}: {k:,} rows share a value with another row; the rule says unique: true")
        for name, (fn, column) in self.custom.items():
            if column is not None and column not in names:
                raise RuleError(f"custom rule {name!r} is attached to column {column!r}, "
                                "which the data does not have",
                                f"use one of: {', '.join(list(names)[:20])}")
            try:
                good = fn(df)
            except Exception as exc:  # the user's function: report it as a rule problem, with its error
                raise RuleError(f"custom rule {name!r} raised {type(exc).__name__}: {exc}",
                                "fix the rule function; it receives the whole DataFrame") from exc
            bad = _bad_rows(name, good, n)
            collector.add(column, f"rule:{name}", bad,
                          lambda k, name=name: f"rule {name}: {k:,} rows ({K.pct(k, n)}) fail")


def parse_rule_dates(df: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """``df`` with the text columns that ``rules`` treat as times (:meth:`Rules.date_columns`)
    parsed as datetimes, where every non-null value is an ISO 8601 time (as CSV and JSON files hold
    them); a column with any other value stays as it is, and the rule check reports those values.
    What the CLI and the magics do to a .csv or .json file before checking rules."""
    parsed = {}
    names = {str(c): c for c in df.columns}
    for col in rules.date_columns():
        if col not in names or not _is_text(df[names[col]]):
            continue
        times, not_times = iso_times(df[names[col]])
        if not_times is None and times.notna().any():
            parsed[names[col]] = times
    return df.assign(**parsed) if parsed else df


def iso_times(series: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """``(times, not_times)``: a text column read as ISO 8601 times (NaT where missing or not a
    time; naive unless a value carries an offset, then UTC) and the mask of the values present that
    are no time (None when every value is one)."""
    present = series.notna().to_numpy(dtype=bool)
    text = series
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):  # a number is no time
        text = series.where(series.map(lambda v: isinstance(v, str)).astype(bool))
    try:
        with warnings.catch_warnings():  # pandas 2 warns of mixed offsets, then gives objects
            warnings.simplefilter("ignore", FutureWarning)
            times = pd.to_datetime(text, format="ISO8601", errors="coerce")
        if not pd.api.types.is_datetime64_any_dtype(times.dtype):
            raise ValueError("mixed time zones")
    except (TypeError, ValueError, OverflowError):  # mixed offsets (pandas 3 raises): all to UTC
        times = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    not_times = present & times.isna().to_numpy(dtype=bool)
    return times, (not_times if not_times.any() else None)


def _not_times_message(col: str, series: pd.Series, not_times: np.ndarray, n: int, why: str) -> Callable[[int], str]:
    examples = list(dict.fromkeys(str(v) for v in series[not_times].head(20)))[:3]
    wants = "its min/max are dates" if why == "min/max" else "the rule wants datetime"
    return (lambda k: f"{col}: {k:,} values ({K.pct(k, n)}) are not ISO 8601 times, e.g. "
                      f"{', '.join(map(repr, examples))} ({wants})")


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    return not isinstance(dtype, pd.CategoricalDtype) and (is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype))


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _date_bounds(spec: dict[str, Any]) -> bool:
    """Are the rule's min/max ISO dates (``2024-01-01``, ``2024-01-01T10:00``)?"""
    bounds = [spec[b] for b in ("min", "max") if b in spec]
    return bool(bounds) and all(isinstance(b, str) and _ISO_DATE.match(b) for b in bounds)


def _wants_datetime(spec: dict[str, Any]) -> bool:
    dtype = spec.get("dtype")
    if isinstance(dtype, str) and (dtype.lower() == "datetime" or dtype.startswith("datetime64")):
        return True
    return _date_bounds(spec)


def _bad_rows(name: str, good: Any, n: int):
    """The negation of a custom rule's result, checked to be one boolean per row (missing = bad)."""
    fix = "return a boolean Series/array with one entry per row (True = good row)"
    s = good if isinstance(good, pd.Series) else pd.Series(np.asarray(good).ravel() if np.ndim(good) == 1 else [good])
    if np.ndim(good) != 1 or len(s) != n:
        raise RuleError(f"custom rule {name!r} returned shape {np.shape(good)}, expected ({n},)", fix)
    if s.dtype == object:
        s = s.where(s.notna(), False)
        if not all(isinstance(v, (bool, np.bool_)) for v in s.tolist()):
            raise RuleError(f"custom rule {name!r} did not return booleans", fix)
        s = s.astype(bool)
    if not pd.api.types.is_bool_dtype(s.dtype):
        raise RuleError(f"custom rule {name!r} returned {s.dtype} values, not booleans", fix)
    return ~s.to_numpy(dtype=bool, na_value=False)


def _check_spec(col: str, spec: Any) -> dict[str, Any]:
    fix = f"write the column's rules as a mapping, e.g. `{_EXAMPLE}`"
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise RuleError(f"the rules for column {col!r} must be a mapping, got {spec!r}", fix)
    unknown = [k for k in spec if k not in RULE_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), RULE_KEYS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RuleError(f"unknown rule key(s) for column {col!r}: {', '.join(map(repr, unknown))}",
                        f"{hint}use only: {', '.join(RULE_KEYS)}")
    out = dict(spec)
    if "dtype" in out:
        d = out["dtype"]
        if not isinstance(d, str) or not _known_dtype(d):
            raise RuleError(f"column {col!r}: dtype {d!r} is not a pandas dtype or family",
                            f"use a family ({', '.join(DTYPE_FAMILIES)}) or a pandas dtype name such as Int64")
    for bound in ("min", "max"):
        if bound in out:
            v = out[bound]
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) and not hasattr(v, "isoformat"):
                raise RuleError(f"column {col!r}: {bound} {v!r} is not a number or a date",
                                f"write {bound} as a number (e.g. 0) or an ISO date (e.g. 2024-01-01)")
            if isinstance(v, float) and v != v:
                raise RuleError(f"column {col!r}: {bound} is NaN, which would disable the check",
                                f"write {bound} as a number (e.g. 0), or drop it for no bound")
            if hasattr(v, "isoformat") and not isinstance(v, str):
                out[bound] = v.isoformat()
    lo, hi = out.get("min"), out.get("max")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
        raise RuleError(f"column {col!r}: min {lo} is above max {hi}", "swap min and max")
    if isinstance(lo, str) and isinstance(hi, str):
        t_lo, t_hi = _timestamp(lo), _timestamp(hi)
        if t_lo is not None and t_hi is not None and t_lo > t_hi:
            raise RuleError(f"column {col!r}: min {lo} is after max {hi}", "swap min and max")
    for flag in ("nullable", "unique"):
        if flag in out and not isinstance(out[flag], bool):
            raise RuleError(f"column {col!r}: {flag} must be true or false, got {out[flag]!r}",
                            f"write `{flag}: false`")
    if "in" in out:
        values = out["in"]
        if not isinstance(values, (list, tuple, set, frozenset)):
            raise RuleError(f"column {col!r}: `in` must be a list of allowed values, got {values!r}",
                            "write e.g. `country: {in: [DE, FR, US]}`")
        if any(isinstance(v, (list, dict)) for v in values):
            raise RuleError(f"column {col!r}: `in` must list plain values, not lists or mappings",
                            "write e.g. `country: {in: [DE, FR, US]}`")
        out["in"] = list(values)
    return out


def _timestamp(text: str):
    """An ISO date/time as naive UTC datetime64 (what datetime columns compare with), or None."""
    try:
        return C.to_timestamp(text)
    except (TypeError, ValueError, OverflowError):
        return None


def _known_dtype(spec: str) -> bool:
    if spec.lower() in DTYPE_FAMILIES:
        return True

    try:
        pandas_dtype(spec)
    except (TypeError, ValueError):
        return False
    return True
