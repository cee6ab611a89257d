"""The request path's fused form (issue 13): coerce answers a :class:`~nbprod.serving.codecs.Coerced` (the
numeric columns also as one matrix), and the OOD check and the compiled plan read that matrix (one row:
Python floats). Its answers are the general path's bit for bit — predictions, probabilities, OOD flags,
and for bad input the same error, message and code — over varied input."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from nbprod.data.ood import CategoryCheck, OodChecker, RangeCheck
from nbprod.serving import codecs, fastpath
from nbprod.serving.codecs import Coerced, Column
from nbprod.serving.quickood import QuickOod

# signature order interleaves numeric and text columns: the plan's blocks take them in another order
SIG = [Column("city", "string"), Column("age", "long"), Column("income", "double"), Column("plan", "string"),
       Column("visits", "integer"), Column("score", "double")]
CHECKER = OodChecker([RangeCheck("age", "numeric", 18.0, 90.0), RangeCheck("income", "numeric", 0.0, 1e6),
                      RangeCheck("score", "numeric", -1.0, 2.0)],
                     [CategoryCheck("city", frozenset({"paris", "lyon", "nice"})),
                      CategoryCheck("plan", frozenset({"free", "pro"}))])


def _coerce_one_numpy(cols: dict[str, Any], numeric: tuple, small: tuple, strings: list[str],
                      order: list[str]) -> Coerced | None:
    """The former ``codecs._coerce_one`` (each value checked in Python, the matrix from a list of one-value
    lists): the reference the new one is compared with, value for value."""
    checks, int_columns, float_columns, _, int_names, float_names, _ = small
    lists = []
    for name, (whole, limit) in zip(numeric, checks, strict=True):
        values = cols.get(name)
        if type(values) is not list or len(values) != 1:
            return None
        v = values[0]
        if whole:
            if type(v) is not int or not -limit < v < limit:  # 3.0, None, huge: coerce says what
                return None
        elif type(v) is float:
            if v == codecs._INF or v == -codecs._INF:
                return None
        elif v is not None and type(v) is not int:
            return None
        lists.append(values)
    found: dict[str, Any] = {}
    for name in strings:
        values = cols.get(name)
        if type(values) is not list or len(values) != 1 or (values[0] is not None and type(values[0]) is not str):
            return None
        found[name] = values
    try:
        matrix = np.array(lists, dtype=np.float64)
        whole_matrix = np.array([lists[j] for j in int_columns], dtype=np.int64) if int_columns else None
    except (TypeError, ValueError, OverflowError):  # a float column's integer past 1e308: coerce says what
        return None
    for name, j in zip(float_names, float_columns, strict=True):
        found[name] = matrix[j]
    if whole_matrix is not None:
        found.update(zip(int_names, whole_matrix, strict=True))  # iterating a matrix gives its rows as views
    return Coerced({name: found[name] for name in order}, numeric, matrix)


def _frame(n=300, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"city": rng.choice(["paris", "lyon", "nice"], n), "age": rng.integers(18, 90, n),
                       "income": rng.lognormal(10, 0.5, n), "plan": rng.choice(["free", "pro"], n),
                       "visits": rng.integers(0, 20, n), "score": rng.uniform(0, 1, n)})
    df.loc[rng.random(n) < 0.1, "income"] = np.nan
    y = ((df.age - 50) / 10 + (df.city == "paris") + rng.normal(0, 0.5, n) > 0.5).astype(int)
    return df, y


def _plans():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, OneHotEncoder, StandardScaler

    df, y = _frame()
    three = np.where(df.score > 0.66, "c", np.where(df.score > 0.33, "b", "a"))
    scaled = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()),
                                 ["income", "age", "score", "visits"]),  # not the signature's order
                                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "city"])])
    strict = ColumnTransformer([("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                      OneHotEncoder(handle_unknown="error")), ["city"]),
                                ("a", make_pipeline(SimpleImputer(strategy="median"), MinMaxScaler()),
                                 ["age", "income"]),
                                ("b", MaxAbsScaler(), ["visits"])])
    out = {
        "logistic": (make_pipeline(scaled, LogisticRegression(max_iter=500)).fit(df, y), "predict"),
        "proba": (make_pipeline(scaled, LogisticRegression(max_iter=500)).fit(df, y), "predict_proba"),
        "multiclass": (make_pipeline(scaled, LogisticRegression(max_iter=500)).fit(df, three), "predict_proba"),
        "strict+post": (make_pipeline(strict, StandardScaler(), LogisticRegression(max_iter=500)).fit(df, y),
                        "predict"),
        "regressor": (make_pipeline(scaled, LinearRegression()).fit(df, df.score * 3), "predict"),
    }
    return {k: fastpath.compile_estimator(est, how) for k, (est, how) in out.items()}


PLANS = _plans()

_ROW_KINDS = [
    lambda r, i: {"city": "paris", "age": 30 + i, "income": 1.5e4 * (i + 1), "plan": "pro", "visits": i,
                  "score": 0.25},
    lambda r, i: {"city": r.choice(["paris", "lyon", "nice", None]), "age": int(r.integers(10, 99)),
                  "income": None if r.random() < 0.3 else float(r.lognormal(10, 1)),
                  "plan": r.choice(["free", "pro"]), "visits": int(r.integers(0, 30)), "score": float(r.normal())},
    lambda r, i: {"city": "nice", "age": 40, "income": 20000, "plan": "free", "visits": 3, "score": 1},  # ints
    lambda r, i: {"city": "berlin", "age": 40, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},  # unseen
    lambda r, i: {"city": "nice", "age": 40, "income": 10 ** 20, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": 10 ** 400, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 2 ** 60, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": 1.0, "plan": "free", "visits": 2 ** 31, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40.0, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40.5, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": True, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": False, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": float("inf"), "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": float("nan"), "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": None, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": "12.5", "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": 7, "age": 40, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": ["nice"], "age": 40, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5},
    lambda r, i: {"city": "nice", "age": 40, "income": 1.0, "plan": "free", "visits": 3},  # missing column
    lambda r, i: {"city": "nice", "age": 40, "income": 1.0, "plan": "free", "visits": 3, "score": 0.5, "x": 1},
    lambda r, i: {"city": "nice", "age": 400, "income": -5.0, "plan": "gold", "visits": 3, "score": 9.0},  # OOD
    lambda r, i: {"city": "nice", "age": 40, "income": 1e308, "plan": "free", "visits": 3, "score": -1e308},
]


def _path(records, plan, fused: bool):
    """decode → coerce → OOD flags → predict, fused or general; the outcome or the error."""
    real = codecs._coerce_quick
    if not fused:
        codecs._coerce_quick = lambda *a: None
    try:
        batch = codecs.decode_mlflow({"dataframe_records": records}, SIG)
        cols = codecs.coerce(batch, SIG)
        assert fused or type(cols) is dict  # the general path's plain dict
        flags = (QuickOod(CHECKER) if fused else CHECKER).flags(cols, batch.n)
        pred = plan(cols, batch.n)
        return cols, flags, pred
    except Exception as exc:  # noqa: BLE001 - the same error is expected from both
        return exc
    finally:
        codecs._coerce_quick = real


def _same(got, want):
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want), (got, want)
        assert getattr(got, "code", None) == getattr(want, "code", None)
        return
    assert not isinstance(got, Exception), got
    (cols, flags, pred), (want_cols, want_flags, want_pred) = got, want
    assert flags == want_flags
    assert pred.dtype == want_pred.dtype and pred.shape == want_pred.shape
    assert pred.tobytes() == want_pred.tobytes()  # bit for bit
    assert list(cols) == list(want_cols)
    for k, v in want_cols.items():
        if isinstance(v, np.ndarray):
            assert cols[k].dtype == v.dtype and cols[k].tobytes() == v.tobytes()
        else:
            assert cols[k] == v


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_the_fused_path_answers_what_the_general_path_answers(plan, n):
    rng = np.random.default_rng(n)
    for kind in range(len(_ROW_KINDS)):
        for mixed in (False, True):  # every row of one kind, or one odd row among ordinary ones
            records = [_ROW_KINDS[kind](rng, i) if not mixed or i == n // 2 else _ROW_KINDS[1](rng, i)
                       for i in range(n)]
            _same(_path(records, PLANS[plan], True), _path(records, PLANS[plan], False))


def test_ordinary_requests_take_the_fused_path():
    """What makes the request path cheaper is used: a Coerced, read by the plan's wiring (fails on the old code)."""
    records = [_ROW_KINDS[0](None, i) for i in range(3)]
    cols = codecs.coerce(codecs.decode_mlflow({"dataframe_records": records}, SIG), SIG)
    assert type(cols) is Coerced and cols.numeric == ("age", "income", "visits", "score")
    assert cols.matrix.shape == (4, 3) and cols.matrix.dtype == np.float64
    assert cols.matrix[0].tolist() == [30.0, 31.0, 32.0] and cols["age"].dtype == np.int64
    for name, plan in PLANS.items():
        assert plan._wired(cols.numeric) is not None, name
    one = codecs.coerce(codecs.decode_mlflow({"dataframe_records": records[:1]}, SIG), SIG)
    assert type(one) is Coerced and one.row == [30.0, 15000.0, 0.0, 0.25]
    assert PLANS["logistic"]._wired(one.numeric).python  # a one-row request's features in Python floats


