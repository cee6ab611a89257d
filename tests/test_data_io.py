"""Reading data files: in a CSV only an empty field is missing, but in numeric columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbprod.cli import main
from nbprod.data.io import read_frame
from nbprod.data.profile import profile
from nbprod.data.validate import validate
from nbprod.errors import DataError


def test_csv_words_pandas_calls_missing_stay_text(tmp_path):
    path = tmp_path / "words.csv"
    path.write_text("country,name,flag,code\nNA,None,null,N/A\nDE,,n/a,x\n,Ann,NULL,\n")
    df = read_frame(path)
    assert df["country"].tolist()[:2] == ["NA", "DE"] and pd.isna(df["country"][2])  # only the empty field
    assert df["name"].tolist()[0] == "None" and pd.isna(df["name"][1])
    assert df["flag"].tolist() == ["null", "n/a", "NULL"]
    assert df["code"].tolist()[:2] == ["N/A", "x"] and pd.isna(df["code"][2])
    all_words = tmp_path / "namibia.csv"
    all_words.write_text("country\nNA\nNA\n")  # nothing but a word: text, not a column of missing numbers
    assert read_frame(all_words)["country"].tolist() == ["NA", "NA"]


def test_csv_numeric_and_boolean_columns_read_na_words_as_missing(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("empty,nan,r,inf,flag,n\n1.5,NaN,1,inf,True,1\n,nan,NA,-inf,NA,2\n2,3,,NaN,False,3\n")
    df = read_frame(path)
    assert df["empty"].dtype == np.float64 and df["empty"].isna().tolist() == [False, True, False]
    assert df["nan"].dtype == np.float64 and df["nan"].isna().tolist() == [True, True, False]
    assert df["r"].dtype == np.float64 and df["r"].isna().tolist() == [False, True, True]  # R writes NA
    assert df["inf"].dtype == np.float64 and df["inf"].tolist()[:2] == [np.inf, -np.inf] and pd.isna(df["inf"][2])
    assert df["flag"].tolist()[0] is True and pd.isna(df["flag"][1]) and df["flag"].tolist()[2] is False
    assert df["n"].dtype == np.int64


def test_a_csv_with_namibia_validates_against_its_own_profile_and_rules(tmp_path, nbprod_home, capsys):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"country": rng.choice(["NA", "DE", "None"], 80), "x": np.arange(80)})
    train.to_csv(tmp_path / "train.csv", index=False)
    assert main(["profile", str(tmp_path / "train.csv"), "-o", str(tmp_path / "p.json")]) == 0
    prof = profile(read_frame(tmp_path / "train.csv"))
    assert prof.columns["country"].null_count == 0 and set(prof.columns["country"].categories) == {"NA", "DE", "None"}
    assert validate(read_frame(tmp_path / "train.csv"), prof).ok
    assert main(["validate", str(tmp_path / "train.csv"), "--against", str(tmp_path / "p.json")]) == 0
    (tmp_path / "r.yaml").write_text("country: {in: [NA, DE, None], nullable: false}\n")
    assert main(["expect", str(tmp_path / "train.csv"), "--rules", str(tmp_path / "r.yaml")]) == 0, \
        capsys.readouterr().out


@pytest.mark.parametrize("na_rep", ["", "NA", "NaN"])
def test_a_numeric_csv_column_with_missing_values_matches_its_profile(tmp_path, nbprod_home, na_rep):
    train = pd.DataFrame({"income": [1.0, np.nan, 3.0, 4.0], "n": [1, 2, 3, 4]})
    train.to_csv(tmp_path / "t.csv", index=False, na_rep=na_rep)
    back = read_frame(tmp_path / "t.csv")
    assert back["income"].dtype == np.float64 and back["income"].isna().sum() == 1
    assert validate(back, profile(train)).ok


@pytest.mark.parametrize("content, message", [
    ("a,b,a\n1,2,3\n", "names column(s) 'a' more than once"),  # pandas renamed the second one 'a.1'
    ("age;income\n30;1000\n", "its values are separated by ';', not commas"),  # one column 'age;income'
    ("age\tincome\n30\t1000\n", "its values are separated by a tab, not commas"),
])
def test_a_csv_pandas_reads_without_a_word_is_refused(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_frame(path)


def test_a_folder_and_a_file_not_in_utf8_say_so(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataError, match="is a folder, not a data file"):
        read_frame(tmp_path / "data.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("city,n\nZürich,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="it is not UTF-8 text") as err:
        read_frame(latin)
    assert "iconv" in err.value.fix
