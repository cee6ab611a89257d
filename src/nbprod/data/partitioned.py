"""Profiles, validation and drift of data too large for one process: a ``dask.dataframe.DataFrame``.

Each partition is summarised where it lives (on a Dask worker, or in a thread of Dask's local
scheduler) by profile's own per-column code (:func:`nbprod.data.profile._profile_column`), in the
task that reads it (a worker holds one partition at a time; of a frame read straight from parquet,
:data:`PART_COLUMNS` columns at a time when Dask partitions the groups alike), and the summaries merge
on the client. What the merged
profile guarantees against ``nbprod.profile`` of the same data in one process:

- exact: ``n_rows``, ``null_count``/``null_rate``/``count``, ``min``/``max``, ±inf counts,
  boolean counts, and the ``categories``/``other_count``/``distinct_count`` of a text column whose
  partitions each hold at most :data:`PART_CATEGORIES` distinct values (beyond that the partitions
  keep their most frequent values and the merged counts are lower bounds);
- equal up to float rounding: ``mean`` and ``std`` (combined from per-partition counts, means and
  variances, Chan et al.);
- a sketch: numeric ``quantiles`` are read off the mixture of the partitions' own
  :data:`PART_QUANTILES` + 1 quantile points, so each edge is within 1/:data:`PART_QUANTILES` (0.1%)
  in rank of the partitions' quantiles; a large partition takes its points from a uniform sample of
  rows (as the one-process profile samples 100,000 values of the whole frame): 100,000 / the number
  of partitions, between :data:`PART_QUANTILE_MIN` and :data:`PART_QUANTILE_SAMPLE`, so the samples
  together hold about as many values as profile()'s and the merged edges' sampling error (≈0.16% in
  rank at the median) matches it; the two agree to within about 0.5% in rank (tests/test_dask.py
  checks 0.5%, on small partitions and on one sampled 300,000-row partition). Numeric
  ``distinct_count`` comes from a k-minimum-values hash sketch (exact below 16,384 distinct values,
  typically within 2% above); low-cardinality numeric ``categories`` are exact when every
  partition has at most 20 distinct values.
- the row ``sample`` is a uniform sample drawn per partition in proportion to its rows.

``validate`` runs per partition and the reports merge (failure counts add up; a duplicate ``key``
split across two partitions is not seen). ``drift`` tests a uniform sample of the current data
(:data:`DRIFT_SAMPLE` rows, drawn per partition in proportion to its rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from .. import _dask
from ..config import settings
from . import _columns as C
from .profile import ColumnProfile, Profile, _hash64, _key_list, _profile_column

__all__ = ["is_dask_frame", "profile_partitioned", "validate_partitioned", "drift_sample", "PART_QUANTILES",
           "PART_CATEGORIES", "DRIFT_SAMPLE"]

PART_QUANTILES = 1000  # quantile points per partition (rank resolution of the merged edges)
PART_QUANTILE_SAMPLE = 100_000  # at most this many rows per partition for its quantile points (profile's sample)
PART_QUANTILE_MIN = 20_000  # at least this many (rank standard error 0.35% per partition at the median)
PART_COLUMNS = 4  # columns a task reads and summarises at a time, from parquet (see _column_groups)
PART_CATEGORIES = 10_000  # text categories a partition keeps (exact merge up to this many per partition)
KMV_SIZE = 16_384  # hashes kept by the distinct-count sketch
DRIFT_SAMPLE = 100_000


def is_dask_frame(obj: Any) -> bool:
    """True for a ``dask.dataframe.DataFrame`` (checked without importing Dask)."""
    return type(obj).__module__.startswith("dask") and hasattr(obj, "to_delayed") and hasattr(obj, "columns")


# --- per partition (on a worker) -----------------------------------------------------------------


@dataclass
class _Part:
    """One partition's summary: per column a partial ColumnProfile and what merging needs."""

    n: int
    columns: dict[str, ColumnProfile]
    points: dict[str, np.ndarray] = field(default_factory=dict)  # numeric: PART_QUANTILES + 1 points
    hashes: dict[str, np.ndarray] = field(default_factory=dict)  # numeric/datetime: smallest KMV_SIZE hashes
    sample: pd.DataFrame | None = None


