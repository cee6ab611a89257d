"""The one out-of-distribution checker: row_flags, the model server and validate() share its rules."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nbprod.data.ood import SMALL, OodChecker, bounds
from nbprod.data.profile import profile
from nbprod.data.validate import checker_for, row_flags, validate
from nbprod.errors import DataError


def train_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "income": rng.uniform(0, 100, n),
        "age": rng.integers(18, 90, n),
        "visits": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "country": pd.Categorical(rng.choice(["DE", "FR", "US"], n)),
        "city": pd.Series(rng.choice(["Berlin", "Paris", "NYC"], n)),  # pandas 3: "str" (Arrow-backed)
        "member": rng.random(n) < 0.5,
        "since": pd.date_range("2020-01-01", periods=n, freq="D", tz="Europe/Berlin"),
        "score": pd.Series(rng.random(n)).where(rng.random(n) > 0.2),  # nullable in training
    })


def shifted(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows of ``df`` with a few out-of-distribution values and some missing ones."""
    bad = df.iloc[:n].copy().reset_index(drop=True)
    bad["country"] = bad["country"].cat.add_categories(["XX"])
    bad.loc[3, "income"] = 1e9
    bad.loc[4, "city"] = "Tokyo"
    bad.loc[5, "since"] = pd.Timestamp("1999-01-01", tz="UTC")
    bad.loc[6, "score"] = np.nan
    bad.loc[7, "visits"] = pd.NA
    bad.loc[8, "age"] = -5
    bad.loc[9, "country"] = "XX"
    bad.loc[10, "visits"] = 40
    return bad


@pytest.fixture
def trained(nbprod_home):
    df = train_frame()
    return df, profile(df)


