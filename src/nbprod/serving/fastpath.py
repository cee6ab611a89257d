"""A compiled predict for the common scikit-learn pipelines: plain numpy, no pandas, no sklearn.

Why: on a one-row request scikit-learn spends ~5 ms in per-call overhead (DataFrame checks,
ColumnTransformer dispatch, input validation), 20× the arithmetic. The pipelines people register
are mostly ``ColumnTransformer(StandardScaler/SimpleImputer + OneHotEncoder) → linear model``,
which is a few vectorised numpy operations once the fitted parameters are read out.

:func:`compile_estimator` walks a fitted estimator and returns a :class:`Plan` (numpy arrays and
lists only, so it pickles and unpickles without importing scikit-learn — the server's start-up
cache relies on that). It raises :class:`Unsupported` for anything it does not know; the caller
then keeps the plain pyfunc path. A plan is only used after :func:`equivalent` confirmed it gives
the same answers as the estimator itself on sample rows.

Supported: Pipeline; ColumnTransformer (named/indexed columns, ``drop``/``passthrough``
remainder); StandardScaler, MinMaxScaler, MaxAbsScaler, SimpleImputer (numeric), OneHotEncoder
(``drop=None``, no infrequent categories, ``handle_unknown`` ignore/error, also after a
SimpleImputer on strings); final LogisticRegression (predict, predict_proba) and linear regressors
/ classifiers exposing ``coef_``/``intercept_`` (predict).

A text column may also be given as :class:`~nbprod.data.ood.Coded` (codes into a few labels): a batch
job's parquet column. Each label is then looked up once and the rows one-hot encoded at once, with
the same answers as the per-row form a request's list takes.

A request's columns come from :func:`~nbprod.serving.codecs.coerce` as a
:class:`~nbprod.serving.codecs.Coerced` (the numeric columns also as one matrix): the plan then reads
them through :class:`_Wired` (a block in one copy, every one-hot column in one ``put``, one row in
Python floats), with the same values bit for bit, and falls back to the column-by-column form for
anything unusual.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from ..data.ood import Coded
from .codecs import Coerced

__all__ = ["Plan", "Unsupported", "UnknownCategory", "compile_estimator", "equivalent"]


class Unsupported(Exception):
    """The estimator contains a step the fast path cannot compile (the pyfunc path is used)."""


class UnknownCategory(ValueError):
    """A category the model's OneHotEncoder rejects (``handle_unknown='error'``)."""

    def __init__(self, column: str, value: Any) -> None:
        super().__init__(f"column {column!r}: category {value!r} was not seen in training")
        self.column = column
        self.value = value


# --- steps ------------------------------------------------------------------------------------
# A numeric step is (op, array): "fill" replaces NaN, "sub"/"div"/"mul"/"add" are elementwise, in
# the same order scikit-learn applies them (so results match bit for bit in most cases).


def _numeric_steps(est: Any) -> list[tuple[str, np.ndarray]]:
    name = type(est).__name__
    if name == "StandardScaler":
        steps = []
        if est.mean_ is not None and est.with_mean:
            steps.append(("sub", np.asarray(est.mean_, dtype=np.float64)))
        if est.scale_ is not None and est.with_std:
            steps.append(("div", np.asarray(est.scale_, dtype=np.float64)))
        return steps
    if name == "MinMaxScaler":
        if getattr(est, "clip", False):
            raise Unsupported("MinMaxScaler(clip=True)")
        return [("mul", np.asarray(est.scale_, dtype=np.float64)), ("add", np.asarray(est.min_, dtype=np.float64))]
    if name == "MaxAbsScaler":
        return [("div", np.asarray(est.scale_, dtype=np.float64))]
    if name == "SimpleImputer":
        if getattr(est, "add_indicator", False):
            raise Unsupported("SimpleImputer(add_indicator=True)")
        mv = est.missing_values
        if not (isinstance(mv, float) and np.isnan(mv)) and mv is not None:
            raise Unsupported("SimpleImputer with a non-NaN missing_values")
        stats = np.asarray(est.statistics_)
        if stats.dtype.kind not in "fiu":
            raise Unsupported("SimpleImputer on non-numeric data")
        if np.isnan(stats.astype(np.float64)).any():
            raise Unsupported("SimpleImputer that drops all-missing columns")
        return [("fill", stats.astype(np.float64))]
    if name == "FunctionTransformer" and est.func is None:
        return []
    raise Unsupported(f"{name} is not compiled by the fast path")