def test_a_plan_pickles_without_its_wiring_and_a_coerced_copies_as_its_dict():
    records = [_ROW_KINDS[0](None, i) for i in range(2)]
    cols = codecs.coerce(codecs.decode_mlflow({"dataframe_records": records}, SIG), SIG)
    plan = PLANS["proba"]
    want = plan(cols, 2)
    assert "_wiring" in plan.__dict__
    again = pickle.loads(pickle.dumps(plan))
    assert "_wiring" not in again.__dict__ and again(cols, 2).tobytes() == want.tobytes()
    for other in (pickle.loads(pickle.dumps(cols)), copy.copy(cols), dict(cols)):
        assert list(other) == list(cols) and all(np.array_equal(other[k], cols[k]) for k in ("age", "income"))


def test_a_division_by_zero_keeps_the_one_row_path_off():
    """Python refuses x / 0.0 where numpy gives inf: a step that divides by zero is never run in Python."""
    steps, ok = fastpath._python_steps([("div", np.array([1.0, 0.0]))], 2)
    assert not ok and steps == []
    steps, ok = fastpath._python_steps([("sub", np.array([1.0, 2.0])), ("fill", np.array([0.5, 0.5]))], 2)
    assert ok and [op is None for op, _ in steps] == [False, True]


@pytest.mark.parametrize("n", [1, 2, 100])
def test_the_quick_transposition_is_the_general_one(n):
    """``_records_quick`` (one row: no transposing) gives ``_columnar``'s columns and order, or None."""
    rng = np.random.default_rng(n)
    names = [c.name for c in SIG]
    for kind in range(len(_ROW_KINDS)):
        records = [_ROW_KINDS[kind](rng, i) for i in range(n)]
        for rows in (records, [dict(reversed(list(r.items()))) for r in records], records[:-1] + [[1, 2, 3, 4, 5, 6]],
                     records[:-1] + ["abcdef"]):
            quick = codecs._records_quick(rows, names)
            if quick is None:
                continue
            assert all(type(r) is dict for r in rows)
            cols, order = codecs._columnar(rows, "dataframe_records")
            assert quick == (cols, order)


