"""Drift benchmark: nbprod.drift vs Evidently 0.7.23's DataDriftPreset vs a plain scipy loop.

Same data, same run: ``make_frame(n, seed=0)`` is the reference, ``make_frame(n, seed=1)`` with
five columns shifted (below) the current data; 1,000,000 × 25 by default. Reported:

- nbprod ``drift(profile, current)`` (the production path: the training profile is the reference;
  the profile is built once, at registration, and timed separately), median of ``--repeats``;
- nbprod ``drift(reference_frame, current)`` (exact statistics), once;
- a plain scipy loop with Evidently's default tests (``wasserstein_distance`` / std, and
  ``jensenshannon`` on category shares), once;
- Evidently's ``DataDriftPreset`` once, when Evidently is importable (run this script with
  ``benchmarks/.venv-evidently/bin/python``: Evidently 0.7.23 needs pandas < 3);
- the drifted-column decisions of each, the largest |profile − exact| of the normalised
  Wasserstein and Jensen–Shannon scores, and nbprod's peak extra memory (tracemalloc: numpy and
  Python allocations) against the size of the current frame.

    python benchmarks/bench_drift.py [--rows 1000000] [--repeats 3] [--no-evidently]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import CATEGORICAL, NUMERIC, make_frame  # noqa: E402

#: The five shifted columns and how they move (make_frame has no shift option).
SHIFTED = {
    "num_00": "normal: mean + 0.5 std",
    "num_03": "exponential: values × 1.5",
    "num_06": "log-normal: values × 1.25",
    "cat_0": "10 levels: Zipf frequencies reversed",
    "cat_2": "30 levels: uniform frequencies instead of Zipf",
}


def shifted_frame(n: int, seed: int = 1) -> pd.DataFrame:
    frame = make_frame(n, seed)
    rng = np.random.default_rng(seed + 7)
    frame["num_00"] = frame["num_00"] + 0.5 * frame["num_00"].std()
    frame["num_03"] = frame["num_03"] * 1.5
    frame["num_06"] = frame["num_06"] * 1.25
    levels = list(frame["cat_0"].cat.categories)
    weights = np.arange(1, len(levels) + 1, dtype=float)
    frame["cat_0"] = pd.Categorical.from_codes(rng.choice(len(levels), n, p=weights / weights.sum()), categories=levels)
    levels = list(frame["cat_2"].cat.categories)
    frame["cat_2"] = pd.Categorical.from_codes(rng.integers(0, len(levels), n), categories=levels)
    return frame


def scipy_loop(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    """What a user writes by hand: one scipy call per column, Evidently's default tests."""
    from scipy import stats
    from scipy.spatial import distance

    drifted = []
    for name in ref.columns:
        r, c = ref[name].dropna(), cur[name].dropna()
        if name in NUMERIC:
            score = stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
        else:
            rc, cc = r.value_counts(), c.value_counts()
            keys = rc.index.union(cc.index)
            score = distance.jensenshannon(rc.reindex(keys, fill_value=0) / len(r),
                                           cc.reindex(keys, fill_value=0) / len(c))
        if score >= 0.1:
            drifted.append(name)
    return drifted


def evidently_run(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, list[str], dict]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                              Dataset.from_pandas(ref, data_definition=definition))
    result = snapshot.dict()
    seconds = time.perf_counter() - t
    drifted, scores = [], {}
    for metric in result["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        value = float(metric["value"])
        scores[config["column"]] = value
        p_value = "p_value" in config["method"]
        if (value < config["threshold"]) if p_value else (value >= config["threshold"]):
            drifted.append(config["column"])
    return seconds, drifted, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()

    import nbprod
    from nbprod.driftstats import drift

    n = args.rows
    ref, cur = make_frame(n, 0), shifted_frame(n, 1)
    cur_bytes = int(cur.memory_usage(deep=True).sum())
    print(f"data: {n:,} × {ref.shape[1]}  (current frame {cur_bytes / 1e6:.0f} MB); pandas {pd.__version__}, "
          f"numpy {np.__version__}; shifted: {', '.join(SHIFTED)}")

    t = time.perf_counter()
    profile = nbprod.profile(ref)
    t_profile = time.perf_counter() - t

    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        report = drift(profile, cur)
        times.append(time.perf_counter() - t)
    t_nbprod = statistics.median(times)

    tracemalloc.start()
    drift(profile, cur)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t = time.perf_counter()
    exact = drift(ref, cur)
    t_exact = time.perf_counter() - t

    t = time.perf_counter()
    scipy_drifted = scipy_loop(ref, cur)
    t_scipy = time.perf_counter() - t

    errors = {"wasserstein": 0.0, "jensenshannon": 0.0}
    worst = {}
    for a, b in zip(report.columns, exact.columns, strict=True):
        assert a.test == b.test, (a.column, a.test, b.test)
        err = abs(a.score - b.score)
        if err >= errors.get(a.test, 0.0):
            errors[a.test] = err
            worst[a.test] = a.column

    print(f"nbprod profile() of the reference:      {t_profile:7.2f} s (once, at registration)")
    print(f"nbprod drift(profile, current):         {t_nbprod:7.2f} s (median of {args.repeats}: "
          f"{', '.join(f'{x:.2f}' for x in times)})")
    print(f"nbprod drift(reference frame, current): {t_exact:7.2f} s (exact statistics)")
    print(f"plain scipy loop:                       {t_scipy:7.2f} s  → nbprod {t_scipy / t_nbprod:.1f}× faster")
    print(f"nbprod peak extra memory: {peak / 1e6:.0f} MB = {peak / cur_bytes:.2f}× the current frame")
    print(f"max |profile − exact|: normed Wasserstein {errors['wasserstein']:.5f} ({worst.get('wasserstein')}), "
          f"Jensen–Shannon {errors['jensenshannon']:.5f} ({worst.get('jensenshannon')})")
    print(f"drifted (profile): {report.drifted_columns}")
    print(f"drifted (exact):   {exact.drifted_columns}")
    print(f"drifted (scipy):   {scipy_drifted}")
    if args.no_evidently:
        return
    try:
        import evidently
    except ImportError:
        print("Evidently not importable here: run with benchmarks/.venv-evidently/bin/python for the ratio")
        return
    t_ev, ev_drifted, ev_scores = evidently_run(ref, cur)
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"Evidently {evidently.__version__} DataDriftPreset: {t_ev:7.2f} s  → nbprod {t_ev / t_nbprod:.0f}× faster "
          f"(process peak RSS {rss:.1f} GB)")
    print(f"drifted (Evidently): {sorted(ev_drifted)}")
    same = sorted(ev_drifted) == sorted(report.drifted_columns)
    print(f"same decisions as Evidently: {same}")
    ev_err = max(abs(ev_scores[c.column] - c.score) for c in exact.columns if c.column in ev_scores)
    print(f"max |nbprod exact − Evidently| score: {ev_err:.2e}")


if __name__ == "__main__":
    main()
