"""Validation benchmark: nbprod vs pandera (lazy DataFrameSchema) vs a hand-written numpy check.

The frame is benchmarks/data.py's 1,000,000 rows × 25 columns (20 numeric, 5 categorical, a few
nullable). nbprod validates against a profile of the clean frame; pandera gets the equivalent lazy
schema built from the same profile; the numpy floor is a naive hand-written check (two reductions
per numeric column, a null check, a category look-up). Both the clean frame and the "bad" frame
(~1% bad values in 4 columns) are measured, in the same process, interleaved.

What each side checks, column by column (the same rules, both lazy — every failure collected):

================  =============================================  ====================================
check             nbprod ``validate(df, profile, tolerance=t)``  pandera ``schema.validate(df, lazy=True)``
================  =============================================  ====================================
columns           missing and extra columns                      ``required=True`` + ``strict=True``
dtype             numeric: same kind, exact or widening           ``pa.Column(<profile dtype>)`` (exact)
                  (int→float only if integral); categorical:
                  any non-datetime dtype (compared by text)
nulls             only where the training data had none           ``nullable=False`` where it had none
range             seen [min, max] widened by t × span, inclusive  ``Check.in_range(lo, hi)`` with the
                  (``nbprod.data.ood.bounds``)                    same widened bounds, inclusive
categories        seen set (when complete)                        ``Check.isin(categories)``
================  =============================================  ====================================

nbprod reads a large frame's numeric columns (min/max reductions) and hashes its Arrow or
shared-object string columns on threads, the calling thread included (2 on this machine: that work
is CPU-bound and releases the GIL); ``--serial`` also times it on one thread, in the same run, and
checks the reports are identical.

Run it in the benchmark venv (pandera is not an nbprod dependency)::

    benchmarks/.venv/bin/python benchmarks/bench_validate.py [--rows 1000000] [--repeat 7] [--categorical str]

It prints the machine load (``uptime``) before and after, medians, and the pandera/nbprod ratio
three ways: interleaved (round-robin in a rotating order, so each call finds the frame as another
contender left it), back to back (each repeated, so it finds the frame in cache as ``timeit``
would) and cold (each call right after a write of twice the frame's size evicts it from cache),
profile() time, and peak extra memory (tracemalloc; pyarrow's own allocations are not traced)
relative to the frame's size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import BAD_COLUMNS, make_frame  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_extra(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def pandera_schema(profile, tolerance: float):
    """The lazy pandera schema of nbprod's profile checks (see the module docstring)."""
    import pandera.pandas as pa

    from nbprod.data.ood import bounds

    columns = {}
    for name, col in profile.columns.items():
        nullable = col.null_count > 0
        if col.kind == "numeric":
            lo, hi = bounds(col, tolerance)  # the bounds nbprod uses
            columns[name] = pa.Column(col.dtype, checks=[pa.Check.in_range(lo, hi)], nullable=nullable, required=True)
        else:
            columns[name] = pa.Column(col.dtype, checks=[pa.Check.isin(list(col.categories))], nullable=nullable,
                                      required=True)
    return pa.DataFrameSchema(columns, strict=True)


def pandera_validate(schema, df) -> int:
    import pandera.errors as pe

    try:
        schema.validate(df, lazy=True)
    except pe.SchemaErrors as err:
        return len(err.failure_cases)
    return 0


def numpy_floor(profile, df, tolerance: float) -> int:
    """The same checks, hand-written the obvious way (two reductions per numeric column)."""
    from nbprod.data.ood import bounds

    bad = 0
    for name, col in profile.columns.items():
        s = df[name]
        if str(s.dtype) != col.dtype and not (col.kind == "categorical" and isinstance(s.dtype, pd.CategoricalDtype)):
            bad += 1
        if col.kind == "numeric":
            v = s.to_numpy()
            if col.null_count == 0 and v.dtype.kind == "f":
                bad += int(np.isnan(v).sum())
            lo, hi = np.fmin.reduce(v), np.fmax.reduce(v)
            b_lo, b_hi = bounds(col, tolerance)
            if lo < b_lo or hi > b_hi:
                bad += int(np.count_nonzero((v < b_lo) | (v > b_hi)))
        elif isinstance(s.dtype, pd.CategoricalDtype):
            allowed = set(col.categories)
            lut = np.array([c not in allowed for c in s.cat.categories] + [col.null_count == 0])
            bad += int(np.count_nonzero(lut[s.cat.codes.to_numpy()]))
        else:
            bad += int(np.count_nonzero(~s.isin(list(col.categories)).to_numpy()))
    return bad


def uptime() -> str:
    """The machine's load average (1, 5, 15 min), as ``uptime`` shows it."""
    try:
        return "load average " + ", ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        import os

        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def interleaved(fns: dict, repeat: int) -> dict:
    """Median seconds of each function, run round-robin so that load changes hit all alike.

    The order rotates each repeat: pandera's temporaries evict the frame from cache and the numpy
    check reads it back in, so a fixed order would always hand one contender a cold frame."""
    times: dict = {k: [] for k in fns}
    results: dict = {}
    keys = list(fns)
    for r in range(repeat):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t0 = time.perf_counter()
            results[k] = fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), results[k]) for k, v in times.items()}


