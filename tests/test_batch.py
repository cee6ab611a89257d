"""How a batch job reads parquet and predicts: text columns as dictionary codes, the compiled model on them.

Why these exist: ``nbprod score`` hands a parquet text column on as codes (``Coded``) and runs the server's
compiled plan on every batch, where it used to build Python lists and call the MLflow model. These tests
pin that the codes carry exactly the values a request's lists carry, that batches are cut exactly as a
plain read cuts them (a batch's number is in its prediction ids), and that the plan gives the same
answers on codes as on lists. tests/test_score.py checks whole jobs against the server.
"""

from __future__ import annotations

import math

import pytest


def _frame(n: int = 1000, seed: int = 3):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(0, 1, n),
        "k": rng.integers(0, 9, n),
        "city": rng.choice(["Oslo", "Rome", "Lima"], n),
        "tier": rng.choice(["a", "b", "c", "d"], n),
        "flag": rng.random(n) > 0.5,
        "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
    })
    df.loc[[4, 500], "x"] = np.nan
    df.loc[[7, 8, 900], "city"] = None
    df.loc[11, "count"] = pd.NA  # a nullable integer: pandas' own conversion, not Arrow's array
    return df


def _same(a, b) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if len(a) != len(b):
        return False
    return all(x == y or (x is None and y is None) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a, b, strict=True))


def test_batches_are_cut_as_a_plain_read_and_carry_the_same_values(tmp_path):
    import pyarrow.parquet as pq

    from nbprod.batch.parts import Part, arrow_columns, batches, columns_of, plain
    from nbprod.data.ood import Coded

    path = tmp_path / "in.parquet"
    _frame().to_parquet(path, row_group_size=70)  # batches of 100 span row groups
    groups = tuple(range(pq.ParquetFile(path).num_row_groups))
    reads = list(batches(Part(0, 0, 1000, str(path), groups), 100))
    expected = list(pq.ParquetFile(path).iter_batches(batch_size=100))
    assert [len(r) for r in reads] == [b.num_rows for b in expected]
    for read, b in zip(reads, expected, strict=True):
        assert read.batch.equals(b) and read.batch.schema.equals(b.schema, check_metadata=True)  # the input's types
        assert set(read.coded) == {"city", "tier"} and all(isinstance(v, Coded) for v in read.coded.values())
        frame = b.to_pandas()
        got, want = arrow_columns(read, lambda frame=frame: frame), columns_of(frame)
        assert list(got) == list(want)
        for name in want:
            assert _same(plain(got[name]), want[name]), name


def _model(handle_unknown: str = "ignore"):
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = _frame(2000, seed=1)[["x", "k", "city", "tier"]]
    X = X.astype({"city": object, "tier": object})  # a missing city is NaN: the imputer fills it
    y = (np.nan_to_num(X.x.to_numpy()) + (X.tier == "a") > 0.3).astype(int)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["x", "k"]),
        ("city", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                               OneHotEncoder(handle_unknown=handle_unknown)), ["city"]),
        ("tier", OneHotEncoder(handle_unknown=handle_unknown), ["tier"]),
    ])
    return make_pipeline(pre, LogisticRegression(max_iter=300)).fit(X, y)


def _columns(df):
    import pandas as pd

    from nbprod.batch.parts import columns_of
    from nbprod.data.ood import Coded

    lists = columns_of(df)
    coded = dict(lists)
    for name in ("city", "tier"):
        codes, labels = pd.factorize(df[name])
        coded[name] = Coded(codes, list(labels))
    return lists, coded


def test_the_compiled_model_gives_the_same_answers_on_codes_as_on_lists():
    import numpy as np

    from nbprod.serving.fastpath import compile_estimator

    model = _model()
    df = _frame(3000, seed=9)[["x", "k", "city", "tier"]]
    df.loc[[3, 30], "tier"] = "zz"  # unseen: ignored, as scikit-learn does
    lists, coded = _columns(df)
    for output in ("predict", "predict_proba"):
        plan = compile_estimator(model, output)
        on_lists, on_codes = plan(lists, len(df)), plan(coded, len(df))
        assert np.array_equal(on_codes, on_lists)
    assert np.array_equal(compile_estimator(model)(coded, len(df)), model.predict(df.astype(object)))


def test_an_unseen_category_is_refused_on_codes_as_on_lists():
    from nbprod.serving.fastpath import UnknownCategory, compile_estimator

    plan = compile_estimator(_model(handle_unknown="error"))
    df = _frame(3000, seed=9)[["x", "k", "city", "tier"]]
    df.loc[[40, 41], "tier"] = "zz"
    lists, coded = _columns(df)
    with pytest.raises(UnknownCategory) as on_lists:
        plan(lists, len(df))
    with pytest.raises(UnknownCategory) as on_codes:
        plan(coded, len(df))
    assert (on_codes.value.column, on_codes.value.value) == (on_lists.value.column, on_lists.value.value) == \
        ("tier", "zz")
