"""nbprod.drift: statistics equal scipy's, decisions follow Evidently's rules, bad input is explicit."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require
from scipy import stats
from scipy.spatial import distance

from nbprod.datasets import credit
from nbprod.driftstats import DriftReport, drift
from nbprod.driftstats import stats as dstats
from nbprod.errors import DriftError, NbprodError


def _frame(n: int, seed: int, shift: str | None = None) -> pd.DataFrame:
    X, y = credit(n, seed, shift=shift)
    X["default"] = y
    return X


@pytest.fixture(scope="module")
def big_pair():
    return _frame(5000, 0), _frame(4000, 1, "income")


def _evidently_js(r: pd.Series, c: pd.Series) -> float:
    keys = sorted(set(r) | set(c))
    rv, cv = r.value_counts(), c.value_counts()
    return distance.jensenshannon([rv.get(k, 0) / len(r) for k in keys], [cv.get(k, 0) / len(c) for k in keys])


# -- statistics equal scipy's ---------------------------------------------------------------------
def test_large_frame_reference_matches_scipy(big_pair, nbprod_home):
    ref, cur = big_pair
    report = drift(ref, cur, target="default")
    assert report.drifted_columns == ["income"]
    for col in ("income", "age", "debt_ratio", "credit_lines"):
        r, c = ref[col].dropna(), cur[col].dropna()
        row = report[col]
        assert row.test == "wasserstein" and row.exact
        assert row.score == pytest.approx(stats.wasserstein_distance(r, c) / np.std(r), abs=1e-9)
    for col in ("country", "employment", "purpose", "late_payments"):  # late_payments: int, ≤ 10 values
        row = report[col]
        assert row.test == "jensenshannon" and row.kind == "categorical"
        assert row.score == pytest.approx(_evidently_js(ref[col], cur[col]), abs=1e-9)
    assert report.target_drift.column == "default"
    assert "default" not in report.drifted_columns


def test_small_reference_uses_hypothesis_tests(big_pair, nbprod_home):
    ref, cur = big_pair
    small = ref.iloc[:800]
    report = drift(small, cur)
    row = report["income"]
    assert row.test == "ks" and row.drifted
    assert row.score == pytest.approx(stats.ks_2samp(small.income.dropna(), cur.income.dropna()).pvalue, abs=1e-9)
    for col in ("country", "purpose"):
        r, c = small[col], cur[col]
        keys = sorted(set(r) | set(c))
        f_obs = np.array([(c == k).sum() for k in keys], float)
        f_exp = np.array([(r == k).sum() for k in keys], float) * len(c) / len(r)
        assert report[col].test == "chisquare"
        assert report[col].score == pytest.approx(stats.chisquare(f_obs, f_exp).pvalue, abs=1e-9)


def test_ztest_matches_formula():
    rng = np.random.default_rng(3)
    r, c = rng.random(900) < 0.2, rng.random(700) < 0.3
    report = drift(pd.DataFrame({"flag": r}), pd.DataFrame({"flag": c}))
    row = report["flag"]
    assert row.test == "z"
    p1, p2 = r.mean(), c.mean()
    pooled = (r.sum() + c.sum()) / (len(r) + len(c))
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / len(r) + 1 / len(c)))
    assert row.score == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), abs=1e-9)
    assert row.drifted


def test_user_chosen_tests_and_thresholds(big_pair):
    ref, cur = big_pair
    report = drift(ref, cur, columns=["income", "debt_ratio", "country"],
                   tests={"income": "jensenshannon", "debt_ratio": "ks", "country": "psi"},
                   thresholds={"debt_ratio": 0.01})
    r, c = ref.income.dropna().to_numpy(), cur.income.dropna().to_numpy()
    bins = np.histogram_bin_edges(np.concatenate([r, c]), bins="sturges")
    js = distance.jensenshannon(np.histogram(r, bins)[0] / len(r), np.histogram(c, bins)[0] / len(c))
    assert report["income"].score == pytest.approx(js, abs=1e-9)
    ks = stats.ks_2samp(ref.debt_ratio, cur.debt_ratio)
    assert report["debt_ratio"].score == pytest.approx(ks.pvalue, abs=1e-9)
    assert report["debt_ratio"].threshold == 0.01
    assert report["country"].test == "psi" and report["country"].band == "stable"
    with pytest.raises(DriftError, match="unknown drift test"):
        drift(ref, cur, tests={"income": "magic"})
    with pytest.raises(DriftError, match="needs a numeric column"):
        drift(ref, cur, tests={"country": "wasserstein"})


def test_psi_on_reference_deciles(big_pair):
    ref, cur = big_pair
    row = drift(ref, cur, tests="psi")["income"]
    r, c = ref.income.dropna().to_numpy(), cur.income.dropna().to_numpy()
    edges = np.r_[-np.inf, np.quantile(r, np.linspace(0.1, 0.9, 9)), np.inf]
    rp = np.histogram(r, edges)[0] / len(r)
    cp = np.histogram(c, edges)[0] / len(c)
    assert row.score == pytest.approx(np.sum((rp - cp) * np.log(rp / cp)), rel=1e-6)
    assert row.band == "significant" and row.drifted


def test_stat_helpers_equal_scipy():
    rng = np.random.default_rng(0)
    u, v = np.sort(rng.normal(size=3000)), np.sort(rng.normal(0.3, 1.2, size=2000))
    assert dstats.wasserstein_sorted(u, v) == pytest.approx(stats.wasserstein_distance(u, v), abs=1e-12)
    uv, uc = np.array([0.0, 1, 2, 5]), np.array([5.0, 3, 1, 1])
    vv, vc = np.array([1.0, 2, 7]), np.array([2.0, 2, 1])
    assert dstats.wasserstein_weighted(uv, uc, vv, vc) == pytest.approx(stats.wasserstein_distance(uv, vv, uc, vc))
    p, q = np.array([0.2, 0.5, 0.3, 0.0]), np.array([0.1, 0.4, 0.4, 0.1])
    assert dstats.jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q), abs=1e-12)
    f_exp, f_obs = np.array([30.0, 50, 20]), np.array([25.0, 55, 20])
    assert dstats.chisquare_counts(f_exp, f_obs)[1] == pytest.approx(stats.chisquare(f_obs, f_exp).pvalue)
    data = rng.lognormal(size=5001)
    assert np.allclose(dstats.sturges_edges(data.min(), data.max(), data.size), np.histogram_bin_edges(data, "sturges"))


# -- from a profile ---------------------------------------------------------------------------------
def test_profile_reference_approximates_exact(nbprod_home):
    import nbprod

    ref, cur = _frame(20000, 0), _frame(20000, 1, "income")
    prof = nbprod.profile(ref)
    approx, exact = drift(prof, cur), drift(ref, cur)
    assert approx.drifted_columns == exact.drifted_columns == ["income"]
    for a, e in zip(approx.columns, exact.columns, strict=True):
        assert a.test == e.test
        if a.test in ("wasserstein", "jensenshannon"):
            assert abs(a.score - e.score) < 0.005, (a.column, a.score, e.score)
    assert not approx["income"].exact and "quantiles" in approx["income"].method
    # low-cardinality integers: the profile keeps their exact value counts
    assert approx["late_payments"].exact
    assert approx["late_payments"].score == pytest.approx(exact["late_payments"].score)
    # a JSON round trip changes nothing
    again = drift(type(prof).from_json(prof.to_json()), cur)
    assert [c.score for c in again.columns] == pytest.approx([c.score for c in approx.columns])


def test_small_profile_uses_its_sample_as_the_reference(nbprod_home):
    import nbprod

    ref, cur = _frame(600, 0), _frame(900, 1, "income")
    report = drift(nbprod.profile(ref), cur)
    frame_report = drift(ref, cur)
    assert report["income"].test == "ks" and report["income"].exact
    assert report["income"].score == pytest.approx(frame_report["income"].score, abs=1e-9)
    assert report.drifted_columns == frame_report.drifted_columns


def test_profile_json_path_and_string_reference(tmp_path, nbprod_home):
    import nbprod

    ref, cur = _frame(3000, 0), _frame(3000, 1, "country")
    path = tmp_path / "profile.json"
    path.write_text(nbprod.profile(ref).to_json())
    report = drift(str(path), cur)
    assert "country" in report.drifted_columns
    ref.to_parquet(tmp_path / "ref.parquet")
    assert drift(str(tmp_path / "ref.parquet"), cur).drifted_columns == drift(ref, cur).drifted_columns


# -- bad input --------------------------------------------------------------------------------------
def test_extra_and_unknown_columns(big_pair):
    ref, cur = big_pair
    report = drift(ref, cur.assign(extra=1))
    assert report.extra_columns == ["extra"] and "extra" in str(report)
    with pytest.raises(DriftError, match="not in the reference"):
        drift(ref, cur, columns=["nope"])


def test_a_reference_column_the_current_data_lacks_is_a_row_not_an_error(tmp_path, nbprod_home, capsys):
    import nbprod
    from nbprod.cli import main

    ref, cur = _frame(2000, 0), _frame(1500, 1, "income").drop(columns=["default"])  # unlabelled traffic
    path = tmp_path / "profile.json"
    path.write_text(nbprod.profile(ref).to_json())
    for reference in (ref, str(path)):
        report = drift(reference, cur, drift_share=0.1)
        row = report["default"]
        assert row.status == "not tested" and row.reason == "not in the current data"
        assert row.score is None and not row.drifted and row.n_reference == 2000
        assert report.missing_columns == ["default"] and len(report.tested) == len(ref.columns) - 1
        assert report.drifted_columns == ["income"] and report.share_drifted == 1 / (len(ref.columns) - 1)
        assert report.dataset_drift  # the share is over the tested columns
        data = json.loads(report.to_json())
        assert data["missing_columns"] == ["default"] and data["n_tested"] == len(ref.columns) - 1
    text, html = str(report), report.to_html(tmp_path / "r.html").read_text()
    assert "1 of 8 columns drifted, 1 not judged" in text
    assert re.search(r"default +categorical +– +– +– +– +not tested +not in the current data", text), text
    assert "not in the current data, not judged: default" in text and "not in the current data" in report._repr_html_()
    assert "<td>default</td><td>feature</td><td>categorical</td><td>-</td><td>-</td><td>-</td><td>-</td>" in html
    labelled = drift(ref, cur, target="default")
    assert labelled.target_drift.status == "not tested" and labelled.to_dict()["target_drift"] is None

    # only current data that shares no column is an error, its fix for both front ends
    with pytest.raises(DriftError, match="none of the column.*'default'") as err:
        drift(ref, cur, columns=["default"])
    assert "columns=[...]" in err.value.fix and "--columns" in err.value.fix and "'age'" in err.value.fix
    with pytest.raises(DriftError, match="none of the column"):
        drift(ref, pd.DataFrame({"y": range(100)}))
    with pytest.raises(DriftError, match="prediction column 'nope'") as err:
        drift(ref, cur, prediction="nope")
    assert "prediction= (--prediction)" in err.value.fix
    with pytest.raises(DriftError, match="drift_share") as err:
        drift(ref, cur, drift_share=2)
    assert "drift_share=0.5 (--drift-share 0.5)" in err.value.fix

    cur.to_csv(tmp_path / "new.csv", index=False)
    assert main(["drift", str(path), str(tmp_path / "new.csv")]) == 0
    assert "not in the current data" in capsys.readouterr().out
    assert main(["drift", str(path), str(tmp_path / "new.csv"), "--fail-on-drift", "--drift-share", "0.1"]) == 1
    assert main(["drift", str(path), str(tmp_path / "new.csv"), "--columns", "default"]) == 2
    assert "--columns" in capsys.readouterr().err


def test_a_column_whose_type_changed_is_a_drifted_row_not_an_error(tmp_path, nbprod_home, capsys):
    import nbprod
    from nbprod.cli import main

    ref, cur = _frame(2000, 0), _frame(1500, 1)  # no drift
    path = tmp_path / "profile.json"
    path.write_text(nbprod.profile(ref).to_json())
    typo = cur.assign(age=cur.age.astype(object))
    typo.loc[7, "age"] = "abc"  # one bad value: the column is read as text
    for reference in (ref, str(path)):
        report = drift(reference, typo)
        row = report["age"]
        assert row.status == "type changed" and row.drifted and row.score is None and row.kind == "numeric"
        assert row.reason == "numeric → text: 1 of 1,500 values is not a number; counted as drifted"
        assert report.type_changed == ["age"] and report.drifted_columns == ["age"]
        assert len(report.judged) == len(ref.columns) and len(report.tested) == len(ref.columns) - 1
        assert report.share_drifted == 1 / len(ref.columns) and not report.dataset_drift  # below drift_share
        assert report["income"].status == "ok"  # the rest is still computed
        assert "age" not in report.not_enough_data and json.loads(report.to_json())["type_changed"] == ["age"]
    assert report.ok  # no gate asked for
    report.fail_on_drift = True
    assert not report.ok  # the gate fails on a changed type, whatever the share
    text, html = str(report), report.to_html(tmp_path / "r.html").read_text()
    assert text.startswith("no dataset drift, but TYPE CHANGED (age): 1 of 9 columns drifted")
    assert re.search(r"age +numeric +– +– +– +YES +type changed +numeric → text", text), text
    assert "<td>age</td><td>feature</td><td>numeric</td><td>-</td><td>-</td><td>-</td><td>YES</td>" in html
    assert "abc" not in text and "abc" not in html  # the bad value is counted, not shown
    assert "TYPE CHANGED (age)" in report._repr_html_()
    assert drift(ref, typo, drift_share=0.1).dataset_drift  # it counts in the share
    quoted = drift(ref, cur.assign(age=cur.age.astype(str)))["age"]  # numbers as strings (JSON "35")
    assert quoted.reason == "numeric → text: numbers stored as text; counted as drifted"
    typo.loc[8, "age"] = "n/a"
    assert drift(ref, typo)["age"].reason.startswith("numeric → text: 2 of 1,500 values are not numbers")

    texts = drift(ref, cur.assign(country=range(len(cur))))["country"]  # text became numbers
    assert texts.status == "type changed" and texts.reason == "text → numeric; counted as drifted"
    assert drift(ref, cur.assign(default=cur.default.astype(str)), target="default").to_dict()["target_drift"] is True

    typo.to_csv(tmp_path / "new.csv", index=False)
    assert main(["drift", str(path), str(tmp_path / "new.csv")]) == 0
    assert "type changed" in capsys.readouterr().out
    assert main(["drift", str(path), str(tmp_path / "new.csv"), "--fail-on-drift"]) == 1
    cur.to_csv(tmp_path / "same.csv", index=False)
    assert main(["drift", str(path), str(tmp_path / "same.csv"), "--fail-on-drift"]) == 0


def test_empty_window_and_null_columns(big_pair):
    ref, cur = big_pair
    with pytest.raises(DriftError, match="no rows"):
        drift(ref, cur.iloc[:0])
    nulls = cur.assign(income=np.nan, country=None)
    report = drift(ref, nulls)
    for col in ("income", "country"):
        row = report[col]
        assert row.status == "not enough data" and row.score is None and not row.drifted
        assert "current" in row.reason
    assert "income" in report.not_enough_data
    json.dumps(report.to_dict())  # no NaN anywhere
    report = drift(ref.assign(income=np.nan), cur)
    assert report["income"].status == "not enough data" and "reference" in report["income"].reason


def test_one_category_reference():
    ref = pd.DataFrame({"c": ["a"] * 2000})
    same = drift(ref, pd.DataFrame({"c": ["a"] * 500}))
    assert same["c"].score == 0.0 and not same.dataset_drift
    other = drift(ref, pd.DataFrame({"c": ["a"] * 250 + ["b"] * 250}))
    assert other["c"].drifted
    chi = drift(ref, pd.DataFrame({"c": ["a"] * 500}), tests="chisquare")
    assert chi["c"].status == "not enough data" and chi["c"].score is None
    with pytest.raises(NbprodError):
        drift(pd.Series([1, 2]), ref)


def test_unseen_category_small_reference_is_drift():
    ref = pd.DataFrame({"c": list("ab") * 300})
    report = drift(ref, pd.DataFrame({"c": list("abc") * 100}))
    row = report["c"]
    assert row.test == "chisquare" and row.score == 0.0 and row.drifted
    assert row.to_dict()["statistic"] == "inf"


# -- results and displays ---------------------------------------------------------------------------
def test_report_displays_and_html(big_pair, tmp_path):
    ref, cur = big_pair
    report = drift(ref, cur, drift_share=0.1, target="default")
    assert isinstance(report, DriftReport) and report.dataset_drift and report.ok
    report.fail_on_drift = True
    assert not report.ok
    html = report._repr_html_()
    assert "DATASET DRIFT" in html and "income" in html
    out = report.to_html(tmp_path / "drift.html")
    text = out.read_text()
    assert "<script" not in text and "income" in text
    assert str(ref.income.dropna().iloc[0]) not in text  # summaries only, no raw rows
    assert len(text) < 100_000
    data = report.to_dict()
    assert data["drifted_columns"] == ["income"] and data["columns"][0]["distribution"]
    spec = report.chart().to_dict()
    assert "vconcat" in spec
    assert report.chart("country").to_dict()["mark"]["type"] == "bar"
    assert len(report.to_frame()) == len(report.columns)


def test_drift_command(tmp_path, big_pair):
    from nbprod import commands

    ref, cur = big_pair
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    command, args = commands.parse("nbprod", ["drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"),
                                              "--fail-on-drift", "--drift-share", "0.1",
                                              "--html", str(tmp_path / "r.html")])
    report = command.run(args, commands.Context())
    assert report.dataset_drift and not report.ok and (tmp_path / "r.html").is_file()
    command, args = commands.parse("nbprod", ["drift", "ref", "cur"])
    report = command.run(args, commands.Context(namespace={"ref": ref, "cur": cur}, front_end="magic"))
    assert report.ok and report.drifted_columns == ["income"]


# -- Evidently's decisions, computed by Evidently itself in its own venv -----------------------------
EVIDENTLY_PY = Path(__file__).resolve().parents[1] / "benchmarks" / ".venv-evidently" / "bin" / "python"

CASES = {"income": 5000, "country": 800, "label": 5000}  # shift → reference rows (800: the small-sample tests)

# Runs inside benchmarks/.venv-evidently (Evidently 0.7.23 needs pandas < 3, so it cannot share
# nbprod's venv), once for all cases: {case: {column: [value, drifted]}} from reference/current parquet files.
_EVIDENTLY_SCRIPT = """
import json, sys
from pathlib import Path
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
out = {}
for case in sys.argv[2:]:
    ref, cur = (pd.read_parquet(Path(sys.argv[1]) / f"{case}-{side}.parquet") for side in ("ref", "cur"))
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=DataDefinition()),
                                              Dataset.from_pandas(ref, data_definition=DataDefinition()))
    out[case] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            value, p_value = float(metric["value"]), "p_value" in config["method"]
            drifted = value < config["threshold"] if p_value else value >= config["threshold"]
            out[case][config["column"]] = [value, bool(drifted)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def evidently_decisions(tmp_path_factory):
    """Each case's frames and Evidently's own per-column (score, drifted), from one Evidently process."""
    require(EVIDENTLY_PY.is_file(), "Evidently's venv is missing: `make peers` builds benchmarks/.venv-evidently")
    where = tmp_path_factory.mktemp("evidently")
    frames = {case: (_frame(n_ref, 0), _frame(3000, 1, case)) for case, n_ref in CASES.items()}
    for case, (ref, cur) in frames.items():
        ref.to_parquet(where / f"{case}-ref.parquet")
        cur.to_parquet(where / f"{case}-cur.parquet")
    proc = subprocess.run([str(EVIDENTLY_PY), "-c", _EVIDENTLY_SCRIPT, str(where), *CASES],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return frames, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("shift", list(CASES))
def test_same_decisions_as_evidently(evidently_decisions, shift):
    frames, decisions = evidently_decisions
    ref, cur = frames[shift]
    evidently = decisions[shift]
    assert set(evidently) == set(ref.columns)
    report = drift(ref, cur)
    for column, (value, drifted) in evidently.items():
        assert report[column].drifted == drifted, (shift, column)
        assert report[column].score == pytest.approx(value, abs=1e-9), (shift, column)


# -- audit fixes (issue 5) --------------------------------------------------------------------------
def test_non_string_column_labels():
    ref = pd.DataFrame({0: np.arange(600.0), 1: ["a", "b"] * 300})
    report = drift(ref, pd.DataFrame({0: np.arange(600.0) + 300, 1: ["a", "b"] * 300}))
    assert [c.column for c in report.columns] == ["0", "1"]
    assert report["0"].drifted and not report["1"].drifted
    assert drift(ref, pd.DataFrame({"0": np.arange(600.0), "1": ["a", "b"] * 300})).drifted_columns == []


def test_thresholds_must_be_usable_numbers():
    ref, cur = pd.DataFrame({"x": np.arange(600.0)}), pd.DataFrame({"x": np.arange(600.0) + 300})
    for bad, says in [(float("nan"), "finite"), (float("inf"), "finite"), (-1, "≥ 0"), ("high", "not a number"),
                      ({"x": float("nan")}, "finite")]:
        with pytest.raises(DriftError, match=says):
            drift(ref, cur, thresholds=bad)
    with pytest.raises(DriftError, match=r"p-value threshold .* \(0, 1\]"):
        drift(ref, cur, tests="ks", thresholds=1.5)
    with pytest.raises(DriftError, match=r"\(0, 1\]"):
        drift(ref, cur, tests="ks", thresholds=0)
    assert drift(ref, cur, tests="wasserstein", thresholds=1.5)["x"].threshold == 1.5  # distances may exceed 1
    assert drift(ref, cur, tests="ks", thresholds=1)["x"].drifted


def test_reports_never_name_the_values_of_near_unique_or_rare_categories(tmp_path):
    n = 2000
    ref = pd.DataFrame({"email": [f"user{i}@example.com" for i in range(n)],
                        "plan": ["free"] * (n - 3) + ["vip-ceo-only"] * 3})
    cur = pd.DataFrame({"email": [f"new{i}@example.org" for i in range(n)], "plan": ["free", "pro"] * (n // 2)})
    report = drift(ref, cur)
    html = report.to_html(tmp_path / "r.html").read_text() + report._repr_html_() + report.to_json()
    assert "@example" not in html and "vip-ceo-only" not in html
    plan = report["plan"].distribution
    assert "free" in plan["labels"] and "pro" in plan["labels"]  # frequent categories are still named
    assert sum(plan["reference"]) == pytest.approx(1.0)
    assert sum(report["email"].distribution["current"]) == pytest.approx(1.0)
    assert report["email"].distribution["labels"] == ["(rare values)"]


def test_counts_tests_on_a_continuous_column_are_refused():
    ref, cur = pd.DataFrame({"x": np.random.default_rng(0).normal(size=600)}), pd.DataFrame({"x": np.arange(600.0)})
    for test in ("chisquare", "z"):
        with pytest.raises(DriftError, match=f"'{test}' compares value counts.*continuous") as err:
            drift(ref, cur, tests={"x": test})
        assert "ks" in err.value.fix
    few = pd.DataFrame({"x": np.tile(np.arange(5.0), 120)})  # few values: counts exist, chi-square runs
    assert drift(few, few, tests="chisquare")["x"].status == "ok"


def test_a_boolean_column_with_missing_values_keeps_its_kind():
    ref = pd.DataFrame({"b": [True, False] * 300})
    cur = pd.DataFrame({"b": pd.Series([True, None, False] * 50, dtype=object)})
    row = drift(ref, cur)["b"]
    assert row.status == "ok" and row.nulls_current == 50 and not row.drifted
    assert drift(pd.DataFrame({"b": pd.Series([True, None] * 300, dtype=object)}), ref)["b"].status == "ok"
    row = drift(ref, pd.DataFrame({"b": pd.Series(["yes", None] * 150, dtype=object)}))["b"]
    assert row.status == "type changed" and row.reason.startswith("boolean → text")  # strings are a change of kind


def test_infinite_values_are_counted_apart_from_nulls():
    ref = pd.DataFrame({"x": np.arange(600.0), "y": np.arange(600.0)})
    cur = pd.DataFrame({"x": np.r_[np.arange(590.0), [np.inf] * 5, [np.nan] * 5], "y": np.full(600, np.inf)})
    report = drift(ref, cur)
    assert (report["x"].nulls_current, report["x"].infinite_current, report["x"].status) == (5, 5, "ok")
    y = report["y"]
    assert y.status == "not enough data" and y.score is None
    assert y.reason == "all values are infinite in the current data"
    assert (y.nulls_current, y.infinite_current) == (0, 600)
    mixed = drift(ref, pd.DataFrame({"x": np.arange(600.0), "y": np.r_[[np.inf] * 300, [np.nan] * 300]}))["y"]
    assert "no finite values" in mixed.reason and "300 infinite" in mixed.reason
    json.dumps(report.to_dict())


def test_too_few_rows_are_not_enough_data_not_drift():
    ref = pd.DataFrame({"x": np.arange(600.0), "c": ["a", "b"] * 300})
    report = drift(ref, pd.DataFrame({"x": [10_000.0], "c": ["z"]}))
    assert report.drifted_columns == [] and not report.dataset_drift and report.not_enough_data == ["x", "c"]
    assert "fewer than min_rows=30" in report["x"].reason
    assert drift(ref, pd.DataFrame({"x": [10_000.0] * 5, "c": ["z"] * 5}), min_rows=5).drifted_columns == ["x", "c"]
    with pytest.raises(DriftError, match="min_rows"):
        drift(ref, ref, min_rows=0)


def test_a_missing_reference_file_is_named(tmp_path):
    cur = pd.DataFrame({"x": np.arange(600.0)})
    for name in ("nope.parquet", "nope.csv", "nope.json"):
        with pytest.raises(DriftError, match=f"reference file .*{name} does not exist"):
            drift(str(tmp_path / name), cur)


def test_cli_fail_on_drift_exit_codes(tmp_path, nbprod_home, capsys):
    from nbprod.cli import main

    ref, cur = _frame(2000, 0), _frame(2000, 1, "income")
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    _frame(2000, 2).to_parquet(tmp_path / "same.parquet")
    base = ["drift", str(tmp_path / "ref.parquet")]
    assert main([*base, str(tmp_path / "cur.parquet"), "--fail-on-drift", "--drift-share", "0.1"]) == 1
    assert "DATASET DRIFT" in capsys.readouterr().out
    assert main([*base, str(tmp_path / "same.parquet"), "--fail-on-drift", "--drift-share", "0.1"]) == 0
    assert main([*base, str(tmp_path / "cur.parquet"), "--drift-share", "0.1"]) == 0  # no gate: drift is reported
    assert main([*base, str(tmp_path / "missing.parquet"), "--fail-on-drift"]) == 2