def _one(record, sig=SIG):
    return codecs.coerce(codecs.decode_mlflow({"dataframe_records": [record]}, sig), sig)


# signatures with the numeric columns before the text ones (the dict is built in order), a lone column of each
# kind, text only, and float columns holding integers numpy has to round (past 2**53) or cannot hold (past 1e308)
_ONE_SIGS = [SIG, [Column("age", "long"), Column("income", "double"), Column("city", "string")],
             [Column("income", "double")], [Column("age", "integer")],
             [Column("income", "double"), Column("score", "float")]]
_ONE_VALUES = [0, 1, -7, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1, -2 ** 53 - 1, 2 ** 60 + 1,
               2 ** 63 - 1, 2 ** 64 + 3, 10 ** 20 + 1, 10 ** 308, 10 ** 400, 0.1, -0.0, 1e-320, 1.7976931348623157e308,
               float("inf"), float("-inf"), float("nan"), None, True, False, "1", [1]]


def test_the_one_row_coerce_is_the_former_one_value_for_value():
    """``_coerce_one`` (checks in C over all columns, a flat array) gives what the former per-value form
    gives: the same columns in the same order, of the same dtype, bits, shape and strides, the same matrix and
    the same Python row, or None for both (the general coerce then answers: the test above compares them)."""
    rng = np.random.default_rng(0)
    records = [_ROW_KINDS[k](rng, i) for k in range(len(_ROW_KINDS)) for i in range(3)]
    cases = [(SIG, r) for r in records]
    for sig in _ONE_SIGS[1:]:
        for v in _ONE_VALUES:
            for w in (_ONE_VALUES[1], v):
                record = {c.name: v if j == 0 else w for j, c in enumerate(sig)}
                record.update({c.name: "nice" for c in sig if c.type == "string"})
                cases.append((sig, record))
    answered = 0
    for sig, record in cases:
        batch = codecs.decode_mlflow({"dataframe_records": [record]}, sig)
        layout = codecs._layout(sig)
        args = (batch.columns, layout[0], layout[5], layout[3], layout[6])
        got, want = codecs._coerce_one(*args), _coerce_one_numpy(*args)
        if want is None:
            assert got is None, record
            continue
        answered += 1
        assert type(got) is Coerced and list(got) == list(want) == [c.name for c in sig], record
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                g = got[k]
                assert (g.dtype, g.shape, g.strides, g.tobytes()) == (v.dtype, v.shape, v.strides, v.tobytes()), k
            else:
                assert got[k] is v
        assert got.numeric is want.numeric and got.distinct is None
        m, w = got.matrix, want.matrix
        assert (m.dtype, m.shape, m.strides, m.tobytes()) == (w.dtype, w.shape, w.strides, w.tobytes())
        assert got._row is not None and repr(got._row) == repr(want.row) and list(map(type, got._row)) == [
            float] * len(want.row)
    assert answered > 40


