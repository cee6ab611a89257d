"""Vectorised column checks shared by profile-based and rule-based validation.

Each check looks at one column at a time and is built so that a *clean* column costs one or two
reductions (min/max, a null count, a look-up over the categories) and allocates no row mask; a
boolean mask of bad rows is materialised only for a column that fails, and is reduced at once to
a count and a handful of example positions. That keeps validation of a 1M-row frame close to
the cost of a hand-written numpy check, with memory bounded by one mask per worker.

Where the time goes, and what is done about it (1M rows):
- a numeric column: :func:`minmax` reads it once, block by block (min and max of a block that
  sits in cache), instead of two passes over memory; nullable columns that had nulls in training
  skip NaN in the same pass (``fmin``/``fmax``), so no NaN mask is ever built for them;
- a ``category`` column: its integer codes (a view, no copy) — the min code says whether a null
  is present, a look-up table over the categories says whether any is unseen;
- a string column backed by Arrow (pandas 3's ``str``): ``pyarrow.compute.unique`` — one hash
  pass, GIL released — then only the distinct values are compared; its null count is free;
- an object column (pandas 2's strings): one factorize for nulls and categories together, of the
  objects' addresses where the column repeats a few string objects (as ``read_csv`` gives it);
- every check is a pure function of one column (:func:`reduce_mask` turns its mask into a
  :class:`Found` at once), so ``validate`` can run columns on a thread pool.
"""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as t

from ..config import settings
from . import _columns as C

__all__ = [
    "Failure", "Collector", "Found", "reduce_mask", "minmax", "null_mask", "null_count", "range_mask",
    "numeric_extremes", "numeric_nulls_and_range", "unseen_mask", "object_nulls_and_unseen", "dtype_problem",
    "duplicate_mask", "rule_dtype_ok",
]


@dataclass
class Failure:
    """One failed check: which column, which check, how many rows, a few example rows, a message.

    ``check`` is one of ``no_rows`` (the data has none; column None, count 0),
    ``missing_column``, ``extra_column``, ``dtype``, ``nulls``,
    ``out_of_range``, ``unseen_category``, ``duplicate_key`` or ``rule:<name>``. ``examples``
    holds up to ``settings.max_examples`` rows as dicts; the row's index label is under
    ``"index"`` (``"_index"`` if the frame has a column called ``index``).
    """

    column: str | None
    check: str
    count: int
    examples: list[dict] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Found:
    """A failing check reduced to what a report keeps: the count and the first bad positions."""

    count: int
    positions: np.ndarray