def cold(fns: dict, repeat: int, frame_bytes: int) -> dict:
    """Median seconds of each function, each call made right after writing a buffer of twice the
    frame's size: every contender starts with the frame out of cache (as after other work)."""
    scratch = np.zeros(max(2 * frame_bytes, 64 << 20) // 8)
    times: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            scratch += 1.0
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tolerance", type=float, default=0.1, help="range tolerance for both sides (default 0.1)")
    parser.add_argument("--categorical", default="category", choices=["category", "str", "object"],
                        help="dtype of the 5 categorical columns (default: category). On pandas 2, 'str' and "
                             "'object' are both object columns: 'str' of one string object per row "
                             "(astype(str)), 'object' of a few shared objects, as read_csv and "
                             "read_parquet give them")
    parser.add_argument("--no-pandera", action="store_true", help="skip pandera (e.g. outside the benchmark venv)")
    parser.add_argument("--serial", action="store_true", help="also time nbprod on one thread")
    args = parser.parse_args()

    import nbprod
    import nbprod.data.validate as V
    from nbprod.data.profile import profile
    from nbprod.data.validate import validate

    print(f"before: {uptime()}")
    clean = make_frame(args.rows, seed=0, categorical=args.categorical)
    bad = make_frame(args.rows, seed=0, bad=True, categorical=args.categorical)
    size = int(clean.memory_usage(deep=True).sum())
    versions = (f"nbprod {nbprod.__version__}, pandas {pd.__version__}, numpy {np.__version__}, "
                f"Python {sys.version.split()[0]}")
    schema = None
    if not args.no_pandera:
        import pandera

        versions += f", pandera {pandera.__version__}"
    print(f"{args.rows:,} rows × {clean.shape[1]} columns ({args.categorical} categoricals), {size / 1e6:.0f} MB; "
          f"{versions}")
    print(f"nbprod threads: {V._workers(args.rows, sum(V._pass_cost(clean[c]) > 0 for c in clean.columns))}")

    t_profile, prof = timed(lambda: profile(clean), args.repeat)
    mem_profile = peak_extra(lambda: profile(clean))
    print(f"profile():            {t_profile * 1000:8.1f} ms   peak extra memory {mem_profile / 1e6:6.1f} MB "
          f"({mem_profile / size:.2f}× the frame)")
    if not args.no_pandera:
        schema = pandera_schema(prof, args.tolerance)
    tol = args.tolerance

    def serial(df):
        saved, V.PARALLEL_MIN_ROWS = V.PARALLEL_MIN_ROWS, 1 << 62
        try:
            return validate(df, prof, tolerance=tol)
        finally:
            V.PARALLEL_MIN_ROWS = saved

    def compare(label: str, df) -> None:
        """Time nbprod (and its serial path), the numpy floor and pandera on one frame; print the ratios."""
        fns = {"nbprod": lambda: validate(df, prof, tolerance=tol)}
        if args.serial:
            fns["nbprod serial"] = lambda: serial(df)
        fns["numpy floor"] = lambda: numpy_floor(prof, df, tol)
        if schema is not None:
            fns["pandera"] = lambda: pandera_validate(schema, df)
        got = interleaved(fns, args.repeat)
        mem_nb = peak_extra(lambda: validate(df, prof, tolerance=tol))
        t_nb, report = got["nbprod"]
        found = sorted({f.column for f in report.failures})
        n_bad = sum(f.count for f in report.failures)
        print(f"[{label}] nbprod validate: {t_nb * 1000:8.1f} ms   peak extra memory {mem_nb / 1e6:6.1f} MB "
              f"({mem_nb / size:.2f}× the frame); {n_bad:,} bad values in {found or 'none'}")
        if args.serial:
            t_s, rep_s = got["nbprod serial"]
            assert rep_s.to_dict() == report.to_dict()
            print(f"[{label}] nbprod serial:   {t_s * 1000:8.1f} ms   (same report)")
        t_np, floor_bad = got["numpy floor"]
        print(f"[{label}] numpy floor:     {t_np * 1000:8.1f} ms   ({floor_bad:,} bad values)")
        if label == "bad":
            assert found == sorted(BAD_COLUMNS), found
        if schema is not None:
            t_pa, n_cases = got["pandera"]
            assert n_cases == n_bad == floor_bad, (n_cases, n_bad, floor_bad)
            print(f"[{label}] pandera lazy:    {t_pa * 1000:8.1f} ms   ({n_cases:,} failure cases)")
            extra = f", serial {t_pa / got['nbprod serial'][0]:.1f}×" if args.serial else ""
            print(f"[{label}] ratio pandera / nbprod = {t_pa / t_nb:.1f}×{extra}   "
                  f"(nbprod / numpy floor = {t_nb / t_np:.2f}×)")
        if schema is not None:  # the same two, each repeated back to back (the frame stays in L3, as timeit runs it)
            t_nb_w, _ = timed(lambda: validate(df, prof, tolerance=tol), args.repeat)
            t_pa_w, _ = timed(lambda: pandera_validate(schema, df), args.repeat)
            print(f"[{label}] back to back: nbprod {t_nb_w * 1000:.1f} ms, pandera {t_pa_w * 1000:.1f} ms, "
                  f"ratio {t_pa_w / t_nb_w:.1f}×")
            t_cold = cold({"nbprod": fns["nbprod"], "pandera": fns["pandera"]}, args.repeat, size)
            print(f"[{label}] cold cache:   nbprod {t_cold['nbprod'] * 1000:.1f} ms, pandera "
                  f"{t_cold['pandera'] * 1000:.1f} ms, ratio {t_cold['pandera'] / t_cold['nbprod']:.1f}×")

    for label, df in (("clean", clean), ("bad", bad)):
        compare(label, df)
    print(f"after: {uptime()}")


if __name__ == "__main__":
    main()