def request_columns(df: pd.DataFrame) -> dict:
    """What the server's codecs hand the checker: float arrays for numbers, lists otherwise."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if c in ("income", "age", "visits", "score"):
            cols[c] = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            cols[c] = [None if pd.isna(v) else (v.isoformat() if isinstance(v, pd.Timestamp) else v)
                       for v in s.tolist()]
    return cols


@pytest.mark.parametrize("tolerance", [0.0, 0.1])
@pytest.mark.parametrize("n", [20, SMALL + 36])
def test_frame_and_request_columns_give_the_same_flags(trained, tolerance, n):
    df, p = trained
    bad = shifted(df, n)
    flags, reasons = row_flags(bad, p, tolerance=tolerance)
    assert list(np.flatnonzero(flags)) == [3, 4, 5, 8, 9, 10]
    assert "income=1000000000.0 above the seen max" in reasons[3][0] and "Tokyo" in reasons[4][0]
    assert "since=1999-01-01T00:00:00 below the seen min" in reasons[5][0]
    checker = OodChecker.from_profile(p, tolerance)
    server = checker.flags(request_columns(bad), n)
    assert [bool(r) for r in server] == flags.tolist()
    assert [len(r) for r in server] == [len(r) for r in reasons]
    # every row alone (a one-row request) agrees with the whole frame
    for i in (0, 3, 4, 5, 6, 7, 8, 9, 10):
        one, why = row_flags(bad.iloc[[i]], p, tolerance=tolerance)
        assert bool(one[0]) == bool(flags[i]) and why[0] == reasons[i]


def test_bounds_are_inclusive_widened_and_shared_with_validate(trained):
    df, p = trained
    col = p.columns["income"]
    lo, hi = bounds(col, 0.1)
    span = col.max - col.min
    assert lo == pytest.approx(col.min - 0.1 * span) and hi == pytest.approx(col.max + 0.1 * span)
    checker = OodChecker.from_profile(p, 0.1)
    edge = {"income": np.array([lo, hi, np.nextafter(hi, np.inf), np.nan])}
    assert [bool(r) for r in checker.flags(edge, 4)] == [False, False, True, False]
    # validate's out_of_range counts are exactly the checker's range flags, column by column
    rng = np.random.default_rng(0)
    new = df.copy()
    new["income"] = rng.uniform(-30, 130, len(df))
    new["age"] = rng.integers(0, 120, len(df))
    new["since"] = pd.date_range("2019-06-01", periods=len(df), freq="2D", tz="UTC")
    for tolerance in (0.0, 0.1, 0.5):
        report = validate(new, p, tolerance=tolerance)
        counts = {f.column: f.count for f in report.failures if f.check == "out_of_range"}
        _, reasons = row_flags(new, p, tolerance=tolerance)
        for c in ("income", "age", "since"):
            flagged = sum(any(r.startswith(f"{c}=") for r in rs) for rs in reasons)
            assert counts.get(c, 0) == flagged, (c, tolerance)


def test_missing_values_and_unreadable_values_are_not_flagged(trained):
    _, p = trained
    checker = checker_for(p, 0.0)
    cols = {"income": [None, float("nan"), "12", "abc", 1e9], "city": [None, float("nan"), "Paris", pd.NA, "Rome"],
            "since": [None, "not a date", "2020-03-01T00:00:00+01:00", pd.NaT, "1990-01-01"]}
    reasons = checker.flags(cols, 5)
    assert reasons[:4] == [[], [], [], []]
    assert len(reasons[4]) == 3
    big = {k: v * 20 for k, v in cols.items()}  # the vectorised path: same answers
    assert checker.flags(big, 100)[:5] == reasons


def test_category_text_matching_is_lenient_for_requests(trained):
    _, p = trained
    checker = checker_for(p, 0.0)
    assert checker.flags({"member": [True, False, "True", np.bool_(False)]}, 4) is None
    assert checker.flags({"country": pd.Categorical(["DE", "FR"])}, 2) is None
    reasons = checker.flags({"member": [1.5]}, 1)
    assert reasons == [["member=1.5 is an unseen category"]]


def test_checker_is_cached_per_profile_and_tolerance(trained):
    _, p = trained
    assert checker_for(p, 0.1) is checker_for(p, 0.1)
    assert checker_for(p, 0.2) is not checker_for(p, 0.1)
    assert checker_for(p, 0.1) == OodChecker.from_profile(p, 0.1)
    with pytest.raises(DataError):
        OodChecker.from_profile(p.to_dict())
    with pytest.raises(DataError):
        checker_for(p, -1)


def test_default_tolerance_comes_from_settings(trained):
    from nbprod.config import settings

    _, p = trained
    settings.set(range_tolerance=0.25)
    assert OodChecker.from_profile(p).tolerance == 0.25
    assert OodChecker.from_profile(p) == checker_for(p)


def test_empty_frame_and_a_profile_with_nothing_to_check(nbprod_home):
    p = profile(pd.DataFrame({"x": pd.Series([], dtype="float64")}))
    checker = OodChecker.from_profile(p)
    assert len(checker) == 0 and checker.flags({"x": np.array([1e9])}, 1) is None
    flags, reasons = row_flags(pd.DataFrame({"x": pd.Series([], dtype="float64")}), p)
    assert flags.shape == (0,) and reasons == []


def test_server_uses_the_shared_checker_and_it_unpickles_without_pandas(trained, tmp_path):
    from nbprod.serving import loader

    _, p = trained
    assert loader.OodChecker is OodChecker and loader._ood_checker(None) is None
    served = loader._ood_checker(p)
    assert served == OodChecker.from_profile(p)
    path = tmp_path / "checker.pkl"
    path.write_bytes(pickle.dumps(served))
    code = ("import pickle, sys, numpy as np; c = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "r = c.flags({'income': np.array([1e9]), 'city': ['Tokyo']}, 1); "
            "assert len(r[0]) == 2, r; assert 'pandas' not in sys.modules, 'pandas imported'")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_masked_and_coded_columns_on_both_paths(trained):
    from nbprod.data.ood import Coded, Masked

    _, p = trained
    checker = checker_for(p, 0.0)
    for n in (3, SMALL * 2):
        reps = n // 3
        cols = {"visits": Masked(np.array([1, 40, 99] * reps), np.array([False, False, True] * reps)),
                "country": Coded(np.array([0, 1, -1] * reps, dtype=np.int8), ["DE", "XX", "FR"])}
        reasons = checker.flags(cols, n)
        assert reasons[:3] == [[], ["visits=40 above the seen max 4", "country='XX' is an unseen category"], []]
