"""Training profiles: every dtype, odd frames, JSON round-trip, schema versioning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nbprod.data.profile import SCHEMA_VERSION, ColumnProfile, Profile, profile
from nbprod.data.validate import row_flags, validate
from nbprod.errors import DataError, ProfileError


def all_dtypes_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ints = pd.array(rng.integers(0, 10, n), dtype="Int64")
    ints[::7] = pd.NA
    flags = pd.array(rng.random(n) < 0.5, dtype="boolean")
    flags[::5] = pd.NA
    return pd.DataFrame({
        "f": rng.normal(size=n),
        "i": rng.integers(-5, 5, n),
        "Int": ints,
        "Float": pd.array(rng.random(n), dtype="Float64"),
        "b": rng.random(n) < 0.3,
        "boolean": flags,
        "cat": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        "obj": pd.Series(rng.choice(["x", "y", None], n), dtype=object),
        "string": pd.Series(rng.choice(["p", "q"], n), dtype="string"),
        "str_default": pd.Series(rng.choice(["u", "v", "w"], n)),
        "when": pd.date_range("2024-01-01", periods=n, freq="h"),
        "when_tz": pd.date_range("2024-01-01", periods=n, freq="D", tz="Europe/Berlin"),
        "all_null": pd.Series([np.nan] * n),
        "größe ✓": rng.random(n),
        "mixed": pd.Series([1, "a", 2.5, None] * (n // 4), dtype=object),
    })


def test_every_dtype_gets_the_right_kind_and_stats(nbprod_home):
    df = all_dtypes_frame()
    p = profile(df, n_quantiles=4, top_k=2)
    kinds = {c.name: c.kind for c in p.columns.values()}
    assert kinds == {"f": "numeric", "i": "numeric", "Int": "numeric", "Float": "numeric", "b": "boolean",
                     "boolean": "boolean", "cat": "categorical", "obj": "categorical", "string": "categorical",
                     "str_default": "categorical", "when": "datetime", "when_tz": "datetime", "all_null": "numeric",
                     "größe ✓": "numeric", "mixed": "categorical"}
    assert p.n_rows == 40 and p.column_names == list(df.columns)
    f = p.columns["f"]
    assert f.min == pytest.approx(df.f.min()) and f.max == pytest.approx(df.f.max())
    assert f.mean == pytest.approx(df.f.mean()) and f.std == pytest.approx(df.f.std())
    assert len(f.quantiles) == 5 and f.quantiles[0] == f.min and f.quantiles[-1] == f.max
    assert f.quantiles == sorted(f.quantiles)
    nulls = p.columns["Int"].null_count
    assert nulls == int(df.Int.isna().sum()) and p.columns["Int"].count == 40 - nulls
    assert p.columns["Int"].min == int(df.Int.min())
    assert p.columns["all_null"].null_rate == 1.0 and p.columns["all_null"].min is None
    assert p.columns["all_null"].quantiles is None
    cat = p.columns["cat"]
    assert sum(cat.categories.values()) + cat.other_count == 40 and len(cat.categories) == 2
    assert cat.distinct_count == 3 and not cat.categories_complete
    assert p.columns["obj"].null_count == int(df.obj.isna().sum())
    assert p.columns["b"].mean == pytest.approx(df.b.mean())
    assert p.columns["when"].min == "2024-01-01T00:00:00"
    assert p.columns["when_tz"].min.endswith("+01:00") and p.columns["when_tz"].dtype.startswith("datetime64")
    assert p.columns["str_default"].dtype in ("str", "object")  # pandas 3 default string dtype is "str"


def test_text_columns_count_every_kind_of_missing_value_as_null(nbprod_home):
    values = ["a", None, "b", np.nan, "a", pd.NA, "a"]
    for dtype in (object, "string[python]", "string[pyarrow]"):
        col = profile(pd.DataFrame({"s": pd.Series(values, dtype=dtype)})).columns["s"]
        assert (col.null_count, col.categories, col.distinct_count) == (3, {"a": 3, "b": 1}, 2), dtype
    mixed = profile(pd.DataFrame({"m": pd.Series([1, "1", None, np.nan, 2.5], dtype=object)})).columns["m"]
    assert (mixed.null_count, mixed.categories) == (2, {"1": 2, "2.5": 1})


def test_json_round_trip_and_sample_frame(nbprod_home, tmp_path):
    df = all_dtypes_frame()
    p = profile(df, sample_size=10)
    text = p.to_json()
    json.loads(text)  # plain JSON
    assert "NaN" not in text
    q = Profile.from_json(text)
    assert q.to_dict() == p.to_dict()
    assert {len(v) for v in p.sample.values()} == {10}
    sample = q.sample_frame()
    assert list(sample.columns) == list(df.columns) and len(sample) == 10
    for name in ("f", "i", "Int", "cat", "string", "when", "when_tz", "b"):
        assert str(sample[name].dtype) == p.columns[name].dtype, name
    path = p.save(tmp_path / "sub" / "profile.json")
    assert Profile.load(path).to_dict() == p.to_dict()
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_sample_is_bounded_uniform_and_reproducible(nbprod_home):
    df = pd.DataFrame({"x": np.arange(10_000), "y": np.arange(10_000) * 2})
    a, b = profile(df, sample_size=500), profile(df, sample_size=500)
    assert a.sample == b.sample and len(a.sample["x"]) == 500
    assert all(y == 2 * x for x, y in zip(a.sample["x"], a.sample["y"], strict=True))  # whole rows
    assert 3_000 < np.mean(a.sample["x"]) < 7_000


def test_large_numeric_column_quantiles_and_distinct_estimate(nbprod_home):
    rng = np.random.default_rng(0)
    n = 300_000
    df = pd.DataFrame({"x": rng.normal(size=n), "few": rng.integers(0, 40, n), "r": np.round(rng.random(n), 3)})
    p = profile(df, n_quantiles=10)
    exact = np.quantile(df.x, np.linspace(0, 1, 11))
    assert np.allclose(p.columns["x"].quantiles[1:-1], exact[1:-1], atol=0.02)
    assert p.columns["x"].distinct_count == pytest.approx(n, rel=0.03)
    assert p.columns["few"].distinct_count == 40
    assert p.columns["r"].distinct_count == 1001


def test_empty_frame_and_single_row(nbprod_home):
    empty = all_dtypes_frame().iloc[:0]
    p = profile(empty)
    assert p.n_rows == 0 and all(c.count == 0 and c.null_rate == 0.0 for c in p.columns.values())
    assert Profile.from_json(p.to_json()).to_dict() == p.to_dict()
    assert p.sample_frame().empty
    one = all_dtypes_frame().iloc[:1]
    p1 = profile(one)
    assert p1.columns["f"].std is None and p1.columns["f"].min == p1.columns["f"].max
    assert validate(one, p1).ok
    assert validate(empty, p).checks == ["no_rows"]  # a profile of no rows validates nothing either


def test_profile_refuses_bad_input(nbprod_home):
    with pytest.raises(DataError, match="not a pandas DataFrame"):
        profile([1, 2, 3])
    with pytest.raises(DataError, match="Series"):
        profile(pd.Series([1, 2]))
    with pytest.raises(ProfileError, match="key column"):
        profile(pd.DataFrame({"a": [1]}), key="b")
    with pytest.raises(ProfileError, match="top_k"):
        profile(pd.DataFrame({"a": [1]}), top_k=0)
    with pytest.raises(DataError, match="duplicate column names"):
        profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def test_newer_schema_and_malformed_json_are_profile_errors(nbprod_home):
    d = profile(pd.DataFrame({"a": [1.0, 2.0]})).to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ProfileError, match="newer") as err:
        Profile.from_dict(d)
    assert "upgrade nbprod" in err.value.fix
    for bad in ("{", "[]", '{"schema_version": 1}', '{"n_rows": 1, "columns": {}}',
                '{"schema_version": 1, "n_rows": 1, "columns": {"a": {"name": "a"}}}',
                '{"schema_version": 1, "n_rows": 1, "columns": {"a": {"name": "a", "dtype": "x", "kind": "weird"}}}'):
        with pytest.raises(ProfileError):
            Profile.from_json(bad)


def test_display_is_a_summary_not_the_data(nbprod_home):
    df = pd.DataFrame({"secret": [123456.789, 2.0, 3.0], "c": ["x", "y", "z"]})
    p = profile(df)
    html = p._repr_html_()
    assert "<table>" in html and "secret" in html and "123456.789" not in html
    assert "3 rows × 2 columns" in str(p)
    assert isinstance(p.columns["c"], ColumnProfile)
    with pytest.raises(ProfileError, match="no column"):
        p["nope"]


# --- property-style: any odd frame profiles, round-trips, and validates against itself -----------
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def odd_frames(draw):
    n = draw(st.integers(0, 12))
    cols = {}
    kinds = draw(st.lists(st.sampled_from(["float", "int", "Int64", "str", "object", "category", "bool", "boolean",
                                           "datetime", "allnull", "mixed"]), min_size=1, max_size=5))
    for j, kind in enumerate(kinds):
        name = draw(st.sampled_from(["a", "ü", "列", "x y", "0", "index"])) + str(j)
        if kind == "float":
            cols[name] = pd.Series(draw(st.lists(_floats, min_size=n, max_size=n)), dtype="float64")
        elif kind == "int":
            cols[name] = pd.Series(draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)), dtype="int64")
        elif kind == "Int64":
            cols[name] = pd.Series(draw(st.lists(st.one_of(st.none(), st.integers(-100, 100)), min_size=n, max_size=n)),
                                   dtype="Int64")
        elif kind in ("str", "object", "category"):
            values = draw(st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=n, max_size=n))
            dtype = {"str": "str", "object": object, "category": "category"}[kind]
            cols[name] = pd.Series(values, dtype=dtype)
        elif kind == "bool":
            cols[name] = pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        elif kind == "boolean":
            cols[name] = pd.Series(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)),
                                   dtype="boolean")
        elif kind == "datetime":
            days = draw(st.lists(st.one_of(st.none(), st.integers(0, 20_000)), min_size=n, max_size=n))
            stamps = [None if d is None else pd.Timestamp("1990-01-01") + pd.Timedelta(days=d) for d in days]
            cols[name] = pd.Series(stamps, dtype="datetime64[ns]")
        elif kind == "allnull":
            cols[name] = pd.Series([None] * n, dtype=object)
        else:
            cols[name] = pd.Series(draw(st.lists(st.one_of(st.none(), st.integers(0, 3), st.text(max_size=2), _floats),
                                                 min_size=n, max_size=n)), dtype=object)
    return pd.DataFrame(cols, index=range(n))


@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # a busy CI core
@given(odd_frames())
def test_any_frame_profiles_round_trips_and_passes_its_own_profile(nbprod_home, df):
    p = profile(df, sample_size=5)
    again = Profile.from_json(p.to_json())
    assert again.to_dict() == p.to_dict()
    assert again.sample_frame().shape == (min(len(df), 5), df.shape[1])
    report = validate(df, again)
    assert report.ok or len(df) == 0 and report.checks == ["no_rows"], str(report)
    flags, reasons = row_flags(df, again)
    assert not flags.any() and reasons == [[] for _ in range(len(df))]


def test_low_cardinality_numeric_columns_keep_exact_value_counts(nbprod_home):
    from nbprod.data.profile import LOW_CARDINALITY, QUANTILE_SAMPLE

    rng = np.random.default_rng(5)
    n = QUANTILE_SAMPLE + 50_000  # above it, candidates come from the sample and are confirmed on the column
    rare = rng.poisson(2.0, n)
    rare[[10, 20]] = 17  # a value the sample is likely to miss: still counted exactly
    df = pd.DataFrame({"small": rare, "floaty": rng.choice([0.5, 1.5, 2.5], n),
                       "many": np.arange(n) % (LOW_CARDINALITY + 1), "cont": rng.random(n),
                       "nullable": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 3, n)), dtype="Int64")})
    p = profile(df)
    small = p.columns["small"]
    values, counts = np.unique(rare, return_counts=True)
    by_count = sorted(zip(values, counts, strict=True), key=lambda vc: -vc[1])
    assert small.categories == {str(v): int(c) for v, c in by_count}
    assert small.other_count == 0 and small.distinct_count == len(values) and small.categories["17"] >= 2
    assert set(p.columns["floaty"].categories) == {"0.5", "1.5", "2.5"}
    assert sum(p.columns["nullable"].categories.values()) == p.columns["nullable"].count
    assert p.columns["many"].categories is None and p.columns["cont"].categories is None
    assert Profile.from_json(p.to_json()).to_dict() == p.to_dict()
    # a small frame (exact path), and an old profile without numeric categories still reads and validates
    q = profile(pd.DataFrame({"k": [1, 2, 2, 3]}))
    assert q.columns["k"].categories == {"2": 2, "1": 1, "3": 1}
    old = q.to_dict()
    old["columns"]["k"]["categories"] = None
    assert validate(pd.DataFrame({"k": [1, 3]}), Profile.from_dict(old)).ok
    assert not validate(pd.DataFrame({"k": [1, 9]}), q, tolerance=0).ok  # the range, not the categories, decides
    r = profile(pd.DataFrame({"k": [1, 5, 5]}))
    assert r.columns["k"].categories == {"5": 2, "1": 1} and validate(pd.DataFrame({"k": [3]}), r, tolerance=0).ok
    assert not row_flags(pd.DataFrame({"k": [3]}), r, tolerance=0)[0].any()


def test_infinities_are_counted_apart_and_keep_the_profile_finite_and_strict_json(nbprod_home):
    df = pd.DataFrame({"x": [1.0, np.inf, 3.0, np.nan, -np.inf, np.inf], "only_inf": [np.inf] * 6,
                       "F": pd.array([1.0, None, np.inf, 2.0, 2.0, 2.0], dtype="Float64")})
    p = profile(df, n_quantiles=4)
    x = p.columns["x"]
    assert (x.neg_inf_count, x.pos_inf_count, x.inf_count, x.null_count, x.count) == (1, 2, 3, 1, 5)
    assert (x.min, x.max, x.mean) == (1.0, 3.0, 2.0) and x.quantiles == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert p.columns["only_inf"].min is None and p.columns["only_inf"].pos_inf_count == 6
    assert p.columns["F"].max == 2.0 and p.columns["F"].pos_inf_count == 1
    text = p.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    again = Profile.from_json(text)
    assert again.to_dict() == p.to_dict()
    assert again.sample_frame()["x"].tolist()[:3] == [1.0, np.inf, 3.0]
    assert "inf" not in str(p).split("\n", 1)[0] and "<table>" in p._repr_html_() and "x" in str(p)
    assert validate(df, again).ok
    # an infinity the training data did not have (or of the other sign) is out of range, everywhere
    clean = profile(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    new = pd.DataFrame({"x": [2.0, np.inf, -np.inf]})
    report = validate(new, clean)
    assert report.checks == ["out_of_range"] and report.failures[0].count == 2
    assert report.to_dict()["failures"][0]["examples"][0]["x"] == "inf"
    json.dumps(report.to_dict(), allow_nan=False)
    flags, reasons = row_flags(new, clean)
    assert flags.tolist() == [False, True, True] and "above the seen max" in reasons[1][0]
    big = pd.concat([new] * 30, ignore_index=True)  # the vectorised path of the OOD checker
    assert row_flags(big, clean)[0].sum() == 60
    pos_only = profile(pd.DataFrame({"x": [1.0, 3.0, np.inf]}))
    assert row_flags(new, pos_only)[0].tolist() == [False, False, True]
    assert row_flags(big, pos_only)[0].sum() == 30
    assert [f.count for f in validate(new, pos_only).failures] == [1]


def test_profiles_without_inf_fields_still_load(nbprod_home):
    d = profile(pd.DataFrame({"x": [1.0, 2.0]})).to_dict()
    for col in d["columns"].values():
        del col["neg_inf_count"], col["pos_inf_count"]
    old = Profile.from_dict(d)
    assert old.columns["x"].inf_count == 0 and not validate(pd.DataFrame({"x": [np.inf]}), old).ok
