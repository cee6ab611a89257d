"""Validation benchmark: nbprod vs pandera (lazy DataFrameSchema) vs a hand-written numpy check.

The frame is benchmarks/data.py's 1,000,000 rows × 25 columns (20 numeric, 5 categorical, a few
nullable). The checks are the same for all three: dtype, nulls (only where the training data had
none), the seen [min, max] range and the seen categories. nbprod validates against a profile of
the clean frame; pandera gets the equivalent lazy schema built from the same profile; the numpy
floor is the minimum work (a min/max per numeric column, a null check, a category look-up on
codes). Both the clean frame and the "bad" frame (~1% bad values in 4 columns) are measured.

Run it in the benchmark venv (pandera is not an nbprod dependency)::

    benchmarks/.venv/bin/python benchmarks/bench_validate.py [--rows 1000000] [--repeat 5]

It prints medians, the nbprod/pandera ratio, profile() time, and peak extra memory (tracemalloc)
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


def pandera_schema(profile, categorical: str):
    import pandera.pandas as pa

    columns = {}
    for name, col in profile.columns.items():
        nullable = col.null_count > 0
        if col.kind == "numeric":
            columns[name] = pa.Column(col.dtype, checks=[pa.Check.in_range(col.min, col.max)], nullable=nullable)
        else:
            columns[name] = pa.Column(categorical, checks=[pa.Check.isin(list(col.categories))], nullable=nullable)
    return pa.DataFrameSchema(columns, strict=True)


def pandera_validate(schema, df) -> int:
    import pandera.errors as pe

    try:
        schema.validate(df, lazy=True)
    except pe.SchemaErrors as err:
        return len(err.failure_cases)
    return 0


def numpy_floor(profile, df) -> int:
    """The same checks, hand-written: the least work any validator has to do."""
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
            if lo < col.min or hi > col.max:
                bad += int(np.count_nonzero((v < col.min) | (v > col.max)))
        elif isinstance(s.dtype, pd.CategoricalDtype):
            allowed = set(col.categories)
            lut = np.array([c not in allowed for c in s.cat.categories] + [col.null_count == 0])
            bad += int(np.count_nonzero(lut[s.cat.codes.to_numpy()]))
        else:
            bad += int(np.count_nonzero(~s.isin(list(col.categories)).to_numpy()))
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--categorical", default="category", choices=["category", "str"],
                        help="dtype of the 5 categorical columns (default: category)")
    parser.add_argument("--no-pandera", action="store_true", help="skip pandera (e.g. outside the benchmark venv)")
    args = parser.parse_args()

    import nbprod
    from nbprod.data.profile import profile
    from nbprod.data.validate import validate

    clean = make_frame(args.rows, seed=0, categorical=args.categorical)
    bad = make_frame(args.rows, seed=0, bad=True, categorical=args.categorical)
    size = int(clean.memory_usage(deep=True).sum())
    versions = f"nbprod {nbprod.__version__}, pandas {pd.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}"
    schema, categorical = None, args.categorical
    if not args.no_pandera:
        import pandera

        versions += f", pandera {pandera.__version__}"
    print(f"{args.rows:,} rows × {clean.shape[1]} columns ({args.categorical} categoricals), {size / 1e6:.0f} MB; {versions}")

    t_profile, prof = timed(lambda: profile(clean), args.repeat)
    mem_profile = peak_extra(lambda: profile(clean))
    print(f"profile():            {t_profile * 1000:8.1f} ms   peak extra memory {mem_profile / 1e6:6.1f} MB "
          f"({mem_profile / size:.2f}× the frame)")
    if not args.no_pandera:
        schema = pandera_schema(prof, categorical)

    for label, df in (("clean", clean), ("bad", bad)):
        t_nb, report = timed(lambda: validate(df, prof), args.repeat)
        mem_nb = peak_extra(lambda: validate(df, prof))
        t_np, floor_bad = timed(lambda: numpy_floor(prof, df), args.repeat)
        found = sorted({f.column for f in report.failures})
        print(f"[{label}] nbprod validate: {t_nb * 1000:8.1f} ms   peak extra memory {mem_nb / 1e6:6.1f} MB "
              f"({mem_nb / size:.2f}× the frame); failures in {found or 'none'}")
        print(f"[{label}] numpy floor:     {t_np * 1000:8.1f} ms   ({floor_bad:,} bad values)")
        if label == "bad":
            assert found == sorted(BAD_COLUMNS), found
        if schema is not None:
            t_pa, n_cases = timed(lambda: pandera_validate(schema, df), max(3, args.repeat // 2))
            print(f"[{label}] pandera lazy:    {t_pa * 1000:8.1f} ms   ({n_cases:,} failure cases)")
            print(f"[{label}] ratio pandera / nbprod = {t_pa / t_nb:.1f}×   (nbprod / numpy floor = {t_nb / t_np:.2f}×)")


if __name__ == "__main__":
    main()