def _smallest_distinct(hashes: np.ndarray, below: np.ndarray | None = None) -> np.ndarray:
    """The KMV_SIZE smallest distinct hashes, sorted.

    The hashes are uniform 64-bit values, so the KMV_SIZE-th smallest of ``m`` distinct ones lies
    near ``KMV_SIZE / m`` of the range: the hashes under 1.1 times that threshold (a comparison pass,
    no copy of the column) are sorted, and when they hold KMV_SIZE distinct values no larger hash
    can be among the smallest distinct ones. Fewer (a column of many repeats) widen the threshold;
    past the whole range, one sort of all (numpy 2's hash-based np.unique takes ~15× longer on
    random 64-bit values). ``below``: a reusable boolean buffer of at least ``len(hashes)``."""
    m = len(hashes)
    share = 1.1 * KMV_SIZE / m if m else 1.0  # ~18,000 expected below: 12 standard deviations above KMV_SIZE
    while share < 1.0:
        threshold = np.uint64(min(int(share * 2.0**64), 2**64 - 1))
        mask = np.less(hashes, threshold, out=None if below is None else below[:m])
        ordered = np.sort(hashes[mask])
        ordered = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered
        if len(ordered) >= KMV_SIZE:
            return ordered[:KMV_SIZE]
        share *= max(2.0, 1.5 * KMV_SIZE / max(len(ordered), 1))
    ordered = np.sort(hashes)
    if len(ordered):
        ordered = ordered[np.r_[True, ordered[1:] != ordered[:-1]]]
    return ordered[:KMV_SIZE]


