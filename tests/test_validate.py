"""Validation against a training profile: every check, lazily collected, and per-row OOD flags."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbprod.data.profile import Profile, profile
from nbprod.data.rules import Rules
from nbprod.data.validate import ValidationReport, row_flags, validate
from nbprod.errors import DataError, NbprodError, ProfileError, RuleError, ValidationError

PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3


@pytest.fixture(autouse=True)
def exact_range(nbprod_home):
    """These tests count values past the exact seen range; the default tolerance widens it 10 %."""
    from nbprod.config import settings

    settings.set(range_tolerance=0.0)
    yield
    settings.reset()


def train_frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "id": np.arange(n),
        "income": rng.uniform(0, 100, n),
        "age": rng.integers(18, 90, n),
        "country": pd.Categorical(rng.choice(["DE", "FR", "US"], n)),
        "city": pd.Series(rng.choice(["Berlin", "Paris", "NYC"], n)),  # pandas 3: "str" dtype
        "member": rng.random(n) < 0.5,
        "since": pd.date_range("2020-01-01", periods=n, freq="D"),
        "score": pd.Series(rng.random(n)).where(rng.random(n) > 0.2),  # nullable in training
    })


@pytest.fixture
def trained(nbprod_home):
    df = train_frame()
    return df, profile(df, key="id")


def spoiled(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with one failure of every kind a profile catches (but duplicate keys)."""
    bad = df.copy()
    bad.loc[[3, 5], "income"] = [-1.0, 1e6]
    bad.loc[7, "age"] = 200
    bad["country"] = bad["country"].cat.add_categories(["XX"])
    bad.loc[[1, 2, 4], "country"] = "XX"
    bad.loc[9, "city"] = "Tokyo"
    bad.loc[[10, 11], "income"] = np.nan
    bad.loc[14, "since"] = pd.Timestamp("2035-01-01")
    return bad.drop(columns=["member"]).assign(extra=1)


def test_clean_data_passes(trained):
    df, p = trained
    report = validate(df, p)
    assert report.ok and report.failures == [] and report.n_rows == len(df)
    assert report.raise_for_errors() is report
    assert "passed" in str(report) and "passed" in report._repr_html_()


def test_every_failure_is_collected_with_counts_and_examples(trained, nbprod_home):
    df, p = trained
    bad = spoiled(df)
    bad.loc[12, "id"] = 13
    report = validate(bad, p)
    assert not report.ok
    got = {(f.column, f.check): f.count for f in report.failures}
    assert got == {
        ("member", "missing_column"): len(df),
        ("extra", "extra_column"): len(df),
        ("income", "nulls"): 2,
        ("income", "out_of_range"): 2,
        ("age", "out_of_range"): 1,
        ("country", "unseen_category"): 3,
        ("city", "unseen_category"): 1,
        ("since", "out_of_range"): 1,
        ("id", "duplicate_key"): 2,
    }
    income = next(f for f in report.failures_for("income") if f.check == "out_of_range")
    assert [e["index"] for e in income.examples] == [3, 5]
    assert income.examples[0]["income"] == -1.0 and "1 below, 1 above" in income.message
    country = next(f for f in report.failures if f.check == "unseen_category" and f.column == "country")
    assert "'XX'" in country.message and len(country.examples) == 3
    for f in report.failures:  # examples of all failures are taken in one go: each still shows its own rows
        for e in f.examples:
            assert next(iter(e)) == "index" and list(e)[1] == f.column
            want = bad.loc[e["index"], f.column]
            assert e[f.column] == (None if pd.isna(want) else want.isoformat() if hasattr(want, "isoformat") else want)
    d = report.to_dict()
    json.dumps(d)  # JSON-safe, examples included
    assert d["ok"] is False and len(d["failures"]) == 9
    html = report._repr_html_()
    assert "FAILED" in html and "<table>" in html and "Tokyo" in html  # the message names the unseen value
    assert "9 failures" in str(report)
    with pytest.raises(ValidationError) as err:
        report.raise_for_errors()
    assert err.value.report is report and "err.report" in err.value.fix


def test_examples_are_bounded_by_settings(trained):
    from nbprod.config import settings

    df, p = trained
    bad = df.assign(income=-df.income - 1)
    settings.set(max_examples=2)
    report = validate(bad, p)
    assert report.failures[0].count == len(df) and len(report.failures[0].examples) == 2