def test_a_one_row_request_takes_the_one_row_paths():
    """The one-row coerce hands the plan and the OOD check the row's Python floats at once, the binary
    classifier picks its class without a fancy index, and the OOD check looks a category up without a set
    (each fails on the former code)."""
    one = _one(_ROW_KINDS[0](None, 0))
    assert type(one) is Coerced and one._row == [30.0, 15000.0, 0.0, 0.25]  # set by coerce, not read back
    plan = pickle.loads(pickle.dumps(PLANS["logistic"]))
    assert "_picks" not in plan.__dict__
    first = plan(one, 1)
    assert "_picks" in plan.__dict__ and "_picks" not in pickle.loads(pickle.dumps(plan)).__dict__
    first[0] = plan.classes[0] if first[0] == plan.classes[1] else plan.classes[1]  # the caller's to change
    assert plan(one, 1).tolist() != first.tolist()

    class Seen(frozenset):
        looked_up: list = []

        def __contains__(self, v):
            Seen.looked_up.append(v)
            return frozenset.__contains__(self, v)

    quick = QuickOod(CHECKER)
    quick.categories = [(name, Seen(seen)) for name, seen in quick.categories]
    assert quick.flags(one, 1) is None and Seen.looked_up == ["paris", "pro"]
    assert quick.flags({**one, "city": ["berlin"]}, 1) == CHECKER.flags({**one, "city": ["berlin"]}, 1)


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_a_one_row_answer_is_the_matrix_formula_bit_for_bit(plan):
    """Whatever a plan's one-row path does, its answer is ``x @ coef.T + intercept`` then the class (or the
    probabilities / the value) computed as the general path does in numpy, bit for bit, on rows near the
    decision boundary too (scores rounded to a few ulps of 0 would pick differently if the sum were not the
    same)."""
    p = PLANS[plan]
    rng = np.random.default_rng(1)
    for i in range(400):
        record = _ROW_KINDS[1](rng, i) if i % 2 else _ROW_KINDS[0](rng, i)
        try:
            cols = _one(record)
        except Exception:  # noqa: BLE001 - an unseen category under handle_unknown='error': not this test's
            continue
        x = p.features(cols, 1)
        scores = x @ p.coef.T + p.intercept
        got = p(cols, 1)
        if p.kind == "classifier" and p.output == "predict":
            want = p.classes[(scores[:, 0] > 0).astype(np.intp)] if scores.shape[1] == 1 else p.classes[
                scores.argmax(axis=1)]
            # the score the one-row path compares with 0 is the general path's score, to the bit
            assert (x @ p.coef.T).item() + float(p.intercept[0]) == scores[0, 0]
        else:
            want = p(dict(cols), 1)  # a plain dict: the general path
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), record