def reduce_mask(mask: np.ndarray | None, max_examples: int | None = None) -> Found | None:
    """A bad-row mask as a :class:`Found` (None when no row is bad); thread-safe, frees the mask."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    n_bad = int(np.count_nonzero(mask))
    if n_bad == 0:
        return None
    limit = int(settings.max_examples) if max_examples is None else max_examples
    positions = np.flatnonzero(mask[: _first_rows(mask, limit)])[:limit]
    return Found(n_bad, positions)


def _first_rows(mask: np.ndarray, limit: int) -> int:
    """A prefix of ``mask`` holding at least ``limit`` bad rows (or all of it)."""
    step = 65_536
    end, seen = 0, 0
    while end < len(mask) and seen < limit:
        seen += int(np.count_nonzero(mask[end:end + step]))
        end += step
    return end if seen >= limit else len(mask)


class Collector:
    """Turns bad-row masks into :class:`Failure` records (count + examples), one column at a time.

    Example rows are taken from the frame when :attr:`failures` is first read, for every failure
    in one ``iloc`` (each separate ``iloc`` of a wide frame costs about half a millisecond)."""

    def __init__(self, df: pd.DataFrame, key: list[str] | None = None) -> None:
        self.df = df
        self.key = key or []
        self.max_examples = int(settings.max_examples)
        self._names = {str(c): c for c in df.columns}
        self._failures: list[Failure] = []
        self._pending: list[tuple[Failure, np.ndarray]] = []  # failures whose examples are not taken yet

    @property
    def failures(self) -> list[Failure]:
        """Every failure recorded so far, in order, with its example rows."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._take_examples(pending)
        return self._failures

    def add(self, column: str | None, check: str, mask: np.ndarray | Found | None,
            message: str | Callable[[int], str], *, count: int | None = None) -> None:
        """Record a failure. ``mask`` marks the bad rows, or is already a :class:`Found`
        (None: no rows to show, e.g. a missing column — then ``count`` says how many)."""
        positions = np.empty(0, dtype=np.intp)
        if mask is None and count is None:  # the check found nothing
            return
        if mask is not None:
            found = mask if isinstance(mask, Found) else reduce_mask(mask, self.max_examples)
            if found is None:
                return
            positions = found.positions[: self.max_examples]
            count = found.count if count is None else count
        text = message(int(count or 0)) if callable(message) else message
        failure = Failure(column=column, check=check, count=int(count or 0), message=text)
        self._failures.append(failure)
        if len(positions):
            self._pending.append((failure, np.asarray(positions, dtype=np.intp)))

    def _take_examples(self, pending: list[tuple[Failure, np.ndarray]]) -> None:
        rows_at = np.unique(np.concatenate([positions for _, positions in pending]))
        rows = self.df.iloc[rows_at]
        index_key = "_index" if "index" in self._names else "index"
        index = [C.json_scalar(v) for v in rows.index.tolist()]
        columns: dict[str, list] = {}

        def values(name: str) -> list:
            if name not in columns:
                columns[name] = C.json_list(rows[self._names[name]])
            return columns[name]

        for failure, positions in pending:
            column = failure.column
            order = [c for c in ([column] if column else []) + self.key if c in self._names]
            order += [c for c in self._names if c not in order][: max(0, 20 - len(order))]
            failure.examples = [{index_key: index[i], **{c: values(c)[i] for c in order}}
                                for i in np.searchsorted(rows_at, positions).tolist()]


def pct(count: int, n: int) -> str:
    return f"{count / n:.2%}" if n else "-"


# --- primitive checks: each returns None on a clean column ------------------------------------
_BLOCK = 131_072  # elements: a block's min leaves it in cache for its max (one read from memory)


def minmax(values: np.ndarray, skipna: bool = False) -> tuple[Any, Any]:
    """``(min, max)`` of a 1-D numeric array, reading it from memory once.

    numpy has no fused min-max; two full reductions read a 1M-row column twice. Reducing block by
    block (each block still in cache for its second reduction) halves the memory traffic.
    ``skipna=False`` propagates NaN (a NaN result means "has NaN"); ``skipna=True`` ignores NaN
    (NaN only when every value is NaN).
    """
    lo_f, hi_f = (np.fmin, np.fmax) if skipna else (np.minimum, np.maximum)
    n = len(values)
    if n <= 2 * _BLOCK:
        return lo_f.reduce(values), hi_f.reduce(values)
    mins, maxs = [], []
    for start in range(0, n, _BLOCK):
        block = values[start:start + _BLOCK]
        mins.append(lo_f.reduce(block))
        maxs.append(hi_f.reduce(block))
    return lo_f.reduce(np.array(mins, dtype=values.dtype)), hi_f.reduce(np.array(maxs, dtype=values.dtype))