def test_tolerance_widens_the_seen_range(trained):
    df, p = trained
    bad = df.copy()
    span = p.columns["income"].max - p.columns["income"].min
    bad.loc[0, "income"] = p.columns["income"].max + 0.04 * span
    assert not validate(bad, p).ok
    assert validate(bad, p, tolerance=0.05).ok
    from nbprod.config import settings

    settings.set(range_tolerance=0.05)
    assert validate(bad, p).ok
    with pytest.raises(DataError, match="negative"):
        validate(bad, p, tolerance=-1)


def test_dtype_compatibility(nbprod_home):
    p = profile(pd.DataFrame({"n": [1, 2, 3], "x": [1.0, 2.0, 3.0], "t": pd.date_range("2024", periods=3),
                              "c": ["a", "b", "a"]}))
    # ints arriving as integral floats (a CSV with NaN does that) and floats arriving as ints are fine
    ok = pd.DataFrame({"n": [1.0, 2.0, np.nan], "x": [1, 2, 3], "t": pd.date_range("2024", periods=3),
                       "c": pd.Categorical(["a", "b", "b"])})
    report = validate(ok, p)
    assert [f.check for f in report.failures] == ["nulls"]
    wrong = pd.DataFrame({"n": [1.5, 2.0, 3.0], "x": ["1", "2", "3"], "t": pd.date_range("2024", periods=3, tz="UTC"),
                          "c": ["a", "b", "a"]})
    report = validate(wrong, p)
    checks = {f.column: (f.check, f.count) for f in report.failures}
    assert checks == {"n": ("dtype", 1), "x": ("dtype", 3), "t": ("dtype", 3)}
    assert "training data had float64" in report.failures_for("x")[0].message


