"""Hand-written rules: YAML and Python, every key, custom checks, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbprod.data.rules import Rules
from nbprod.data.validate import validate
from nbprod.errors import NbprodError, RuleError


@pytest.fixture
def df(nbprod_home):
    return pd.DataFrame({
        "income": [10.0, -1.0, np.nan, 50.0],
        "country": ["DE", "NO", "FR", "XX"],
        "id": [1, 2, 2, 3],
        "age": pd.array([20, 30, None, 15], dtype="Int64"),
        "when": pd.to_datetime(["2024-01-01", "2024-06-01", "2025-01-01", None]),
        "flag": [True, False, True, True],
    })


def test_yaml_rules_cover_every_key(df):
    rules = Rules.from_yaml("""
income: {dtype: float, min: 0, max: 40, nullable: false}
country: {in: [DE, FR, NO]}   # NO stays the string "NO"
id: {unique: true, dtype: int}
age: {min: 18, dtype: Int64}
when: {max: 2024-12-31, dtype: datetime}
flag: {in: [true]}
""")
    assert rules.columns["country"]["in"] == ["DE", "FR", "NO"]
    report = validate(df, rules)
    got = {(f.column, f.check): f.count for f in report.failures}
    assert got == {("income", "nulls"): 1, ("income", "out_of_range"): 2, ("country", "unseen_category"): 1,
                   ("id", "duplicate_key"): 2, ("age", "out_of_range"): 1, ("when", "out_of_range"): 1,
                   ("flag", "unseen_category"): 1}
    assert "'XX'" in report.failures_for("country")[0].message


def test_dtype_rules(df):
    report = validate(df, {"income": {"dtype": "numeric"}, "age": {"dtype": "int"}, "flag": {"dtype": "bool"},
                           "country": {"dtype": "string"}, "when": {"dtype": "datetime"},
                           "id": {"dtype": "int64"}})
    assert report.ok, str(report)
    report = validate(df, {"income": {"dtype": "int"}, "country": {"dtype": "category"}})
    assert [(f.column, f.check) for f in report.failures] == [("income", "dtype"), ("country", "dtype")]


def test_custom_rules(df):
    rules = Rules({"income": {"min": -5}}).add("adult", lambda d: d["age"] >= 18, column="age")
    rules.add("ordered", lambda d: np.ones(len(d), dtype=bool))
    report = validate(df, rules)
    assert [(f.column, f.check, f.count) for f in report.failures] == [("age", "rule:adult", 2)]  # 15 and <NA>
    assert report.failures[0].examples[0]["index"] == 2
    with pytest.raises(RuleError, match="raised KeyError"):
        validate(df, Rules().add("oops", lambda d: d["nope"] > 0))
    with pytest.raises(RuleError, match="shape"):
        validate(df, Rules().add("short", lambda d: [True]))
    with pytest.raises(RuleError, match="not booleans|booleans"):
        validate(df, Rules().add("ints", lambda d: d["id"]))
    with pytest.raises(RuleError, match="not callable"):
        Rules().add("x", 3)


def test_bad_rules_are_rule_errors_with_a_fix(df):
    with pytest.raises(RuleError, match="not valid YAML at line 1") as err:
        Rules.from_yaml("income: {min: 0")
    assert err.value.fix
    with pytest.raises(RuleError, match="unknown rule key.*'minimum'") as err:
        Rules.from_yaml("income: {minimum: 0}")
    assert "did you mean 'min'" in err.value.fix
    with pytest.raises(RuleError, match="mapping"):
        Rules.from_yaml("- income\n- age")
    with pytest.raises(RuleError, match="must be a mapping"):
        Rules.from_yaml("income: 3")
    with pytest.raises(RuleError, match="not a number or a date"):
        Rules({"income": {"min": [1]}})
    with pytest.raises(RuleError, match="above max"):
        Rules({"income": {"min": 5, "max": 1}})
    with pytest.raises(RuleError, match="true or false"):
        Rules({"income": {"nullable": "no"}})
    with pytest.raises(RuleError, match="list of allowed"):
        Rules({"country": {"in": "DE"}})
    with pytest.raises(RuleError, match="dtype 'decimalish'"):
        Rules({"income": {"dtype": "decimalish"}})
    with pytest.raises(RuleError, match="which the data does not have") as err:
        validate(df, {"incme": {"min": 0}})
    assert "did you mean 'income'" in err.value.fix
    with pytest.raises(RuleError, match="min/max need a numeric"):
        validate(df, {"country": {"min": 0}})
    assert isinstance(RuleError("x"), NbprodError)


def test_round_trip_and_display(df):
    text = "income: {min: 0, nullable: false}\ncountry: {in: [DE, FR, US]}\n"
    rules = Rules.from_yaml(text)
    assert Rules.from_yaml(rules.to_yaml()).to_dict() == rules.to_dict()
    assert "income" in str(rules) and "<table>" in rules._repr_html_()
    assert Rules.from_yaml("").columns == {} and Rules.from_yaml("a:").columns == {"a": {}}


def test_rules_on_top_of_a_profile_skip_missing_profiled_columns(df):
    from nbprod.data.profile import profile

    p = profile(df)
    report = validate(df.drop(columns="income"), p, rules={"income": {"min": 0}})
    assert [(f.column, f.check) for f in report.failures] == [("income", "missing_column")]


@pytest.mark.parametrize("text, problem", [
    ("when: {max: 2024-02-30}", r"at line 1, column 13: '2024-02-30' is not a valid timestamp"),
    ("income:\n  min: !!float abc", r"at line 2, column 8: 'abc' is not a valid float"),
    ("income: {min: !!timestamp xx}", r"'xx' is not a valid timestamp"),
    ("income: {min: !!int 1.5}", r"'1.5' is not a valid int"),
])
def test_yaml_values_its_tags_cannot_build_are_rule_errors_at_their_line(text, problem):
    with pytest.raises(RuleError, match=problem) as err:
        Rules.from_yaml(text)
    assert "quote it" in err.value.fix


def test_yaml_rules_read_scientific_notation_as_numbers_and_refuse_duplicate_keys(df):
    rules = Rules.from_yaml("income: {max: 1e6, min: -2.5E-3}\nid: {in: [1e0, 2, 3]}\ncountry: {in: [NO, 1_0, 1.2.3]}")
    assert rules.columns["income"] == {"max": 1e6, "min": -0.0025}
    assert rules.columns["country"]["in"] == ["NO", 10, "1.2.3"] and rules.columns["id"]["in"] == [1.0, 2, 3]
    assert validate(df, rules).checks == ["out_of_range", "unseen_category"]
    with pytest.raises(RuleError, match=r"at line 2, column 1: 'income' is given twice") as err:
        Rules.from_yaml("income: {min: 0}\nincome: {max: 1}")
    assert "merge" in err.value.fix
    with pytest.raises(RuleError, match="'min' is given twice"):
        Rules.from_yaml("income: {min: 0, min: 1}")
    base = "base: &b {min: 0}\nincome:\n  <<: *b\n  min: 1\n"  # a merge key overridden on purpose is fine
    assert Rules.from_yaml(base).columns["income"] == {"min": 1}


def test_datetime_bounds_must_be_dates_in_order_and_no_bound_is_nan(df):
    with pytest.raises(RuleError, match="'when' holds datetimes, but its min 5 is a number") as err:
        validate(df, {"when": {"min": 5}})
    assert "ISO date" in err.value.fix
    with pytest.raises(RuleError, match="min 2024-06-01 is after max 2024-01-01"):
        Rules.from_yaml("when: {min: 2024-06-01, max: 2024-01-01}")
    with pytest.raises(RuleError, match="after max"):
        Rules({"when": {"min": "2024-01-02T00:00:00+01:00", "max": "2024-01-01T22:00:00Z"}})
    for text in ("income: {min: .nan}", "income: {max: .NaN, min: 0}"):
        with pytest.raises(RuleError, match="is NaN"):
            Rules.from_yaml(text)
    assert validate(df, {"when": {"min": "2024-01-01", "max": "2025-01-01"}}).ok
    assert not validate(df, Rules.from_yaml("when: {max: 2024-12-31}")).ok


@pytest.mark.parametrize("text", ["", "\n", "# income: {min: 0}\n", "---\n"])
def test_a_rules_file_without_rules_is_an_error_naming_the_file(df, tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RuleError, match="rules.yaml holds no rules") as err:
        Rules.load(path)
    assert "income: {min: 0" in err.value.fix
    with pytest.raises(RuleError, match="holds no rules"):
        validate(df, str(path))
    with pytest.raises(RuleError, match="holds no rules"):
        validate(df, rules=path)


def test_rules_on_data_without_rows_report_no_rows_not_a_dtype(df):
    header_only = pd.DataFrame({c: pd.Series([], dtype=object) for c in df.columns})  # as read from a CSV
    rules = Rules.from_yaml("income: {min: 0, dtype: float, nullable: false}\nid: {unique: true}\n")
    assert validate(header_only, rules).checks == ["no_rows"]
    assert validate(df.iloc[:0], rules).checks == ["no_rows"]


def test_date_rules_read_a_text_column_as_iso_times_and_report_the_values_that_are_none(nbprod_home):
    text = pd.DataFrame({"ts": ["2024-01-01", "soon", "2023-06-01", None, "2024-03-01T10:00:00+01:00"]},
                        dtype=object)
    report = validate(text, Rules.from_yaml("ts: {min: 2024-01-01}"))
    assert [(f.check, f.count) for f in report.failures] == [("dtype", 1), ("out_of_range", 1)]
    assert "'soon'" in report.failures[0].message and report.failures[0].examples[0]["ts"] == "soon"
    assert report.failures[1].examples[0]["ts"] == "2023-06-01"
    clean = text.drop(index=1)
    assert validate(clean, Rules.from_yaml("ts: {min: 2023-01-01, max: 2024-12-31}")).ok
    with pytest.raises(RuleError, match="min/max need a numeric or datetime column"):  # numbers stay an error
        validate(clean, Rules.from_yaml("ts: {min: 0}"))
    only = validate(text, Rules.from_yaml("ts: {dtype: datetime, min: 2024-01-01}"))
    assert [(f.check, f.count) for f in only.failures] == [("dtype", 1), ("out_of_range", 1)]  # 'soon' once
    in_memory = validate(clean, Rules.from_yaml("ts: {dtype: datetime}"))  # a frame's dtype is its dtype
    assert in_memory.checks == ["dtype"] and "pd.to_datetime" in in_memory.failures[0].message


def test_parse_rule_dates_parses_only_the_rules_date_columns_when_every_value_is_a_time(nbprod_home):
    from nbprod.data.rules import parse_rule_dates

    df = pd.DataFrame({"a": ["2024-01-01", None], "b": ["2024-01-01T10:00:00+01:00", "2024-01-01T09:00:00Z"],
                       "c": ["2024-01-01", "x"], "d": ["2024-01-01", "2024-01-02"], "n": [1, 2]})
    rules = Rules.from_yaml("a: {dtype: datetime}\nb: {max: 2025-01-01}\nc: {min: 2024-01-01}\nn: {min: 0}\n")
    assert rules.date_columns() == ["a", "b", "c"]
    parsed = parse_rule_dates(df, rules)
    assert str(parsed["a"].dtype).startswith("datetime64") and parsed["a"].isna().tolist() == [False, True]
    assert str(parsed["b"].dt.tz) == "UTC" and parsed["b"].nunique() == 1  # the same instant
    assert parsed["c"].tolist() == ["2024-01-01", "x"] and parsed["d"].tolist() == ["2024-01-01", "2024-01-02"]
    assert validate(parsed, rules).checks == ["dtype"]  # c's "x", not a crash
    assert parse_rule_dates(df, Rules.from_yaml("n: {min: 0}")) is df