def _apply_numeric(x: np.ndarray, steps: list[tuple[str, np.ndarray]]) -> np.ndarray:
    for op, a in steps:
        if op == "fill":
            mask = np.isnan(x)
            if mask.any():
                x = np.where(mask, a, x)
        elif op == "sub":
            x = x - a
        elif op == "div":
            x = x / a
        elif op == "mul":
            x = x * a
        elif op == "add":
            x = x + a
    return x


def _apply_numeric_into(x: np.ndarray, steps: list[tuple[str, np.ndarray]]) -> None:
    """:func:`_apply_numeric` written into ``x`` itself (a view of the feature matrix): the same ufuncs on
    the same operands, so the same values, without a temporary array per step."""
    for op, a in steps:
        if op == "fill":
            mask = np.isnan(x)
            if mask.any():
                np.copyto(x, a, where=mask)
        elif op == "sub":
            np.subtract(x, a, out=x)
        elif op == "div":
            np.divide(x, a, out=x)
        elif op == "mul":
            np.multiply(x, a, out=x)
        elif op == "add":
            np.add(x, a, out=x)


@dataclass
class Block:
    """One ColumnTransformer branch: numeric (steps on a float matrix) or one-hot."""

    kind: str  # "num" | "ohe"
    columns: list[str]
    steps: list[tuple[str, np.ndarray]] = field(default_factory=list)
    fill: list[Any] | None = None  # ohe: per-column constant for missing values (imputer before it)
    lookup: list[dict] = field(default_factory=list)  # ohe: per column, category -> index
    nan_index: list[int | None] = field(default_factory=list)
    unknown_error: bool = False
    width: int = 0


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _ohe_block(columns: list[str], enc: Any, fill: list[Any] | None) -> Block:
    if getattr(enc, "drop_idx_", None) is not None:
        raise Unsupported("OneHotEncoder(drop=...)")
    if getattr(enc, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories")
    if enc.handle_unknown not in ("ignore", "error"):
        raise Unsupported(f"OneHotEncoder(handle_unknown={enc.handle_unknown!r})")
    lookup, nan_index, width = [], [], 0
    for cats in enc.categories_:
        table, nan_at = {}, None
        for i, c in enumerate(cats.tolist()):
            if _is_missing(c):
                nan_at = width + i
            else:
                table[c] = width + i
        lookup.append(table)
        nan_index.append(nan_at)
        width += len(cats)
    return Block("ohe", columns, fill=fill, lookup=lookup, nan_index=nan_index,
                 unknown_error=enc.handle_unknown == "error", width=width)


def _branch(columns: list[str], est: Any) -> Block:
    """Compile one ColumnTransformer branch (a transformer or a Pipeline of them)."""
    if est == "passthrough":
        return Block("num", columns, width=len(columns))
    steps = list(est.steps) if type(est).__name__ == "Pipeline" else [(None, est)]
    numeric: list[tuple[str, np.ndarray]] = []
    fill = None
    for i, (_, step) in enumerate(steps):
        if step is None or step == "passthrough":
            continue
        name = type(step).__name__
        if name == "OneHotEncoder":
            if numeric or i != len(steps) - 1:
                raise Unsupported("OneHotEncoder must be the last step of its branch")
            return _ohe_block(columns, step, fill)
        if name == "SimpleImputer" and np.asarray(step.statistics_).dtype.kind not in "fiu":
            if getattr(step, "add_indicator", False) or not _is_missing(step.missing_values):
                raise Unsupported("string SimpleImputer with indicator or custom missing value")
            fill = list(np.asarray(step.statistics_).tolist())
            continue
        numeric.extend(_numeric_steps(step))
    if fill is not None:
        raise Unsupported("string SimpleImputer not followed by a OneHotEncoder")
    return Block("num", columns, steps=numeric, width=len(columns))


def _column_transformer(ct: Any) -> list[Block]:
    names_in = getattr(ct, "feature_names_in_", None)
    if names_in is None:
        raise Unsupported("ColumnTransformer fitted without column names")
    indices = getattr(ct, "_transformer_to_input_indices", None)
    if indices is None:
        raise Unsupported("this scikit-learn version's ColumnTransformer")
    blocks = []
    for name, est, _cols in ct.transformers_:
        idx = list(indices.get(name, []))
        if est == "drop" or not idx:
            continue
        blocks.append(_branch([str(names_in[i]) for i in idx], est))
    return blocks


@dataclass
class Plan:
    """A compiled estimator: input columns → feature matrix → linear output."""

    columns: list[str]  # input columns it reads
    blocks: list[Block]
    post: list[tuple[str, np.ndarray]]  # numeric steps on the whole feature matrix
    coef: np.ndarray  # (n_outputs, n_features)
    intercept: np.ndarray  # (n_outputs,)
    kind: str  # "classifier" | "regressor"
    classes: np.ndarray | None
    output: str  # "predict" | "predict_proba"
    description: str = ""

    def features(self, cols: dict[str, Any], n: int) -> np.ndarray:
        """The feature matrix (n rows) the final linear model sees."""
        if type(cols) is Coerced:  # the request path's columns: the numeric ones also as one matrix
            wired = self._wired(cols.numeric)
            if wired is not None:
                x = wired.features(self, cols, n)
                if x is not None:
                    return x
        width = sum(b.width for b in self.blocks)
        x = np.zeros((n, width), dtype=np.float64)
        at = 0
        for b in self.blocks:
            if b.kind == "num":  # the columns straight into their place in x, the steps applied there
                view = x[:, at:at + b.width]
                for j, c in enumerate(b.columns):
                    values = cols[c]
                    if not (isinstance(values, np.ndarray) and values.dtype.kind in "fiu"):
                        values = np.asarray(values, dtype=np.float64)  # a list: None is NaN
                    view[:, j] = values
                _apply_numeric_into(view, b.steps)
            else:
                _one_hot(x, at, b, cols, n)
            at += b.width
        return _apply_numeric(x, self.post) if self.post else x

    def _wired(self, numeric: tuple) -> _Wired | None:
        """The plan's reading of a :class:`Coerced` with these numeric columns (None: it has not all of its
        numeric blocks' columns), made once per signature and kept out of the pickle."""
        cache = self.__dict__.get("_wiring")
        if cache is None or cache[0] is not numeric:
            cache = self.__dict__["_wiring"] = (numeric, _Wired.of(self, numeric))
        return cache[1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_wiring", None)
        state.pop("_picks", None)
        return state

    def __call__(self, cols: dict[str, Any], n: int) -> np.ndarray:
        x = self.features(cols, n)
        if n == 1 and self.kind == "classifier" and self.output == "predict" and self.coef.shape[0] == 1:
            return self._pick_one(x)
        scores = x @ self.coef.T + self.intercept
        if self.kind == "regressor":
            return scores.ravel() if scores.shape[1] == 1 else scores
        if self.output == "predict_proba":
            if scores.shape[1] == 1:
                p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
                proba = np.empty((len(p), 2))  # np.column_stack([1 - p, p]), without its per-call checks
                np.subtract(1.0, p, out=proba[:, 0])
                proba[:, 1] = p
                return proba
            scores = scores - scores.max(axis=1, keepdims=True)
            e = np.exp(scores)
            return e / e.sum(axis=1, keepdims=True)
        assert self.classes is not None, "compile_estimator() gives every classifier plan its classes"
        if scores.shape[1] == 1:
            if n == 1:  # one row: the same class, without three numpy calls
                return self.classes[[1 if scores[0, 0] > 0 else 0]]
            return self.classes[(scores[:, 0] > 0).astype(np.intp)]
        return self.classes[scores.argmax(axis=1)]


    def _pick_one(self, x: np.ndarray) -> np.ndarray:
        """The class of a binary classifier's one row: ``classes[[score > 0]]`` with the score as the general
        path has it — the same matmul (``x @ coef.T``, a dot product of one row), then the intercept added
        in Python: one IEEE double addition, as numpy's add of two float64 values — and the class as a
        copy of a one-element array made once (a fancy index and a numpy add fewer per request)."""
        picks = self.__dict__.get("_picks")
        if picks is None:
            assert self.classes is not None, "compile_estimator() gives every classifier plan its classes"
            picks = self.__dict__["_picks"] = (self.coef.T, float(self.intercept[0]), self.classes[[0]],
                                               self.classes[[1]])
        coef_t, intercept, negative, positive = picks
        score = (x @ coef_t).item() + intercept
        return (positive if score > 0 else negative).copy()  # a copy: the answer is the caller's to keep


def _one_hot(x: np.ndarray, at: int, b: Block, cols: dict[str, Any], n: int) -> None:
    """Set the one-hot slots of block ``b`` (its first feature at ``at``) in ``x``, column by column."""
    for j, c in enumerate(b.columns):
        table, nan_at = b.lookup[j], b.nan_index[j]
        values = cols[c]
        if isinstance(values, Coded):
            _one_hot_coded(x, at, b, j, c, values)
            continue
        rows: Any = range(n)
        if type(values) is list and n > 1:  # the seen categories at once; the rest one by one below
            try:
                found = np.fromiter(map(table.get, values, repeat(-1)), dtype=np.intp, count=n)
            except TypeError:  # an unhashable value: every row below
                found = None
            if found is not None:
                seen = found >= 0
                if seen.all():
                    x[np.arange(n), at + found] = 1.0
                    rows = ()
                else:
                    hit = np.flatnonzero(seen)
                    x[hit, at + found[hit]] = 1.0
                    rows = np.flatnonzero(~seen).tolist()
        for r in rows:
            v = values[r]
            if _is_missing(v):
                if b.fill is not None:
                    v = b.fill[j]
                elif nan_at is not None:
                    x[r, at + nan_at] = 1.0
                    continue
            k = table.get(v)
            if k is None and v is not None:
                k = table.get(_plain(v))
            if k is not None:
                x[r, at + k] = 1.0
            elif b.unknown_error:
                raise UnknownCategory(c, v)


# on two floats (the one-row path has nothing else) each is float.__sub__, ... itself: the same IEEE operation,
# called without a slot wrapper (a fifth of the one-row features' instructions)
_PY_OPS = {"sub": operator.sub, "div": operator.truediv, "mul": operator.mul, "add": operator.add}


class _Wired:
    """How a :class:`Plan` reads a :class:`~nbprod.serving.codecs.Coerced` (the request path's columns).

    Why: :meth:`Plan.features` copies the numeric columns into the feature matrix one numpy call per
    column, applies each step on a strided view of it and one-hot encodes column by column: about a
    microsecond per numpy call, most of the plan's cost on a request. Here a numeric block is taken
    from the request's matrix in one copy and its steps run on that contiguous copy (the same ufuncs on
    the same operands: the same values), every one-hot column is looked up in C (``itemgetter``) and set
    in one ``put``, and a one-row request's features are computed in plain Python floats — the same
    IEEE operations (subtract, divide, ...) on the same float64 values, so the same bits — and made
    into the (1, width) matrix at once. Anything else (a :class:`~nbprod.data.ood.Coded` column, a
    missing or unseen category, a division by zero that Python would refuse) returns None: the
    general path of :meth:`Plan.features` then does it.
    """

    def __init__(self, width: int, parts: list[tuple[int, Block, Any, list, list]], python: bool,
                 post: list[tuple[Any, list]], ohe: list[tuple[str, dict]]) -> None:
        self.width = width
        # numeric blocks: (first feature, block, its rows of the request matrix (a slice or a list),
        # its steps with one operand per row, its steps in Python floats)
        self.parts = parts
        self.python = python  # may a one-row request be computed in Python floats?
        self.post = post
        self.ohe = ohe  # every one-hot column: (name, category -> its feature's index in x)

    @classmethod
    def of(cls, plan: Plan, numeric: tuple) -> _Wired | None:
        where = {name: j for j, name in enumerate(numeric)}
        parts: list[tuple[int, Block, Any, list, list]] = []
        ohe: list[tuple[str, dict]] = []
        python, at = True, 0
        for b in plan.blocks:
            if b.kind == "num":
                if any(c not in where for c in b.columns):
                    return None
                rows = [where[c] for c in b.columns]
                if rows and rows == list(range(rows[0], rows[0] + len(rows))):
                    take: Any = slice(rows[0], rows[0] + len(rows))
                else:
                    take = rows
                by_row = [(op, a[:, None] if a.ndim == 1 else a) for op, a in b.steps]  # blocks are (columns, n)
                steps, ok = _python_steps(b.steps, b.width)
                python = python and ok
                parts.append((at, b, take, by_row, steps))
            else:
                for j, c in enumerate(b.columns):
                    ohe.append((c, {k: at + i for k, i in b.lookup[j].items()}))
            at += b.width
        post, ok = _python_steps(plan.post, at)
        return cls(at, parts, python and ok, post, ohe)

    def features(self, plan: Plan, cols: Any, n: int) -> np.ndarray | None:
        """The feature matrix :meth:`Plan.features` gives, or None when this request needs the general path."""
        texts = []
        for c, _ in self.ohe:
            values = cols[c]
            if type(values) is not list or len(values) != n:
                return None
            texts.append(values)
        if n == 1 and self.python:
            return self._one_row(cols, texts)
        found: Any = None
        if self.ohe:  # every one-hot column's feature index per row; a KeyError: missing or unseen somewhere
            indices: list[int] = []
            try:
                for (_, table), values in zip(self.ohe, texts, strict=True):
                    if n == 1:
                        indices.append(table[values[0]])
                    else:
                        indices += itemgetter(*values)(table)
            except (KeyError, TypeError):  # unseen, missing or unhashable: the general path's rules, row by row
                return None
            found = np.fromiter(indices, dtype=np.intp, count=len(indices))
        x = np.zeros((n, self.width), dtype=np.float64)
        matrix = cols.matrix
        for at, b, take, by_row, _ in self.parts:  # the block as contiguous rows (a copy): its steps run there
            block = np.array(matrix[take], dtype=np.float64)
            _apply_numeric_into(block, by_row)
            x[:, at:at + b.width] = block.T
        if found is not None:
            by_row = found.reshape(len(texts), n)  # a view: each one-hot column's indices, row by row
            by_row += np.arange(0, n * self.width, self.width, dtype=np.intp)  # + each row's start in x
            x.put(found, 1.0)
        return _apply_numeric(x, plan.post) if plan.post else x

    def _one_row(self, cols: Any, texts: list[list]) -> np.ndarray | None:
        feats = [0.0] * self.width
        row = cols.row
        for at, b, take, _, steps in self.parts:
            values = row[take] if type(take) is slice else [row[i] for i in take]
            for op, operands in steps:
                if op is None:  # fill: NaN is the only value unequal to itself
                    values = [f if v != v else v for v, f in zip(values, operands, strict=True)]
                else:
                    values = list(map(op, values, operands))
            feats[at:at + b.width] = values
        for (_, table), values in zip(self.ohe, texts, strict=True):
            k = table.get(values[0])  # coerce checked a string column: a str or None
            if k is None:
                return None  # missing or unseen: the general path's rules
            feats[k] = 1.0
        for op, operands in self.post:
            if op is None:
                feats = [f if v != v else v for v, f in zip(feats, operands, strict=True)]
            else:
                feats = list(map(op, feats, operands))
        return np.array([feats], dtype=np.float64)


def _python_steps(steps: list[tuple[str, np.ndarray]], width: int) -> tuple[list[tuple[Any, list]], bool]:
    """Numeric steps as (float operator or None for fill, Python floats); False when Python would differ
    from numpy (a division by zero raises in Python) or an operand is not one float64 per feature."""
    out: list[tuple[Any, list]] = []
    for op, a in steps:
        if a.shape != (width,) or a.dtype != np.float64:
            return [], False
        operands = a.tolist()
        if op == "div" and 0.0 in operands:
            return [], False
        out.append((None if op == "fill" else _PY_OPS[op], operands))
    return out, True


def _slot(b: Block, j: int, v: Any) -> tuple[int | None, Any]:
    """The one-hot index (within the block) of one value of the block's column ``j``, and the value
    looked up (a missing one replaced by the imputer's fill): the per-row rules of :meth:`Plan.features`."""
    if _is_missing(v):
        if b.fill is not None:
            v = b.fill[j]
        elif b.nan_index[j] is not None:
            return b.nan_index[j], v
    k = b.lookup[j].get(v)
    if k is None and v is not None:
        k = b.lookup[j].get(_plain(v))
    return k, v


def _one_hot_coded(x: np.ndarray, at: int, b: Block, j: int, column: str, values: Coded) -> None:
    """One-hot a column given as codes into a few labels (a batch job's dictionary-encoded text column):
    each label is looked up once, by the same rules as a row's value, and every row's slot is set at
    once. Why: a Python step per row made the plan 3× slower than scikit-learn on 250,000 rows."""
    found = [_slot(b, j, v) for v in values.labels] + [_slot(b, j, None)]  # code -1 (missing): the last
    index = np.array([-1 if k is None else k for k, _ in found], dtype=np.intp)[values.codes]
    hit = index >= 0
    if b.unknown_error and not hit.all():
        first = int(np.flatnonzero(~hit)[0])
        raise UnknownCategory(column, found[values.codes[first]][1])
    rows = np.flatnonzero(hit)
    x[rows, at + index[rows]] = 1.0


def _plain(v: Any) -> Any:
    """Python value of a numpy scalar / numeric string so dict lookups match categories_."""
    if hasattr(v, "item"):
        return v.item()
    return v


_LINEAR_MODULE = "sklearn.linear_model"


def compile_estimator(est: Any, output: str = "predict") -> Plan:
    """Compile a fitted estimator into a :class:`Plan`, or raise :class:`Unsupported`."""
    if output not in ("predict", "predict_proba"):
        raise Unsupported(f"pyfunc predict_fn {output!r}")
    named: list[tuple[Any, Any]] = list(est.steps) if type(est).__name__ == "Pipeline" else [(None, est)]
    steps = [s for _, s in named if s is not None and s != "passthrough"]
    if not steps:
        raise Unsupported("empty pipeline")
    final, transforms = steps[-1], steps[:-1]
    if not type(final).__module__.startswith(_LINEAR_MODULE) or not hasattr(final, "coef_"):
        raise Unsupported(f"final estimator {type(final).__name__} is not a linear model")
    blocks: list[Block] | None = None
    post: list[tuple[str, np.ndarray]] = []
    for i, step in enumerate(transforms):
        if type(step).__name__ == "ColumnTransformer":
            if i != 0:
                raise Unsupported("ColumnTransformer after another step")
            blocks = _column_transformer(step)
        else:
            post.extend(_numeric_steps(step))
    if blocks is None:
        names = getattr(transforms[0] if transforms else final, "feature_names_in_", None)
        if names is None:
            raise Unsupported("estimator fitted without column names")
        blocks = [Block("num", [str(c) for c in names], width=len(names))]
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(final.intercept_, dtype=np.float64))
    classes = getattr(final, "classes_", None)
    kind = "classifier" if classes is not None else "regressor"
    if output == "predict_proba" and type(final).__name__ != "LogisticRegression":
        raise Unsupported(f"predict_proba of {type(final).__name__}")
    if classes is not None and coef.shape[0] == 1 and len(classes) != 2:  # i.e. kind == "classifier"
        raise Unsupported("one-vs-rest classifier layout")
    if sum(b.width for b in blocks) != coef.shape[1]:
        raise Unsupported("feature count mismatch")
    columns: list[str] = []
    for b in blocks:
        columns.extend(c for c in b.columns if c not in columns)
    desc = " → ".join([type(s).__name__ for s in transforms] + [type(final).__name__]) + f".{output}"
    return Plan(columns, blocks, post, coef, intercept, kind, None if classes is None else np.asarray(classes),
                output, desc)


def equivalent(plan: Plan, expected: np.ndarray, cols: dict[str, Any], n: int) -> tuple[bool, str]:
    """Does ``plan`` reproduce ``expected`` (the estimator's own output) on these rows?"""
    try:
        got = plan(cols, n)
    except Exception as exc:  # noqa: BLE001 - any failure means "not equivalent"
        return False, f"fast path raised {type(exc).__name__}: {exc}"
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return False, f"shape {got.shape} != {expected.shape}"
    if expected.dtype.kind in "fc":
        if not np.allclose(got, expected, rtol=1e-7, atol=1e-9):
            return False, f"max abs difference {np.max(np.abs(got - expected)):.3g}"
        return True, "ok"
    if not np.array_equal(got.astype(object), expected.astype(object)):
        return False, f"{int((got.astype(object) != expected.astype(object)).sum())} labels differ"
    return True, "ok"
