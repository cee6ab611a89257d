"""The benchmark frame shared by the validation, registry, serving and drift benchmarks.

``make_frame(n_rows, seed, bad=False)``: 25 columns —

- ``num_00`` … ``num_19``: 20 numeric columns of mixed distributions (normal, log-normal,
  uniform, exponential, Poisson and bounded integer counts); ``num_17``–``num_19`` are nullable
  (about 5% NaN), ``num_15`` and ``num_16`` are int64;
- ``cat_0`` … ``cat_4``: 5 pandas ``category`` columns with 10, 20, 30, 40 and 50 levels
  (Zipf-like frequencies).

``bad=True`` returns the *same* frame (same seed) with about 1% bad values in 4 columns, so a
profile of the clean frame flags exactly these:

- ``num_00``: values ×1000 (out of the seen range, high);
- ``num_01`` (log-normal, always > 0): negated (out of range, low);
- ``num_02`` (never null): NaN;
- ``cat_0``: an unseen category ``"zz_unseen"``.

Run ``python benchmarks/data.py`` to print the frame's shape, dtypes and memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_frame", "NUMERIC", "CATEGORICAL", "NULLABLE", "BAD_COLUMNS", "CAT_LEVELS"]

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
NULLABLE = ["num_17", "num_18", "num_19"]
BAD_COLUMNS = ["num_00", "num_01", "num_02", "cat_0"]
CAT_LEVELS = [10, 20, 30, 40, 50]
BAD_FRACTION = 0.01


def _numeric(rng: np.random.Generator, i: int, n: int) -> np.ndarray:
    kind = i % 5
    if i in (15, 16):
        return rng.integers(0, 1_000, n) if i == 15 else rng.poisson(3.0, n).astype("int64")
    if kind == 0:
        return rng.normal(100.0 * i, 10.0 + i, n)
    if kind == 1:
        return rng.lognormal(1.0, 0.75, n)
    if kind == 2:
        return rng.uniform(-i, i + 1.0, n)
    if kind == 3:
        return rng.exponential(2.0 + i, n)
    return rng.standard_t(5, n) * 3.0


def make_frame(n_rows: int = 1_000_000, seed: int = 0, bad: bool = False,
               categorical: str = "category") -> pd.DataFrame:
    """The 25-column benchmark frame (see the module docstring). Deterministic in ``seed``.

    ``categorical="str"`` gives the 5 categorical columns pandas' default string dtype instead of
    ``category`` (what a CSV read or a JSON request produces).
    """
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for i, name in enumerate(NUMERIC):
        values = _numeric(rng, i, n_rows)
        if name in NULLABLE:
            values = values.astype("float64")
            values[rng.random(n_rows) < 0.05] = np.nan
        data[name] = values
    for name, levels in zip(CATEGORICAL, CAT_LEVELS, strict=True):
        weights = 1.0 / np.arange(1, levels + 1)
        codes = rng.choice(levels, n_rows, p=weights / weights.sum()).astype("int8")
        labels = [f"{name}_level_{j:02d}" for j in range(levels)]
        data[name] = pd.Categorical.from_codes(codes, categories=labels)
    frame = pd.DataFrame(data)
    if bad:
        bad_rng = np.random.default_rng(seed + 1_000_003)
        picks = {c: bad_rng.random(n_rows) < BAD_FRACTION for c in BAD_COLUMNS}
        frame.loc[picks["num_00"], "num_00"] *= 1000.0
        frame.loc[picks["num_01"], "num_01"] *= -1.0
        frame.loc[picks["num_02"], "num_02"] = np.nan
        cat = frame["cat_0"].cat.add_categories(["zz_unseen"])
        cat[picks["cat_0"]] = "zz_unseen"
        frame["cat_0"] = cat
    if categorical != "category":
        for name in CATEGORICAL:
            frame[name] = frame[name].astype(categorical)
    return frame


if __name__ == "__main__":  # pragma: no cover
    f = make_frame(1_000_000)
    print(f.shape, f"{f.memory_usage(deep=True).sum() / 1e6:.1f} MB")
    print(f.dtypes.value_counts())
