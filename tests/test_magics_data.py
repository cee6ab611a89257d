"""The data verbs from a real IPython shell (%nbprod / %%nbprod) and from the nbprod CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbprod.cli import main
from nbprod.data.profile import Profile
from nbprod.data.validate import ValidationReport


@pytest.fixture
def ip(nbprod_home):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    shell.user_ns["df"] = pd.DataFrame({"income": [10.0, 20.0, 30.0], "country": ["DE", "FR", "US"], "id": [1, 2, 3]})
    shell.user_ns["bad"] = pd.DataFrame({"income": [-1.0, 20.0, None], "country": ["DE", "XX", "US"], "id": [1, 1, 3]})
    yield shell
    shell.run_line_magic("unload_ext", "nbprod")
    for name in ("df", "bad", "prof", "report", "r"):
        shell.user_ns.pop(name, None)


def test_validate_without_against_profiles_the_frame(ip):
    result = ip.run_line_magic("nbprod", "validate df")
    assert isinstance(result, Profile) and result.n_rows == 3
    assert isinstance(ip.run_line_magic("nbprod", "profile df --key id"), Profile)


def test_validate_against_a_profile_variable_and_a_path(ip, tmp_path):
    ip.run_cell("prof = %nbprod profile df --key id")
    prof = ip.user_ns["prof"]
    assert isinstance(prof, Profile) and prof.key == ["id"]
    ok = ip.run_line_magic("nbprod", "validate df --against prof")
    assert isinstance(ok, ValidationReport) and ok.ok
    report = ip.run_line_magic("nbprod", "validate bad --against prof")
    assert {f.check for f in report.failures} == {"nulls", "out_of_range", "unseen_category", "duplicate_key"}
    path = tmp_path / "p.json"
    ip.run_line_magic("nbprod", f"profile df -o {path}")
    assert json.loads(path.read_text())["n_rows"] == 3
    assert ip.run_line_magic("nbprod", f"validate df --against {path} --tolerance 0.1").ok
    ip.user_ns["r"] = {"income": {"max": 15}}
    report = ip.run_line_magic("nbprod", f"validate df --against {path} --key country income --rules r")
    assert [(f.column, f.check) for f in report.failures] == [("income", "out_of_range")]


def test_expect_cell_magic_validates_against_yaml(ip):
    rules = "income: {min: 0, nullable: false}\ncountry: {in: [DE, FR, US]}\n"
    report = ip.run_cell_magic("nbprod", "expect bad", rules)
    assert isinstance(report, ValidationReport)
    assert [(f.column, f.check) for f in report.failures] == [
        ("income", "nulls"), ("income", "out_of_range"), ("country", "unseen_category")]
    assert ip.run_cell_magic("nbprod", "expect df --key id", "income: {min: 0}\n").ok
    result = ip.run_cell("%%nbprod expect df\nincome: {max: 5}\n")
    assert result.success and result.result.ok is False


def test_help_and_usage_errors(ip, capsys):
    ip.run_line_magic("nbprod", "validate --help")
    out = capsys.readouterr().out
    assert "usage: %nbprod validate" in out and "--against" in out and "--tolerance" in out
    ip.run_line_magic("nbprod", "expect --help")
    assert "%%nbprod expect" in capsys.readouterr().out
    with pytest.raises(UsageError, match="unrecognized arguments: --frob"):
        ip.run_line_magic("nbprod", "validate df --frob")
    with pytest.raises(UsageError, match="invalid float value"):
        ip.run_line_magic("nbprod", "validate df --against x --tolerance lots")
    with pytest.raises(UsageError, match="takes no cell body"):
        ip.run_cell_magic("nbprod", "validate df", "income: {min: 0}")
    with pytest.raises(UsageError, match="no rules given"):
        ip.run_line_magic("nbprod", "expect df")


def test_bad_input_is_a_clear_nbprod_error(ip):
    from nbprod.errors import DataError, RuleError

    with pytest.raises(DataError, match="no variable and no file called 'nope'"):
        ip.run_line_magic("nbprod", "validate nope")
    ip.user_ns["r"] = [1, 2]
    with pytest.raises(DataError, match="not a pandas DataFrame"):
        ip.run_line_magic("nbprod", "profile r")
    with pytest.raises(RuleError, match="not valid YAML"):
        ip.run_cell_magic("nbprod", "expect df", "income: {min: 0")
    with pytest.raises(RuleError, match="'incme'"):
        ip.run_cell_magic("nbprod", "expect df", "incme: {min: 0}")


# --- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path, nbprod_home):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=50), "c": rng.choice(["a", "b"], 50), "id": np.arange(50)})
    train.to_parquet(tmp_path / "train.parquet")
    train.to_csv(tmp_path / "train.csv", index=False)
    bad = train.assign(x=train.x * 100)
    bad.to_parquet(tmp_path / "bad.parquet")
    (tmp_path / "rules.yaml").write_text("x: {min: -10, max: 10}\nc: {in: [a, b]}\n")
    return tmp_path


def test_cli_profile_validate_expect_exit_codes(files, capsys):
    d = files
    assert main(["profile", str(d / "train.parquet"), "-o", str(d / "p.json"), "--key", "id"]) == 0
    assert "Profile of 50 rows" in capsys.readouterr().out
    assert Profile.load(d / "p.json").key == ["id"]
    assert main(["validate", str(d / "train.csv"), "--against", str(d / "p.json")]) == 0
    assert main(["validate", str(d / "bad.parquet"), "--against", str(d / "p.json")]) == 1
    out = capsys.readouterr().out
    assert "Validation FAILED" in out and "out_of_range" in out
    assert main(["validate", str(d / "train.parquet")]) == 0  # no --against: the profile
    assert main(["expect", str(d / "train.csv"), "--rules", str(d / "rules.yaml")]) == 0
    assert main(["expect", str(d / "bad.parquet"), "--rules", str(d / "rules.yaml")]) == 1


def test_cli_bad_input_exits_2_with_the_fix(files, capsys):
    d = files
    assert main(["validate", str(d / "missing.parquet"), "--against", str(d / "p.json")]) == 2
    assert "no file called" in capsys.readouterr().err
    (d / "future.json").write_text(json.dumps({"schema_version": 99, "n_rows": 1, "columns": {}}))
    assert main(["validate", str(d / "train.csv"), "--against", str(d / "future.json")]) == 2
    err = capsys.readouterr().err
    assert "newer" in err and "Fix:" in err
    (d / "broken.yaml").write_text("x: {min: 0")
    assert main(["expect", str(d / "train.csv"), "--rules", str(d / "broken.yaml")]) == 2
    assert main(["expect", str(d / "train.csv")]) == 2


def test_cli_a_binary_file_as_profile_or_rules_says_what_it_is_not(files, capsys):
    d = files
    data = str(d / "train.parquet")
    assert main(["validate", data, "--against", data]) == 2
    err = capsys.readouterr().err
    assert "is not a JSON profile" in err and "Fix:" in err
    assert main(["expect", data, "--rules", data]) == 2
    err = capsys.readouterr().err
    assert "is not a YAML rules file" in err and "Fix:" in err


def test_misleading_messages_of_validate_say_what_was_looked_for(ip, nbprod_home):
    from nbprod.errors import DataError, ModelNotFoundError, RuleError

    with pytest.raises(ModelNotFoundError, match="no variable, profile file or registered model called 'typo'"):
        ip.run_line_magic("nbprod", "validate df --against typo")
    assert not (nbprod_home / "mlflow.db").exists()  # a typo creates no MLflow store
    with pytest.raises(RuleError, match="no variable and no file called 'name'"):
        ip.run_line_magic("nbprod", "validate df --rules name")
    with pytest.raises(RuleError, match="no variable and no file called 'name'"):
        ip.run_line_magic("nbprod", "expect df --rules name")
    ip.user_ns["prof"] = ip.run_line_magic("nbprod", "profile df")
    with pytest.raises(DataError, match="tolerance nan is not a finite number"):
        ip.run_line_magic("nbprod", "validate df --against prof --tolerance nan")
    with pytest.raises(UsageError, match="--tolerance .* no --against"):
        ip.run_line_magic("nbprod", "validate df --tolerance 0.1")
    with pytest.raises(DataError, match=r"'df\[\[income\]\]'") as err:
        ip.run_line_magic("nbprod", "validate df[['income']]")
    assert "quote it" in err.value.fix
    assert isinstance(ip.run_line_magic("nbprod", "validate \"df[['income']]\""), Profile)


def test_cli_messages_speak_of_files_not_variables(files, capsys):
    d = files
    assert main(["validate", str(d / "nope.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no file called" in err and "variable" not in err
    assert main(["validate", str(d / "train.csv"), "--rules", "name"]) == 2
    err = capsys.readouterr().err
    assert "no file called 'name'" in err and "variable" not in err
    assert main(["validate", str(d / "train.csv"), "--against", "typo"]) == 2
    assert "no profile file and no registered model called 'typo'" in capsys.readouterr().err
    (d / "rules.txt").write_text("x: {max: 1e-6}\n")  # a rules file is YAML whatever its name
    assert main(["validate", str(d / "train.csv"), "--rules", str(d / "rules.txt")]) == 1
    assert main(["expect", str(d / "train.csv"), "--rules", str(d / "rules.txt")]) == 1
    assert "out_of_range" in capsys.readouterr().out


def test_cli_csv_and_json_files_match_a_datetime_profile(tmp_path, nbprod_home, capsys):
    df = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=5, freq="D"),
                       "tz": pd.date_range("2024-01-01", periods=5, freq="h", tz="Europe/Berlin"),
                       "x": np.arange(5.0), "c": list("abcab")})
    from nbprod.data.profile import profile

    p = str(profile(df).save(tmp_path / "p.json"))
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_json(tmp_path / "d.json", orient="records", date_format="iso")
    df.iloc[:0].to_csv(tmp_path / "header.csv", index=False)
    for name in ("d.csv", "d.json"):
        assert main(["validate", str(tmp_path / name), "--against", p]) == 0, capsys.readouterr().out
    assert "against " + p in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "header.csv"), "--against", p]) == 1  # no rows: no data to pass
    out = capsys.readouterr().out
    assert "the data has no rows" in out and "dtype" not in out
    bad = df.astype({"when": str})
    bad.loc[2, "when"] = "not a date"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["validate", str(tmp_path / "bad.csv"), "--against", p]) == 1
    out = capsys.readouterr().out
    assert "dtype" in out and "when" in out and " tz " not in out


def test_cli_and_magic_refuse_empty_data_and_empty_rules(files, ip, capsys):
    d = files
    pd.read_csv(d / "train.csv").iloc[:0].to_csv(d / "header.csv", index=False)
    assert main(["profile", str(d / "train.parquet"), "-o", str(d / "p.json")]) == 0
    capsys.readouterr()
    for argv in (["validate", str(d / "header.csv"), "--against", str(d / "p.json")],
                 ["expect", str(d / "header.csv"), "--rules", str(d / "rules.yaml")]):
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "Validation FAILED: the data has no rows (3 columns)" in out and "no_rows" in out
    (d / "empty.yaml").write_text("# income: {min: 0}\n")
    assert main(["expect", str(d / "train.csv"), "--rules", str(d / "empty.yaml")]) == 2
    err = capsys.readouterr().err
    assert "empty.yaml holds no rules" in err and "Fix:" in err
    assert main(["validate", str(d / "train.csv"), "--against", str(d / "p.json"),
                 "--rules", str(d / "empty.yaml")]) == 2
    from nbprod.errors import RuleError

    with pytest.raises(RuleError, match="the rules hold no rules"):
        ip.run_cell_magic("nbprod", "expect df", "# income: {min: 0}\n")
    ip.user_ns["none"] = ip.user_ns["df"].iloc[:0]
    report = ip.run_cell_magic("nbprod", "expect none", "income: {min: 0}\n")
    ip.user_ns.pop("none")
    assert report.checks == ["no_rows"]


def test_cli_a_column_gone_empty_fails_unless_null_tolerance_allows_it(tmp_path, nbprod_home, capsys):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"income": rng.uniform(0, 100, 500), "country": rng.choice(["NA", "DE"], 500)})
    train.loc[::125, "income"] = np.nan  # 0.8 % missing
    train.to_csv(tmp_path / "train.csv", index=False)
    train.assign(income=np.nan).to_csv(tmp_path / "empty_income.csv", index=False)
    assert main(["profile", str(tmp_path / "train.csv"), "-o", str(tmp_path / "p.json")]) == 0
    assert main(["validate", str(tmp_path / "train.csv"), "--against", str(tmp_path / "p.json")]) == 0
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "empty_income.csv"), "--against", str(tmp_path / "p.json")]) == 1
    out = capsys.readouterr().out
    assert "income: 500 missing values (100.00%), the training data had 0.80%" in out
    assert main(["validate", str(tmp_path / "empty_income.csv"), "--against", str(tmp_path / "p.json"),
                 "--null-tolerance", "1"]) == 0
    assert main(["validate", str(tmp_path / "train.csv"), "--null-tolerance", "0.1"]) == 2
    assert "--null-tolerance" in capsys.readouterr().err


def test_cli_date_rules_read_csv_and_json_times(tmp_path, nbprod_home, capsys):
    df = pd.DataFrame({"ts": ["2024-01-01", "2023-06-01"], "v": [1, 3]})
    df.to_csv(tmp_path / "dates.csv", index=False)
    df.to_json(tmp_path / "dates.json", orient="records")
    df.assign(ts=["2024-01-01", "soon"]).to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "min.yaml").write_text("ts: {min: 2024-01-01}\n")
    (tmp_path / "dtype.yaml").write_text("ts: {dtype: datetime, nullable: false}\n")
    for name in ("dates.csv", "dates.json"):
        assert main(["expect", str(tmp_path / name), "--rules", str(tmp_path / "dtype.yaml")]) == 0
        assert main(["expect", str(tmp_path / name), "--rules", str(tmp_path / "min.yaml")]) == 1
        out = capsys.readouterr().out
        assert "out_of_range" in out and "1 below" in out and "min/max need" not in out
    assert main(["validate", str(tmp_path / "dates.csv"), "--rules", str(tmp_path / "min.yaml")]) == 1
    assert main(["validate", str(tmp_path / "dates.csv"), "--against", str(tmp_path / "dtype.yaml")]) == 0
    capsys.readouterr()
    assert main(["expect", str(tmp_path / "bad.csv"), "--rules", str(tmp_path / "dtype.yaml")]) == 1
    out = capsys.readouterr().out
    assert "1 values (50.00%) are not ISO 8601 times, e.g. 'soon'" in out
    assert main(["expect", str(tmp_path / "bad.csv"), "--rules", str(tmp_path / "min.yaml")]) == 1
    assert "'soon'" in capsys.readouterr().out