def test_against_a_path_a_dict_rules_and_a_model_uri(trained, tmp_path):
    df, p = trained
    path = p.save(tmp_path / "p.json")
    assert validate(df, str(path)).ok and validate(df, path).ok
    assert validate(df, p.to_dict()).ok
    assert not validate(df, {"income": {"max": 10}}).ok
    assert not validate(df, Rules({"income": {"max": 10}})).ok
    (tmp_path / "r.yaml").write_text("income: {max: 10}\n")
    assert not validate(df, str(tmp_path / "r.yaml")).ok
    report = validate(df, p, rules={"age": {"max": 20}})
    assert [f.column for f in report.failures] == ["age"]
    with pytest.raises(DataError, match="no profile file"):
        validate(df, str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="nothing to validate against"):
        validate(df)
    with pytest.raises(DataError, match="not a pandas DataFrame"):
        validate({"a": [1]}, p)
    with pytest.raises(DataError, match="cannot validate against"):
        validate(df, 42)
    newer = p.to_dict()
    newer["schema_version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(newer))
    with pytest.raises(ProfileError, match="newer"):
        validate(df, str(tmp_path / "new.json"))


@pytest.mark.slow
def test_a_model_uri_goes_to_the_registry(trained):
    import nbprod

    df, p = trained
    with pytest.raises(NbprodError, match="no-such-model"):  # the real (empty) registry of this test's home
        nbprod.validate(df, "no-such-model@champion")


def test_key_checks(trained):
    df, p = trained
    dup = pd.concat([df, df.iloc[:2]], ignore_index=True)
    report = validate(dup, p)
    assert [(f.check, f.count) for f in report.failures] == [("duplicate_key", 4)]
    assert validate(dup, p, key=["id", "income"]).failures[0].count == 4
    report = validate(df.drop(columns="id"), p)
    assert [f.check for f in report.failures] == ["missing_column"]


def test_empty_frames_single_rows_all_null_columns_unicode_names(nbprod_home):
    df = pd.DataFrame({"ä ö": [1.0, 2.0], "nul": [None, None], "s": pd.Series(["x", "y"], dtype="string")})
    p = profile(df)
    assert [(f.column, f.check, f.count) for f in validate(df.iloc[:0], p).failures] == [(None, "no_rows", 0)]
    assert validate(df.iloc[:1], p).ok
    report = validate(pd.DataFrame({"ä ö": [5.0], "nul": ["now set"], "s": pd.Series(["z"], dtype="string")}), p)
    assert {(f.column, f.check) for f in report.failures} == {("ä ö", "out_of_range"), ("s", "unseen_category")}


def test_boolean_and_nullable_dtypes(nbprod_home):
    df = pd.DataFrame({"b": pd.array([True, True, None], dtype="boolean"), "i": pd.array([1, None, 3], dtype="Int64"),
                       "f": pd.array([0.5, 0.25, None], dtype="Float64")})
    p = profile(df)
    assert validate(df, p).ok
    new = pd.DataFrame({"b": pd.array([False, None, True], dtype="boolean"), "i": pd.array([None, 9, 2], dtype="Int64"),
                        "f": pd.array([None, 0.75, 0.3], dtype="Float64")})
    report = validate(new, p)
    assert {(f.column, f.check, f.count) for f in report.failures} == {
        ("b", "unseen_category", 1), ("i", "out_of_range", 1), ("f", "out_of_range", 1)}


def test_row_flags_small_and_large_paths_agree(trained):
    df, p = trained
    bad = df.copy().iloc[:100].reset_index(drop=True)
    bad.loc[3, "income"] = 1e9
    bad.loc[4, "city"] = "Tokyo"
    bad.loc[5, "since"] = pd.Timestamp("1999-01-01")
    bad.loc[6, "score"] = np.nan  # missing values are not out of distribution
    flags, reasons = row_flags(bad, p)
    assert flags.dtype == bool and list(np.flatnonzero(flags)) == [3, 4, 5]
    assert reasons[3] == [f"income=1000000000.0 above the seen max {p.columns['income'].max}"]
    assert "Tokyo" in reasons[4][0] and reasons[0] == []
    for i in (3, 4, 5, 0):
        one, why = row_flags(bad.iloc[[i]], p)
        assert bool(one[0]) == bool(flags[i]) and len(why[0]) == len(reasons[i])
    # a JSON request: numbers as text, categories as plain strings
    request = pd.DataFrame([{"income": "5", "city": "Paris", "country": "DE", "age": 30}])
    flags, reasons = row_flags(request, p)
    assert not flags[0]
    with pytest.raises(DataError):
        row_flags(df, p.to_dict())


def test_report_is_a_plain_object(trained):
    df, p = trained
    report = validate(df, p)
    assert isinstance(report, ValidationReport) and report.checks == []
    assert isinstance(Profile.from_json(p.to_json()), Profile)


# --- fast paths: block min/max, Arrow strings, columns on threads -------------------------------------
def test_minmax_matches_numpy_on_every_dtype_and_nan_pattern(monkeypatch):
    from nbprod.data import _checks as K

    monkeypatch.setattr(K, "_BLOCK", 7)  # many blocks on a small array
    rng = np.random.default_rng(1)
    for values in (rng.normal(size=100), rng.integers(-5, 5, 101), rng.random(50) < 0.5,
                   rng.normal(size=64).astype("float32"), np.arange(15, dtype="uint8")):
        assert K.minmax(values) == (values.min(), values.max())
    f = rng.normal(size=100)
    f[[3, 90]] = np.nan
    lo, hi = K.minmax(f)
    assert np.isnan(lo) and np.isnan(hi)
    assert K.minmax(f, skipna=True) == (np.nanmin(f), np.nanmax(f))
    assert all(np.isnan(K.minmax(np.full(30, np.nan), skipna=True)))


def test_reduce_mask_keeps_the_count_and_the_first_positions():
    from nbprod.data import _checks as K

    mask = np.zeros(300_000, dtype=bool)
    mask[[5, 70_000, 150_000, 299_999]] = True
    found = K.reduce_mask(mask, 3)
    assert found.count == 4 and found.positions.tolist() == [5, 70_000, 150_000]
    assert K.reduce_mask(mask, 10).positions.tolist() == [5, 70_000, 150_000, 299_999]
    assert K.reduce_mask(np.zeros(10, dtype=bool)) is None and K.reduce_mask(None) is None


def _as_object(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(city=df["city"].astype(object))


@pytest.mark.parametrize("dtype", [
    pytest.param("str", marks=pytest.mark.skipif(not PANDAS_3, reason="pandas 2's astype(str) writes None as 'None'")),
    "string[pyarrow]", "string[python]", "object"])
def test_string_columns_give_the_same_report_whatever_their_storage(trained, dtype):
    from nbprod.data import _checks as K

    df, p = trained
    bad = df.copy()
    bad["city"] = bad["city"].astype(object)
    bad.loc[[4, 9, 30], "city"] = ["Tokyo", "Rome", "Tokyo"]
    bad.loc[[5, 6], "city"] = None
    expected = validate(bad, p).to_dict()  # object column: pandas isin
    typed = bad.assign(city=bad["city"].astype(dtype))
    assert (K.arrow_strings(typed["city"]) is not None) == (dtype in ("str", "string[pyarrow]"))
    got = validate(typed, p).to_dict()
    assert got == expected
    checks = {(f["column"], f["check"]): f for f in got["failures"]}
    unseen = checks[("city", "unseen_category")]
    assert unseen["count"] == 3 and "'Tokyo', 'Rome'" in unseen["message"]
    assert checks[("city", "nulls")]["count"] == 2


def test_arrow_string_rules_and_clean_columns(trained):
    from nbprod.data import _checks as K

    df, p = trained
    if not PANDAS_3:  # pandas 3 stores text in Arrow by default; pandas 2 only when asked
        df = df.assign(city=df["city"].astype("string[pyarrow]"))
    assert K.arrow_strings(df["city"]) is not None
    assert validate(df, p).ok
    report = validate(df, rules={"city": {"in": ["Berlin", "Paris"], "nullable": False}})
    (failure,) = report.failures
    assert failure.check == "unseen_category" and failure.count == int((df["city"] == "NYC").sum())
    assert failure.examples[0]["city"] == "NYC"


def test_columns_checked_on_threads_give_the_serial_report(trained, monkeypatch):
    import nbprod.data.validate as V

    df, p = trained
    bad = spoiled(df)
    bad.loc[15, "since"] = pd.NaT
    serial = validate(bad, p).to_dict()
    assert len(serial["failures"]) >= 7
    for workers in (2, 3, 16):
        monkeypatch.setattr(V, "_workers", lambda n_rows, n_columns, w=workers: w)
        assert validate(bad, p).to_dict() == serial
    monkeypatch.undo()
    assert V._workers(10, 25) == 1 and V._workers(V.PARALLEL_MIN_ROWS, 1) == 1


def test_only_work_that_releases_the_gil_goes_to_threads():
    import nbprod.data.validate as V

    n = 20_000
    shared = pd.Series(np.array(["DE", "FR"] * (n // 2), dtype=object))  # a few objects, as read_csv gives
    distinct = pd.Series([f"c{i % 3}" for i in range(n)], dtype=object)  # one object per row
    assert V._pass_cost(pd.Series(np.zeros(n))) == V._NUMBER_COST
    assert V._pass_cost(shared.astype("string[pyarrow]")) == V._pass_cost(shared) == V._STRING_COST
    assert V._pass_cost(distinct) == V._pass_cost(distinct.astype("category")) == 0  # GIL held / too cheap


def test_numeric_reads_on_threads_give_the_serial_report_in_every_nan_mode(nbprod_home, monkeypatch):
    import nbprod.data.validate as V

    rng = np.random.default_rng(2)
    n = 500
    train = pd.DataFrame({"f": rng.normal(size=n), "g": pd.Series(rng.normal(size=n)).where(rng.random(n) > 0.3),
                          "i": rng.integers(0, 10, n), "u": rng.integers(0, 10, n).astype("uint8"),
                          "x": rng.normal(size=n), "ok": rng.normal(size=n)})
    p = profile(train)
    bad = train.copy()
    bad.loc[[1, 2], "f"] = np.nan  # NaN where training had none: read NaN-propagating
    bad.loc[3, "g"] = 99.0  # out of range where training had nulls: read NaN-skipping
    bad.loc[4, "i"] = -1
    bad["u"] = bad["u"].astype("float64")
    bad.loc[5, "u"] = 0.5  # a float where uint8 was seen
    bad["x"] = np.nan  # all missing
    serial = validate(bad, p).to_dict()
    assert {(f["column"], f["check"]) for f in serial["failures"]} == {
        ("f", "nulls"), ("g", "out_of_range"), ("i", "out_of_range"), ("u", "dtype"), ("x", "nulls")}
    reads = []
    monkeypatch.setattr(V, "_workers", lambda n_rows, n_columns: 2)
    monkeypatch.setattr(V, "_numeric_read",
                        lambda series, col, read=V._numeric_read: reads.append(col) or read(series, col))
    assert validate(bad, p).to_dict() == serial
    assert len(reads) == 6  # every column was read on the threads, then checked on the caller


def test_datetime_ranges_with_and_without_missing_times(trained):
    df, p = trained
    early = df.copy()
    early.loc[2, "since"] = pd.Timestamp("2019-01-01")
    assert [(f.check, f.count) for f in validate(early, p).failures] == [("out_of_range", 1)]
    early.loc[3, "since"] = pd.NaT
    got = {(f.check, f.count) for f in validate(early, p).failures}
    assert got == {("out_of_range", 1), ("nulls", 1)}
    assert validate(df.assign(since=df["since"].astype("datetime64[us]")), p).ok


def _object_columns(n: int) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """(training, current) object columns: few shared string objects (as read_csv gives them),
    one string object per row (as astype(str) gives them), mixed scalars, and unhashable lists."""
    rng = np.random.default_rng(3)

    def frame(values) -> pd.DataFrame:  # pandas 3 would infer its Arrow "str" dtype for strings
        return pd.DataFrame({"c": pd.Series(values, dtype=object)})

    levels = np.array(["DE", "FR", "US", "NL"], dtype=object)
    shared = levels[rng.integers(0, 4, n)]  # 4 string objects, each repeated
    unseen, missing = rng.random(n) < 0.01, rng.random(n) < 0.01
    bad_shared = np.where(unseen, "XX", shared).astype(object)
    bad_shared[missing] = None
    distinct = np.array(["".join(v) for v in shared], dtype=object)  # one string object per row
    bad_distinct = np.array(["".join(v) for v in bad_shared.astype(str)], dtype=object)
    bad_distinct[unseen] = ["X" + "X" for _ in range(unseen.sum())]
    bad_distinct[missing] = np.nan
    mixed = np.array([1, "1", 2.0, True, "x"], dtype=object)[rng.integers(0, 5, n)]
    bad_mixed = mixed.copy()
    bad_mixed[::97] = "new"
    listed = mixed.copy()
    listed[0], listed[7] = [1], {"k": 2}
    return {"shared": (frame(shared), frame(bad_shared)), "distinct": (frame(distinct), frame(bad_distinct)),
            "mixed": (frame(mixed), frame(bad_mixed)), "unhashable": (frame(mixed), frame(listed))}


@pytest.mark.parametrize("n", [300, 30_000])  # below and above SHARED_MIN_ROWS
@pytest.mark.parametrize("case", ["shared", "distinct", "mixed", "unhashable"])
def test_object_columns_checked_in_one_pass_give_the_generic_report(nbprod_home, monkeypatch, case, n):
    """Object columns are checked by one pass over their distinct values (or object addresses);
    the report must be exactly what the separate null and category checks give."""
    import nbprod.data.validate as V
    from nbprod.data import _checks as K

    train, current = _object_columns(n)[case]
    assert current["c"].dtype == object
    p = profile(train)
    one_pass = validate(current, p).to_dict()
    shared_path = []
    monkeypatch.setattr(K, "_object_at", lambda a, f=K._object_at: shared_path.append(a) or f(a))
    assert validate(current, p).to_dict() == one_pass
    assert bool(shared_path) == (n >= K.SHARED_MIN_ROWS and case in ("shared", "mixed", "unhashable"))
    monkeypatch.setattr(V, "is_object_dtype", lambda dtype: False)  # the generic checks
    assert one_pass == validate(current, p).to_dict()
    checks = {f["check"]: f for f in one_pass["failures"]}
    if case in ("shared", "distinct"):
        assert set(checks) == {"nulls", "unseen_category"}
        assert checks["nulls"]["count"] == int(current["c"].isna().sum())
        assert checks["unseen_category"]["count"] == int((current["c"] == "XX").sum()) > 0
        assert checks["unseen_category"]["message"].endswith("e.g. 'XX'")  # each unseen text named once
    elif case == "mixed":
        assert checks["unseen_category"]["count"] == int((current["c"] == "new").sum())
    else:
        assert checks["unseen_category"]["count"] == 2 and checks["unseen_category"]["examples"][0]["index"] == 0


def test_unique_rules_and_keys_on_unhashable_values_compare_their_text(nbprod_home):
    m = pd.DataFrame({"m": pd.Series([1, [1], {"k": 1}, "a", [1]], dtype=object), "n": [1, 2, 3, 4, 2]})
    for report in (validate(m, {"m": {"unique": True}}), validate(m, profile(m, key="m")),
                   validate(m, profile(m), key=["m", "n"])):
        assert report.checks == ["duplicate_key"] and report.failures[0].count == 2
        assert [e["index"] for e in report.failures[0].examples] == [1, 4]
    assert validate(m.iloc[:4], {"m": {"unique": True}}).ok


def test_a_bare_name_that_is_no_file_creates_no_store_and_rules_words_are_not_yaml(trained, nbprod_home):
    import nbprod
    from nbprod.errors import ModelNotFoundError, RuleError

    df, p = trained
    with pytest.raises(ModelNotFoundError, match="no profile file and no registered model called 'typo'"):
        nbprod.validate(df, "typo")
    with pytest.raises(ModelNotFoundError, match="'typo'"):  # nbprod.data alone reads no registry
        validate(df, "typo")
    assert not (nbprod_home / "mlflow.db").exists()
    with pytest.raises(RuleError, match="no rules file called 'name'"):
        validate(df, p, rules="name")
    for empty in ("", "{}"):  # YAML, not a file name: rules that hold no rule
        with pytest.raises(RuleError, match="hold no rules"):
            validate(df, p, rules=empty)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DataError, match="not a finite number"):
            validate(df, p, tolerance=bad)


def test_all_null_object_columns_report_nulls_not_a_dtype(nbprod_home):
    p = profile(pd.DataFrame({"x": [1.0, 2.0], "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                              "maybe": [np.nan, 1.0]}))
    empty = pd.DataFrame({"x": pd.Series([], dtype=object), "when": pd.Series([], dtype=object),
                          "maybe": pd.Series([], dtype=object)})
    assert validate(empty, p).checks == ["no_rows"]  # a header-only CSV: no rows, and no dtype failure
    nones = pd.DataFrame({"x": [None, None, None], "when": [None] * 3, "maybe": [None] * 3}, dtype=object)
    report = validate(nones, p)
    assert [(f.column, f.check, f.count) for f in report.failures] == [("x", "nulls", 3), ("when", "nulls", 3)]
    assert not validate(pd.DataFrame({"x": ["a", None], "when": [None, None], "maybe": [1.0, 2.0]}), p).ok


def test_parse_profiled_dates_only_when_every_value_is_a_time(nbprod_home):
    from nbprod.data.validate import parse_profiled_dates

    df = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                       "tz": pd.to_datetime(["2024-01-01T10:00", "2024-01-02T10:00"]).tz_localize("Europe/Berlin"),
                       "s": ["2024-01-01", "b"]})
    p = profile(df)
    text = pd.DataFrame({"when": ["2024-01-01", None], "tz": ["2024-01-01T10:00:00+01:00", "2024-01-01T09:00:00Z"],
                         "s": ["2024-01-01", "x"]}, dtype=object)
    parsed = parse_profiled_dates(text, p)
    assert str(parsed["when"].dtype) == p.columns["when"].dtype and parsed["when"].isna().tolist() == [False, True]
    assert str(parsed["tz"].dt.tz) == "Europe/Berlin" and parsed["s"].dtype == object
    assert [(f.column, f.check) for f in validate(parsed, p).failures] == [("when", "nulls"), ("s", "unseen_category")]
    half = text.assign(when=["2024-01-01", "soon"])
    assert parse_profiled_dates(half, p)["when"].tolist() == ["2024-01-01", "soon"]
    assert validate(half, p).checks[0] == "dtype"


def test_data_without_rows_fails_against_a_profile_rules_or_both(trained):
    df, p = trained
    empty = df.iloc[:0]
    for report in (validate(empty, p), validate(empty, Rules({"income": {"min": 0}})),
                   validate(empty, p, rules={"income": {"min": 0}}), validate(empty.drop(columns="age"), p)):
        assert not report.ok and report.failures[0].check == "no_rows" and report.failures[0].column is None
        assert report.failures[0].count == 0 and "0 rows" in report.failures[0].message
        assert "the data has no rows" in str(report)
    assert [f.check for f in validate(empty.drop(columns="age"), p).failures] == ["no_rows", "missing_column"]
    with pytest.raises(ValidationError, match="no rows"):
        validate(empty, p).raise_for_errors()
    assert validate(df.iloc[:1], p).ok


@pytest.mark.parametrize("rules", [Rules(), {}, "# only a comment\n", Rules.from_yaml("# nothing\n")])
def test_rules_that_hold_no_rule_are_an_error_not_a_pass(trained, rules):
    df, p = trained
    with pytest.raises(RuleError, match="hold no rules") as err:
        validate(df, rules=rules)
    assert "rules.add" in err.value.fix
    with pytest.raises(RuleError, match="hold no rules"):
        validate(df, p, rules=rules)
    if not isinstance(rules, str):
        with pytest.raises(RuleError, match="hold no rules"):
            validate(df, rules)


def _with_nulls(n: int, share: float, seed: int = 0) -> pd.DataFrame:
    """``n`` rows whose income (float), city (text) and country (category) miss ``share`` of their values."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"income": rng.uniform(0, 100, n), "city": pd.Series(rng.choice(["Berlin", "Paris"], n)),
                       "country": pd.Categorical(rng.choice(["DE", "FR"], n)), "id": np.arange(n)})
    gone = rng.permutation(n)[: int(round(share * n))]
    df.loc[gone, ["income", "city", "country"]] = np.nan
    return df


def test_a_column_going_mostly_or_fully_null_fails_against_its_training_share(nbprod_home):
    p = profile(_with_nulls(1000, 0.008))  # 0.8 % missing in training
    assert p.columns["income"].null_rate == 0.008 and not p.columns["income"].never_null
    for share in (0.6, 1.0):
        report = validate(_with_nulls(200, share, seed=1), p)
        assert [(f.column, f.check, f.count) for f in report.failures] == [
            (c, "nulls", int(share * 200)) for c in ("income", "city", "country")]
        message = report.failures[0].message
        assert f"({share:.2%})" in message and "the training data had 0.80%" in message and "null_tolerance" in message
        assert len(report.failures[0].examples) == 5 and all(pd.isna(e["income"]) for e in report.failures[0].examples)

    def nulls(n: int, share: float) -> list[str]:  # the columns failing "nulls" (the range is not at issue here)
        return [f.column for f in validate(_with_nulls(n, share, seed=2), p).failures if f.check == "nulls"]

    assert nulls(200, 0.015) == []  # noise: 3 of 200 where 1.6 were expected
    assert nulls(1_000, 0.05) == []  # within the 5-point default tolerance
    assert nulls(5, 0.2) == []  # one missing of five: chance, at 0.8 %
    assert nulls(10, 0.3) == ["income", "city", "country"]  # three of ten: not chance
    assert nulls(2, 1.0) == ["income", "city", "country"]


def test_null_tolerance_is_an_argument_and_an_option(nbprod_home):
    from nbprod.config import settings

    p = profile(_with_nulls(1000, 0.1))
    twice = _with_nulls(1000, 0.2, seed=1)
    assert validate(twice, p).checks == ["nulls"]
    assert validate(twice, p, null_tolerance=0.15).ok
    settings.set(null_tolerance=0.15)
    assert validate(twice, p).ok
    assert validate(twice, p, null_tolerance=0).checks == ["nulls"]
    settings.reset()
    for bad in (-0.1, 1.5, float("nan"), "lots"):
        with pytest.raises(DataError, match="null_tolerance"):
            validate(twice, p, null_tolerance=bad)


def test_the_null_share_check_keeps_the_never_null_check_and_skips_columns_never_seen(nbprod_home):
    p = profile(pd.DataFrame({"always": [1.0, 2.0, 3.0, 4.0], "never": [np.nan] * 4}))
    report = validate(pd.DataFrame({"always": [1.0, np.nan, 3.0, 4.0], "never": [np.nan] * 4}), p)
    assert [(f.column, f.check, f.count) for f in report.failures] == [("always", "nulls", 1)]
    assert report.failures[0].message.endswith("the training data had none")