def _quantile_sample(partitions: int) -> int:
    """Rows a partition reads its quantile points from: together about profile()'s 100,000-value sample
    (at least PART_QUANTILE_MIN each, at most PART_QUANTILE_SAMPLE)."""
    return min(PART_QUANTILE_SAMPLE, max(PART_QUANTILE_MIN, PART_QUANTILE_SAMPLE // max(partitions, 1)))


def _finite_values(series: pd.Series, col: ColumnProfile) -> np.ndarray:
    """The column's non-null finite values (its own array when it has no null and no ±inf)."""
    if col.kind == "datetime":
        values = C.datetime_view(series)
        return (values[~np.isnat(values)] if col.null_count else values).view("i8")
    values, mask = C.numeric_view(series)
    if not (col.null_count or col.neg_inf_count or col.pos_inf_count):
        return values
    keep = np.ones(len(values), dtype=bool) if mask is None else ~mask
    if values.dtype.kind == "f":
        keep &= np.isfinite(values)
    return values[keep]


def _summarise(df: pd.DataFrame, sample_size: int, seed: int, q_sample: int = PART_QUANTILE_SAMPLE) -> _Part:
    n = len(df)
    part = _Part(n, {})
    # quantile points from a uniform sample of q_sample rows, as profile() samples the whole frame:
    # sorting every value of every numeric column made a partition's summary ~2× profile()'s time
    q_idx = (None if n <= q_sample
             else np.sort(np.random.default_rng(seed + 7_919).choice(n, q_sample, replace=False)))
    # one set of scratch buffers for every column's hashes (see _hash64: allocation is what costs on a worker)
    scratch = np.empty(n, dtype=np.uint64)
    tmp = np.empty(n, dtype=np.uint64)
    below = np.empty(n, dtype=bool)
    for name in df.columns:
        series = df[name]
        col = _profile_column(str(name), series, n, top_k=PART_CATEGORIES, n_quantiles=PART_QUANTILES, q_idx=q_idx,
                              distinct=False)  # the merge counts distinct values from the hashes below
        part.columns[col.name] = col
        if col.kind == "numeric" and col.quantiles is not None:
            part.points[col.name] = np.asarray(col.quantiles, dtype="float64")
        if col.kind in ("numeric", "datetime"):
            valid = _finite_values(series, col)
            if valid.dtype.kind == "f":  # -0.0 and 0.0 are one value, as profile counts
                valid = np.add(valid, 0.0, out=scratch.view(np.float64)[:len(valid)], dtype=valid.dtype
                               ) if valid.dtype.itemsize == 8 else valid + 0.0
            part.hashes[col.name] = _smallest_distinct(_hash64(valid, out=scratch, tmp=tmp), below)
    take = min(sample_size, n)
    if take:
        rng = np.random.default_rng(seed)
        part.sample = df.iloc[np.sort(rng.choice(n, take, replace=False))]
    return part


def _summarise_partition(df: pd.DataFrame, sample_size: int, seed: int, q_sample: int,
                         partition_info: dict | None = None) -> _Part:
    """:func:`_summarise` as a ``map_partitions`` function (``partition_info`` numbers the partition,
    for its seed): Dask fuses it with the partition's read into one task, so a worker holds one
    partition at a time and releases it as soon as its summary is made."""
    return _summarise(df, sample_size, seed + (partition_info or {}).get("number", 0), q_sample)


# --- merging (on the client) -----------------------------------------------------------------------


def _combine_moments(cols: list[ColumnProfile]) -> tuple[Any, Any]:
    """Mean and sample std of the union from each part's count (of finite values), mean and std."""
    n_total, mean, m2 = 0, 0.0, 0.0
    for c in cols:
        k = c.count - c.neg_inf_count - c.pos_inf_count
        if k <= 0 or c.mean is None:
            continue
        var = (c.std or 0.0) ** 2 * (k - 1) if k > 1 else 0.0
        delta = c.mean - mean
        total = n_total + k
        mean += delta * k / total
        m2 += var + delta * delta * n_total * k / total
        n_total = total
    if n_total == 0:
        return None, None
    return float(mean), (float(np.sqrt(m2 / (n_total - 1))) if n_total > 1 else None)


def _merged_quantiles(points: list[np.ndarray], weights: list[int], n_quantiles: int) -> list[float]:
    """Edges of the mixture of the parts' CDFs, each read off its quantile points as a step
    function (a value's rank in a part is the share of its points at or below it, to 1/PART_QUANTILES):
    each edge is the first point where the mixture reaches the edge's probability. Steps, not
    interpolation: an integer column's edges stay values the data holds."""
    grid = np.unique(np.concatenate(points))
    cdf = np.zeros(len(grid))
    total = float(sum(weights))
    for pts, w in zip(points, weights, strict=True):
        below = np.searchsorted(pts, grid, side="right") - 1
        cdf += w / total * np.clip(below / (len(pts) - 1), 0.0, 1.0)
    targets = np.linspace(0.0, 1.0, n_quantiles + 1)
    idx = np.minimum(np.searchsorted(cdf, targets - 1e-12, side="left"), len(grid) - 1)
    edges = grid[idx]
    edges[0], edges[-1] = grid[0], grid[-1]
    return [float(e) for e in edges]


def _distinct_from_hashes(parts: list[np.ndarray]) -> int:
    merged = _smallest_distinct(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
    if len(merged) < KMV_SIZE:
        return int(len(merged))
    kth = float(merged[KMV_SIZE - 1]) / 2.0**64
    return int(round((KMV_SIZE - 1) / kth))


def _merge_column(name: str, parts: list[_Part], top_k: int, n_quantiles: int) -> ColumnProfile:
    cols = [p.columns[name] for p in parts]
    first = cols[0]
    out = ColumnProfile(name=name, dtype=first.dtype, kind=first.kind)
    out.null_count = sum(c.null_count for c in cols)
    out.neg_inf_count = sum(c.neg_inf_count for c in cols)
    out.pos_inf_count = sum(c.pos_inf_count for c in cols)
    seen = [c for c in cols if c.min is not None]
    if seen:
        if first.kind == "datetime":
            out.min = min((c.min for c in seen), key=pd.Timestamp)
            out.max = max((c.max for c in seen), key=pd.Timestamp)
        else:
            out.min, out.max = min(c.min for c in seen), max(c.max for c in seen)
    if first.kind == "numeric":
        out.mean, out.std = _combine_moments(cols)
        with_points = [(p.points[name], p.columns[name]) for p in parts if name in p.points]
        if with_points:
            out.quantiles = _merged_quantiles([pts for pts, _ in with_points],
                                              [c.count - c.neg_inf_count - c.pos_inf_count for _, c in with_points],
                                              n_quantiles)
        out.categories, out.other_count = _merge_categories(cols, top_k, numeric=True)
        infs = (out.neg_inf_count > 0) + (out.pos_inf_count > 0)
        if out.categories is not None:
            out.distinct_count = len(out.categories) + infs
        else:
            out.distinct_count = _distinct_from_hashes([p.hashes[name] for p in parts if name in p.hashes]) + infs
    elif first.kind == "datetime":
        out.mean, out.std = _datetime_moments(cols)
        out.distinct_count = _distinct_from_hashes([p.hashes[name] for p in parts if name in p.hashes])
    else:
        out.categories, out.other_count = _merge_categories(cols, top_k, numeric=False)
        counted = sum((out.categories or {}).values()) + out.other_count
        out.distinct_count = len(_all_categories(cols)) if counted else 0
        if first.kind == "boolean":
            n_true = (out.categories or {}).get("True", 0)
            valid = sum((out.categories or {}).values())
            out.mean = n_true / valid if valid else None
    return out


def _all_categories(cols: list[ColumnProfile]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in cols:
        for k, v in (c.categories or {}).items():
            merged[k] = merged.get(k, 0) + v
    return merged


def _merge_categories(cols: list[ColumnProfile], top_k: int, *, numeric: bool) -> tuple[dict | None, int]:
    if numeric:
        if any(c.categories is None and c.min is not None for c in cols):
            return None, 0  # some partition had more than LOW_CARDINALITY values
        merged = _all_categories(cols)
        if len(merged) > 20:
            return None, 0
        return dict(sorted(merged.items(), key=lambda kv: -kv[1])), 0
    merged = _all_categories(cols)
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])
    other = sum(c for _, c in ranked[top_k:]) + sum(c.other_count for c in cols)
    return dict(ranked[:top_k]), int(other)


def _datetime_moments(cols: list[ColumnProfile]) -> tuple[Any, Any]:
    seen = [c for c in cols if c.mean is not None]
    if not seen:
        return None, None
    as_ns = [ColumnProfile(c.name, c.dtype, "numeric", count=c.count, mean=float(pd.Timestamp(c.mean).value),
                           std=float(pd.Timedelta(c.std).value) if c.std else None) for c in seen]
    mean, std = _combine_moments(as_ns)
    tz = pd.Timestamp(seen[0].mean).tz
    stamp = pd.Timestamp(int(round(mean or 0)), tz="UTC")
    stamp = stamp.tz_convert(tz) if tz is not None else stamp.tz_localize(None)
    return stamp.isoformat(), (pd.Timedelta(int(round(std)), unit="ns").isoformat() if std is not None else None)


def _merge(parts: list[_Part], *, key: list[str] | None, top_k: int, n_quantiles: int, sample_size: int,
           seed: int) -> Profile:
    n = sum(p.n for p in parts)
    names = list(parts[0].columns) if parts else []
    columns: dict[str, ColumnProfile] = {}
    for name in names:
        col = _merge_column(name, parts, top_k, n_quantiles)
        col.count = n - col.null_count
        col.null_rate = col.null_count / n if n else 0.0
        columns[name] = col
    rng = np.random.default_rng(seed)
    chosen = []
    take = min(sample_size, n)
    if take:  # each partition gives rows in proportion to its size
        counts = rng.multinomial(take, [p.n / n for p in parts])
        chosen = [p.sample.iloc[:k] for p, k in zip(parts, counts, strict=True) if k and p.sample is not None]
    frame = pd.concat(chosen) if chosen else pd.DataFrame(columns=names)
    sample = {c: C.json_list(frame[c]) for c in frame.columns}
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Profile(n_rows=n, columns=columns, key=key, created_at=created, sample=sample)


def _partitions(ddf: Any) -> list:
    return list(ddf.to_delayed())


def profile_partitioned(ddf: Any, *, key: str | list[str] | None = None, sample_size: int | None = None,
                        top_k: int | None = None, n_quantiles: int | None = None, random_state: int = 0,
                        dask: Any = None, progress: bool = False) -> Profile:
    """:func:`nbprod.profile` of a ``dask.dataframe.DataFrame``: partitions summarised on the workers,
    merged here (what is exact and what is a sketch: see the module docstring)."""
    sample_size = settings.sample_size if sample_size is None else sample_size
    top_k = settings.top_k if top_k is None else top_k
    n_quantiles = settings.n_quantiles if n_quantiles is None else n_quantiles
    keys = _key_list(key, ddf._meta) if key is not None else None
    q_sample = _quantile_sample(ddf.npartitions)

    def tasks_of(groups: list[list]) -> list[list]:
        return [(ddf if len(groups) == 1 else ddf[group]).map_partitions(
            _summarise_partition, sample_size, random_state, q_sample, meta=("summary", object),
            enforce_metadata=False, align_dataframes=False).to_delayed() for group in groups]

    def run(tasks: list[list]) -> list[list[_Part]]:
        with _dask.connect(dask) as client:
            done = iter(_dask.run([t for ts in tasks for t in ts], client, desc="profile", progress=progress))
        return [[next(done) for _ in ts] for ts in tasks]

    # Dask fuses a column group's small reads into fewer partitions, by a factor that depends on the
    # group's bytes: the groups' partitions are joined only when they cover the same rows (same
    # number of parts, same rows in each: then the same boundaries), else the whole partitions are read
    tasks = tasks_of(_column_groups(ddf))
    if len({len(ts) for ts in tasks}) > 1:
        tasks = tasks_of([list(ddf.columns)])
    per_group = run(tasks)
    if len(per_group) > 1 and any(len({g[i].n for g in per_group}) > 1 for i in range(len(per_group[0]))):
        per_group = run(tasks_of([list(ddf.columns)]))
    parts = [_join([g[i] for g in per_group]) for i in range(len(per_group[0]))]
    return _merge([p for p in parts if p.n] or parts, key=keys, top_k=top_k, n_quantiles=n_quantiles,
                  sample_size=sample_size, seed=random_state)


def _column_groups(ddf: Any) -> list[list]:
    """The frame's columns in groups of about :data:`PART_COLUMNS`, each summarised by its own task,
    when the frame is read straight from parquet (Dask then reads only a group's columns); else one
    group. Why: a task holds its read as Arrow and as pandas at once, so reading a row group's 25
    columns in seven tasks cut a worker's peak from ~430 to ~320 MB (2M × 25, benchmarks/bench_dask.py),
    without more CPU time. A frame
    computed from something else would recompute that per group, and CSV would be parsed whole."""
    columns = list(ddf.columns)
    if len(columns) <= PART_COLUMNS or not _reads_parquet(ddf):
        return [columns]
    return [list(g) for g in np.array_split(np.array(columns, dtype=object), -(-len(columns) // PART_COLUMNS))]


def _reads_parquet(ddf: Any) -> bool:
    """True when the (optimised) frame is a plain ``dd.read_parquet``: no computation on top of it."""
    try:
        from dask.dataframe.dask_expr.io.parquet import ReadParquet

        return isinstance(ddf.optimize().expr, ReadParquet)
    except (ImportError, AttributeError):  # another Dask: summarise whole partitions
        return False


def _join(groups: list[_Part]) -> _Part:
    """One partition's summary from its column groups' summaries (same rows, same sampled rows)."""
    if len(groups) == 1:
        return groups[0]
    first = groups[0]
    part = _Part(first.n, {})
    for g in groups:
        part.columns.update(g.columns)
        part.points.update(g.points)
        part.hashes.update(g.hashes)
    samples = [g.sample for g in groups if g.sample is not None]
    if samples:  # each group sampled the same row positions (same seed, same length)
        part.sample = pd.concat([s.reset_index(drop=True) for s in samples], axis=1).set_axis(samples[0].index)
    return part


def validate_partitioned(ddf: Any, against: Any = None, *, dask: Any = None, progress: bool = False, **options: Any):
    """:func:`nbprod.data.validate.validate` of each partition on the workers, reports merged here.

    The profile (or rules) is resolved once, here, and shipped to the workers. Failures of the same
    check add their counts; a column's share of missing values is judged on the counts of all the
    parts (its failure has no example rows); a duplicate key split across partitions is not seen."""
    import dask as dask_

    from . import validate as V
    from ._checks import Failure

    model_profile = options.pop("model_profile", None)
    profile, rules, label = V.resolve_against(against, model_profile=model_profile)
    if options.get("rules") is not None:  # read once, here, like the profile
        options["rules"] = V._as_rules(options["rules"])
    V.require_rules(rules, options.get("rules"))  # before any task is sent
    null_tolerance = options["null_tolerance"] = V.resolve_null_tolerance(options.get("null_tolerance"))
    resolved = profile if profile is not None else rules
    task = dask_.delayed(V.validate_part, pure=True)  # a part's report: whether the data has rows is told here
    tasks = [task(part, resolved, **options) for part in _partitions(ddf)]
    with _dask.connect(dask) as client:
        reports = _dask.run(tasks, client, desc="validate", progress=progress)
    merged: dict[tuple, Any] = {}
    for report in reports:
        for f in report.failures:
            k = (f.column, f.check)
            if k in merged:
                merged[k].count += f.count
            else:
                merged[k] = f
    n = sum(r.n_rows for r in reports)
    failures = list(merged.values())
    nulls: dict[str, int] = {}
    for report in reports:  # each column's share of missing values, over all the parts
        for name, count in report._null_counts.items():
            nulls[name] = nulls.get(name, 0) + count
    for name, count in nulls.items():
        message = V.null_share_message(name, profile.columns[name], count, n, null_tolerance) if profile else None
        if message is not None:  # no example rows: they are on the workers
            failures.append(Failure(column=name, check="nulls", count=count, message=message))
    if not n:
        failures.insert(0, Failure(column=None, check="no_rows", count=0, message=V.NO_ROWS))
    return V.ValidationReport(n_rows=n, failures=failures, against=label,
                              n_columns=reports[0].n_columns if reports else len(ddf.columns))


def _sample_part(df: pd.DataFrame, take: int, seed: int) -> pd.DataFrame:
    if take >= len(df):
        return df
    rng = np.random.default_rng(seed)
    return df.iloc[np.sort(rng.choice(len(df), take, replace=False))]


def drift_sample(ddf: Any, *, rows: int = DRIFT_SAMPLE, dask: Any = None, seed: int = 0) -> pd.DataFrame:
    """A uniform sample of ``rows`` rows of a dask frame (per partition, in proportion to its rows),
    for drift's tests on the client."""
    import dask as dask_

    parts = _partitions(ddf)
    lengths_tasks = [dask_.delayed(len)(p) for p in parts]
    with _dask.connect(dask) as client:
        lengths = _dask.run(lengths_tasks, client, desc="count", progress=False)
        n = sum(lengths)
        if n <= rows:  # all of it
            take = list(lengths)
        else:
            take = list(np.random.default_rng(seed).multinomial(rows, [k / n for k in lengths]))
        sample = dask_.delayed(_sample_part)
        tasks = [sample(p, int(k), seed + i) for i, (p, k) in enumerate(zip(parts, take, strict=True))]
        samples = _dask.run(tasks, client, desc="sample", progress=False)
    return pd.concat(samples, ignore_index=True) if samples else ddf._meta