def arrow_strings(series: pd.Series) -> Any:
    """The column's pyarrow (chunked) string array when pandas keeps it in Arrow (no copy), else None.

    pandas 3's default ``str`` dtype, ``string[pyarrow]`` and ``ArrowDtype(pa.string())`` qualify;
    ``string[python]`` and object columns do not (converting them would cost a copy).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        if dtype.storage != "pyarrow":
            return None
    elif isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        if not (pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)):
            return None
    else:
        return None
    try:
        return series.array.__arrow_array__()
    except (AttributeError, TypeError):  # pragma: no cover - a pandas without the Arrow protocol
        return None


def null_mask(series: pd.Series) -> np.ndarray | None:
    """Mask of missing values, or None when there are none (cheap for clean float columns)."""
    kind = C.kind_of(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.array.codes  # a view, no copy
        if not len(codes) or codes.min() >= 0:
            return None
        return codes < 0
    if kind in ("numeric", "boolean"):
        values, mask = C.numeric_view(series)
        if mask is not None:
            return mask if mask.any() else None
        if values.dtype.kind == "f" and len(values) and np.isnan(values.min()):
            return np.isnan(values)
        return None
    if kind == "datetime":
        nat = np.isnat(C.datetime_view(series))
        return nat if nat.any() else None
    data = arrow_strings(series)
    if data is not None and data.null_count == 0:
        return None
    mask = series.isna().to_numpy()
    return mask if mask.any() else None


def null_count(series: pd.Series) -> int:
    """How many values are missing, in one pass and without a row mask where the dtype allows."""
    kind = C.kind_of(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return int(np.count_nonzero(series.array.codes < 0))
    if kind in ("numeric", "boolean"):
        values, mask = C.numeric_view(series)
        if mask is not None:
            return int(np.count_nonzero(mask))
        return int(np.count_nonzero(np.isnan(values))) if values.dtype.kind == "f" else 0
    if kind == "datetime":
        return int(np.count_nonzero(np.isnat(C.datetime_view(series))))
    data = arrow_strings(series)
    if data is not None:
        return int(data.null_count)
    if t.is_object_dtype(series.dtype) and len(series):
        values = series.to_numpy()  # held while its objects' addresses are read
        distinct = _suspects(values, None)  # a few shared objects: each is looked at once
        if distinct is not None:
            objects, rows_of = distinct
            is_null = np.asarray(pd.isna(objects), dtype=bool)
            return int(np.count_nonzero(rows_of(is_null))) if is_null.any() else 0
    return int(series.isna().sum())


def range_mask(series: pd.Series, kind: str, lo: Any, hi: Any) -> tuple[np.ndarray, int, int] | None:
    """``(bad_mask, n_below, n_above)`` for values outside ``[lo, hi]`` (None bounds are open), or None."""
    if kind == "datetime":
        values = C.datetime_view(series)
        lo = None if lo is None else C.to_timestamp(lo)
        hi = None if hi is None else C.to_timestamp(hi)
        if not len(values):
            return None
        vmin, vmax = minmax(values.view("i8"))
        if vmin == np.iinfo(np.int64).min:  # NaT present: extremes of the valid values
            valid = values[~np.isnat(values)]
            if not len(valid):
                return None
            vmin, vmax = valid.min(), valid.max()
        else:
            vmin, vmax = np.array([vmin, vmax], dtype=np.int64).view(values.dtype)
        if (lo is None or vmin >= lo) and (hi is None or vmax <= hi):
            return None
        return _outside(values, None, lo, hi)
    values, mask = C.numeric_view(series)
    return _numeric_range(values, mask, lo, hi)


def _numeric_range(values: np.ndarray, mask: np.ndarray | None, lo: Any, hi: Any, extremes: tuple | None = None,
                   inf_ok: tuple[bool, bool] = (False, False)):
    """range_mask of a numeric array (``mask``: missing values); ``extremes`` = its known (min, max).
    ``inf_ok`` = (-inf, +inf) allowed although outside the bounds (the training data had them)."""
    if not len(values):
        return None
    if extremes is None:
        # NaN is skipped; with a mask, the values under it are arbitrary but only ever widen the
        # extremes: if even they are in bounds, every valid value is
        extremes = minmax(values, skipna=True)
    vmin, vmax = extremes
    if vmin != vmin:  # all NaN
        return None
    if (lo is None or vmin >= lo) and (hi is None or vmax <= hi):
        return None
    return _outside(values, mask, lo, hi, inf_ok)


def _outside(values: np.ndarray, mask: np.ndarray | None, lo: Any, hi: Any,
             inf_ok: tuple[bool, bool] = (False, False)) -> tuple[np.ndarray, int, int] | None:
    below = np.zeros(len(values), dtype=bool) if lo is None else values < lo
    above = np.zeros(len(values), dtype=bool) if hi is None else values > hi
    if inf_ok[0] and lo is not None:
        below &= values != -np.inf
    if inf_ok[1] and hi is not None:
        above &= values != np.inf
    if mask is not None:
        below &= ~mask
        above &= ~mask
    n_below, n_above = int(np.count_nonzero(below)), int(np.count_nonzero(above))
    if not (n_below or n_above):
        return None
    below |= above
    return below, n_below, n_above


def numeric_extremes(values: np.ndarray, mask: np.ndarray | None, want_nulls: bool) -> tuple[Any, Any]:
    """The one read of a numeric column that its null and range checks need: ``(min, max)``,
    NaN-propagating where a NaN would be a failure (a NaN result flags it), NaN-skipping elsewhere."""
    return minmax(values, skipna=not (want_nulls and mask is None and values.dtype.kind == "f"))


def numeric_nulls_and_range(series: pd.Series, want_nulls: bool, lo: Any, hi: Any,
                            inf_ok: tuple[bool, bool] = (False, False), extremes: tuple | None = None):
    """Null and range checks of a numeric column in as few passes as possible.

    Returns ``(null_mask_or_None, range_result_or_None)`` like :func:`null_mask` and
    :func:`range_mask`; ``inf_ok`` = (-inf allowed, +inf allowed): the training data had them.
    A clean column costs one :func:`numeric_extremes` read (or none when ``extremes``, its
    result, is given): a NaN shows up as a NaN minimum (only then, and only if nulls are
    unexpected, is a null mask built); a column that had nulls in training skips NaN in that read.
    """
    values, mask = C.numeric_view(series)
    if not len(values):
        return None, None
    if extremes is None:
        extremes = numeric_extremes(values, mask, want_nulls)
    nulls = None
    if mask is None and values.dtype.kind == "f" and want_nulls:
        vmin, vmax = extremes
        if vmin != vmin or vmax != vmax:  # NaN present: missing values
            nulls = np.isnan(values)
            if nulls.all():
                return nulls, None
            extremes = minmax(values, skipna=True)
        return nulls, _numeric_range(values, None, lo, hi, extremes, inf_ok)
    if mask is not None and want_nulls and mask.any():
        nulls = mask
    return nulls, _numeric_range(values, mask, lo, hi, extremes, inf_ok)


def unseen_mask(series: pd.Series, allowed: Iterable[Any]) -> tuple[np.ndarray, list[str]] | None:
    """``(bad_mask, first unseen values)`` for non-null values not in ``allowed``, or None.

    Values are compared as they are and, failing that, by their text (``str``) — so ``1`` in an
    object column matches the category ``"1"`` of a profile, and ``True`` matches ``"True"``.
    """
    allowed = list(allowed)
    allowed_text = {str(a) for a in allowed}
    kind = C.kind_of(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in series.cat.categories]
        lut = np.zeros(len(labels) + 1, dtype=bool)  # last slot: code -1 (missing)
        bad_codes = [i for i, label in enumerate(labels) if label not in allowed_text]
        if not bad_codes:
            return None
        lut[bad_codes] = True
        codes = series.array.codes  # a view of the codes, no copy
        if len(bad_codes) <= 4:  # typically one new category: a compare per code beats a table gather
            bad = codes == bad_codes[0]
            for code in bad_codes[1:]:
                bad |= codes == code
        else:
            bad = np.take(lut, codes)
        if not bad.any():
            return None
        present = np.unique(codes[bad])[:5]
        return bad, [labels[i] for i in present]
    if kind in ("numeric", "boolean", "datetime") and len(series):
        if kind == "datetime":
            values = C.datetime_view(series)
            nulls = np.isnat(values)
            stamps = []
            for a in allowed:
                try:
                    stamps.append(C.to_timestamp(a))
                except (TypeError, ValueError):
                    pass
            ok = np.isin(values, np.array(stamps, dtype="datetime64[ns]")) if stamps else np.zeros(len(values), bool)
        else:
            values, nulls = C.numeric_view(series)
            if nulls is None and values.dtype.kind == "f":
                nulls = np.isnan(values)
            targets: list[Any] = [a for a in allowed if isinstance(a, (int, float, np.number, bool, np.bool_))]
            targets += [_number(a) for a in allowed if isinstance(a, str) and _number(a) is not None]
            ok = np.isin(values, np.array(targets)) if targets else np.zeros(len(values), bool)
            if kind == "boolean":
                ok |= np.isin(values, [t == "True" for t in allowed_text & {"True", "False"}])
        bad = ~ok if nulls is None else ~ok & ~nulls
        if not bad.any():
            return None
        uniq = pd.unique(values[bad])
        # the text form can still match (1.0 vs category "1.0"): drop those uniques
        still = [u for u in uniq if C.json_scalar(u) is not None and str(C.json_scalar(u)) not in allowed_text
                 and str(u) not in allowed_text]
        if len(still) < len(uniq):
            bad &= np.isin(values, np.array(still, dtype=values.dtype))
            if not bad.any():
                return None
        return bad, [str(C.json_scalar(u)) for u in still[:5]]
    data = arrow_strings(series)
    if data is not None:
        return _arrow_unseen(data, allowed_text)
    # strings / objects
    try:
        ok = series.isin(_with_texts(allowed, allowed_text))
    except TypeError:  # unhashable values
        ok = series.map(lambda v: str(v) in allowed_text)
    cand = ~ok.to_numpy(dtype=bool) & series.notna().to_numpy(dtype=bool)
    if not cand.any():
        return None
    uniq = pd.unique(series[cand].astype(object).map(str))
    still = [u for u in uniq if u not in allowed_text]
    if not still:
        return None
    if len(still) < len(uniq):
        cand &= series.astype(object).map(str).isin(still).to_numpy(dtype=bool)
    return cand, still[:5]


def _with_texts(allowed: list, allowed_text: set[str]) -> list:
    """What an ``isin`` matches an object column against: the allowed values as they are, then
    the texts of those that are not strings (``1`` allowed: ``"1"`` matches too)."""
    return allowed + sorted(allowed_text - {a for a in allowed if isinstance(a, str)})


def object_nulls_and_unseen(series: pd.Series, want_nulls: bool, allowed: Iterable[Any] | None):
    """``(null_mask_or_None, unseen_or_None)`` of an object column in one hash pass.

    :func:`null_mask` plus :func:`unseen_mask` read an object column three times (two ``isna``
    scans, one ``isin``: ≈ 150 ms per 1M rows). Here its distinct values are found once, the nulls
    and the unseen categories are decided per distinct value, and a row mask is built only for a
    column that fails. Values compare exactly as in :func:`unseen_mask` (as they are, or by text).
    """
    values = series.to_numpy()
    allowed = None if allowed is None else list(allowed)
    allowed_text = set() if allowed is None else {str(a) for a in allowed}
    known = None if allowed is None else _with_texts(allowed, allowed_text)
    distinct = _suspects(values, known) if len(values) else None
    if distinct is None:  # unhashable values, or only the null check on distinct objects
        nulls = null_mask(series) if want_nulls else None
        return nulls, (unseen_mask(series, allowed) if allowed is not None else None)
    uniques, rows_of = distinct
    is_null = np.asarray(pd.isna(uniques), dtype=bool)
    nulls = rows_of(is_null) if want_nulls and is_null.any() else None
    if allowed is None:
        return nulls, None
    try:
        allowed_set = set(allowed)
    except TypeError:  # pragma: no cover - profile categories are JSON scalars
        allowed_set = set()

    def seen(value: Any) -> bool:
        try:
            if value in allowed_set:
                return True
        except TypeError:  # unhashable (a list in an object column): compared by text
            pass
        return str(value) in allowed_text

    unseen = np.array([not null and not seen(u) for u, null in zip(uniques, is_null, strict=True)], dtype=bool)
    if not unseen.any():
        return nulls, None
    # distinct objects can share a text ("new" built twice): the examples name each text once
    return nulls, (rows_of(unseen), list(dict.fromkeys(str(u) for u in uniques[unseen]))[:5])


#: Object columns this long are probed for shared string objects (below it, hashing is cheap anyway).
SHARED_MIN_ROWS = 10_000


def _suspects(values: np.ndarray, known: list | None):
    """``(values, rows_of)``: the distinct values of an object array that may fail a check, and
    ``rows_of(flags)``, the row mask of those ``flags`` marks; None when they cannot be hashed.

    Object columns read by ``pd.read_csv`` (its parser interns repeated strings) or converted from
    Arrow (``to_pandas`` de-duplicates) hold a handful of string *objects*, each repeated. Their
    addresses are then hashed as integers (≈ 4 ms per 1M rows; hashing the strings takes 35 ms)
    and each distinct object is looked at once (:func:`shares_objects` tells which case a column
    is). Otherwise one ``isin`` against the ``known`` good values (25 ms per 1M) settles
    every row it matches, and only the rest — none, in a clean column — are factorized. With no
    ``known`` values (a null check only) that pass is left to :func:`null_mask`: None.
    """
    n = len(values)
    if shares_objects(values):
        addresses = _addresses(values)
        pointers = pd.unique(addresses)
        objects = np.empty(len(pointers), dtype=object)
        objects[:] = [_object_at(p) for p in pointers.tolist()]

        def rows_of_objects(flags: np.ndarray) -> np.ndarray:
            bad = pointers[flags]
            if len(bad) > 4:
                return np.isin(addresses, bad)
            mask = addresses == bad[0]
            for p in bad[1:]:
                mask |= addresses == p
            return mask

        return objects, rows_of_objects
    if known is None:
        return None
    try:
        rest = np.flatnonzero(~pd.Series(values, copy=False).isin(known).to_numpy(dtype=bool))
        codes, uniques = pd.factorize(values[rest])  # missing values get code -1
    except TypeError:  # unhashable values
        return None
    has_null = bool(len(codes)) and codes.min() < 0
    objects = np.empty(len(uniques) + has_null, dtype=object)
    objects[: len(uniques)] = list(uniques)  # the last slot, if any, stands for the missing values (code -1)

    def rows_of_rest(flags: np.ndarray) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[rest] = np.take(flags, codes)  # code -1 picks the missing-values slot
        return mask

    return objects, rows_of_rest


def shares_objects(values: np.ndarray) -> bool:
    """Whether a long object array repeats a few objects (as ``read_csv`` gives strings): then
    its checks hash the objects' addresses, as integers and with the GIL released; a strided
    sample of the addresses tells."""
    n = len(values)
    if n < SHARED_MIN_ROWS or not values.flags.c_contiguous:
        return False
    sample = _addresses(values)[:: max(1, n // 2048)]
    return len(np.unique(sample)) * 8 <= len(sample)


def _addresses(values: np.ndarray) -> np.ndarray:
    """The object pointers of a C-contiguous object array, as ``intp``: a view, no copy and no
    reference counting. Valid while ``values`` is alive (the callers hold it)."""
    buffer = (ctypes.c_ssize_t * len(values)).from_address(values.ctypes.data)
    return np.ctypeslib.as_array(buffer)


def _object_at(address: int) -> Any:
    """The object at an address taken from a live object array by :func:`_addresses` (a new reference)."""
    return ctypes.cast(address, ctypes.py_object).value


def _arrow_unseen(data: Any, allowed_text: set[str]) -> tuple[np.ndarray, list[str]] | None:
    """unseen_mask of an Arrow string column: one hash pass (pyarrow.compute.unique, GIL
    released), then the distinct values are compared; a row mask only when one is unseen."""
    value_set = pa.array(sorted(allowed_text), type=data.type)
    uniques = pc.unique(data)
    unseen = pc.filter(uniques, pc.and_(pc.is_valid(uniques),
                                        pc.invert(pc.is_in(uniques, value_set=value_set))))
    if not len(unseen):
        return None
    bad = pc.fill_null(pc.is_in(data, value_set=unseen), False).to_numpy(zero_copy_only=False)
    return np.asarray(bad, dtype=bool), unseen.slice(0, 5).to_pylist()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_INT = ("int", "uint", "Int", "UInt")


def dtype_problem(series: pd.Series, expected: str, expected_kind: str) -> tuple[str, np.ndarray | None, bool] | None:
    """Is the column's dtype compatible with what the profile saw?

    Returns None when compatible, else ``(message, mask_or_None, comparable)`` where
    ``comparable`` says whether range/category checks still make sense. Compatible means: same
    kind, with widening allowed (int where float was seen; float where int was seen if every
    value is integral; any string/object/category where categorical was seen; numbers or
    booleans where categorical was seen, compared by text) and matching time-zone awareness.
    """
    actual = C.dtype_name(series.dtype)
    if actual == expected:
        return None
    kind = C.kind_of(series.dtype)
    if expected_kind == "categorical":
        return None if kind != "datetime" else (f"is {actual}, the training data had {expected}", None, False)
    if kind != expected_kind:
        return (f"is {actual} ({kind}), the training data had {expected} ({expected_kind})", None, False)
    if expected_kind == "datetime":
        tz_expected = "," in expected
        tz_actual = getattr(series.dtype, "tz", None) is not None
        if tz_expected != tz_actual:
            which = "time-zone aware" if tz_actual else "naive"
            return (f"is {actual} ({which}), the training data had {expected}", None, True)
        return None
    if expected_kind == "numeric" and expected.startswith(_INT) and actual.lower().startswith("float"):
        values, nulls = C.numeric_view(series)
        with np.errstate(invalid="ignore"):
            frac = np.modf(values)[0] != 0  # NaN → True, ±inf → False
        frac ^= np.isnan(values)  # missing values are the null check's business
        frac |= np.isinf(values)
        if nulls is not None:
            frac &= ~nulls
        if frac.any():
            return (f"has non-integer values ({actual}), the training data had integers ({expected})", frac, True)
    return None


def rule_dtype_ok(series: pd.Series, spec: str) -> bool:
    """Does the column match a rule's ``dtype:`` (a family name or an exact pandas dtype)?"""
    dtype = series.dtype
    family = spec.lower()
    if family in ("int", "integer"):
        return t.is_integer_dtype(dtype) and not t.is_bool_dtype(dtype)
    if family == "float":
        return t.is_float_dtype(dtype)
    if family in ("numeric", "number"):
        return C.kind_of(dtype) == "numeric"
    if family in ("bool", "boolean") and spec in ("bool", "boolean", "Bool", "Boolean"):
        return C.kind_of(dtype) == "boolean"
    if family == "datetime":
        return C.kind_of(dtype) == "datetime"
    if family in ("category", "categorical"):
        return isinstance(dtype, pd.CategoricalDtype)
    if family in ("string", "str", "text") and spec in ("string", "str", "text"):
        return t.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
    if str(dtype) == spec:
        return True
    try:
        return t.pandas_dtype(spec) == dtype
    except TypeError:
        return False


def duplicate_mask(df: pd.DataFrame, columns: list[Any]) -> np.ndarray | None:
    """Rows whose key appears more than once (all of them, not only the repeats), or None.

    Unhashable values (lists, dicts in an object column) are compared by their text, as
    category checks compare them.
    """
    try:
        return _duplicate_mask(df, columns)
    except TypeError:  # unhashable values: hashing failed before any mask was built
        return _duplicate_mask(df[columns].astype(str), columns)


def _duplicate_mask(df: pd.DataFrame, columns: list[Any]) -> np.ndarray | None:
    if len(columns) == 1:
        s = df[columns[0]]
        if s.is_unique:
            return None
        mask = s.duplicated(keep=False).to_numpy()
    else:
        mask = df.duplicated(subset=columns, keep=False).to_numpy()
    return mask if mask.any() else None
