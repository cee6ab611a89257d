"""Request and response codecs: MLflow's scoring protocol and the Open Inference Protocol v2.

Both protocols decode into the same thing, a :class:`Batch`: ``{column: values}`` plus a row
count and MLflow ``params``. Columns are then cast to the model signature by :func:`coerce`, which
is where a wrong or missing column becomes a 400 naming it. Nothing here imports pandas: the fast
path never needs a DataFrame, so a one-row request costs microseconds to decode.

MLflow formats (``POST /invocations``, as ``mlflow models serve`` accepts them):
``{"dataframe_split": {"columns": [...], "data": [[...]]}}``, ``{"dataframe_records": [{...}]}``,
``{"instances": [...]}``, ``{"inputs": [...] or {...}}`` (each optionally with ``"params"``), and
``text/csv`` with a header row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from array import array
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from ..errors import ServingError

try:  # a C JSON parser/encoder: 4-5x the stdlib's speed on a 100-row body (BENCHMARKS.md, Serving)
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the stdlib does the same, slower
    _orjson = None  # type: ignore[assignment]

__all__ = ["http_error", "Batch", "Column", "parse_json", "decode_mlflow", "decode_csv", "decode_v2", "coerce",
           "Coerced", "to_jsonable", "encode_v2_outputs", "dumps", "dumps_answer"]

_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_DOCS = "see https://mlflow.org/docs/latest/deployment/deploy-model-locally (scoring protocol)"


@dataclass
class Column:
    """One input column of the model signature."""

    name: str
    type: str | None  # MLflow type: double, float, long, integer, string, boolean, datetime, binary
    required: bool = True


@dataclass
class Batch:
    """A decoded request: columns of equal length ``n``, and MLflow params."""

    columns: dict[str, Any]
    n: int
    params: dict = field(default_factory=dict)
    order: list[str] | None = None  # column order as sent (for models without a signature)


def http_error(message: str, fix: str, status: int = 400, error: str = "bad_request") -> ServingError:
    return ServingError(message, fix, status=status, code=error)


def _reject_constant(name: str):
    raise http_error(f"the JSON body contains {name}, which is not valid JSON and not a usable number",
                     "send finite numbers; use null for a missing value", error="invalid_number")


#: One decoder for every request (``json.loads`` with a keyword builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity and says what is wrong with a bad body."""
    if not body.strip():
        raise http_error("the request body is empty", "send a JSON object, e.g. {\"dataframe_records\": [{...}]}",
                         error="empty_body")
    if _orjson is not None:
        # orjson reads strict UTF-8 RFC 8259 JSON into the same objects as the stdlib (except an integer past
        # 64 bits: a float, which an integer column refuses as out of range all the same); whatever it refuses
        # (NaN, a lone surrogate, UTF-16, a BOM, a number past float64, bad JSON) goes on to the stdlib
        # decoder below, which reads it or names the problem exactly as before.
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass
    try:
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))  # json.loads, one decoder
    except ServingError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise http_error(f"the request body is not valid JSON: {exc}", "send a JSON object encoded as UTF-8",
                         error="invalid_json") from None
    except RecursionError:
        raise http_error("the JSON body is nested too deeply", "send a flat table of rows",
                         error="invalid_json") from None


def _columnar(records: list, fmt: str) -> tuple[dict[str, list], list[str]]:
    cols: dict[str, list] = {}
    n = len(records)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise http_error(f"{fmt}[{i}] is a {type(rec).__name__}, not an object of column: value",
                             f"send {fmt} as a list of objects like {{\"age\": 42, ...}}", error="wrong_shape")
        for k, v in rec.items():
            col = cols.get(k)
            if col is None:
                col = cols[k] = [None] * n
            col[i] = v
    return cols, list(cols)


def _records_quick(records: list, names: list[str],
                   getter: Any = None) -> tuple[dict[str, list], list[str]] | None:
    """:func:`_columnar` for the usual request — every row an object with exactly the signature's
    columns — transposed in C (``itemgetter`` and ``zip``) instead of value by value. None otherwise
    (a missing or extra column, a row that is not an object): :func:`_columnar` then does it and
    keeps every column sent (another version may use one this one does not). ``getter``:
    ``itemgetter(*names)``, made once per signature by the caller."""
    if len(records) == 1:  # one row: no transposing at all
        rec = records[0]
        if type(rec) is not dict or len(rec) != len(names):
            return None
        try:
            return {name: [rec[name]] for name in names}, list(rec)
        except KeyError:
            return None
    if not records or set(map(type, records)) != {dict} or set(map(len, records)) != {len(names)}:
        return None
    try:
        rows = list(map(getter or itemgetter(*names), records))
    except KeyError:
        return None
    if len(names) == 1:
        return {names[0]: rows}, list(records[0])
    return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True)), list(records[0])


def _check_unique(names: list, fmt: str) -> None:
    seen: set = set()
    for name in names:
        if name in seen:
            raise http_error(f"{fmt} names column {name!r} more than once",
                             f"send each column once; rename or drop the repeated {name!r}", error="duplicate_column")
        seen.add(name)


def _from_rows(rows: list, names: list[str], fmt: str) -> dict[str, list]:
    _check_unique(names, fmt)
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise http_error(f"{fmt} row {i} has {got} values but there are {width} columns",
                             f"send one value per column, in the order {names[:5]}{'…' if width > 5 else ''}",
                             error="wrong_shape")
    return {name: [row[j] for row in rows] for j, name in enumerate(names)}


def _from_dict_of_lists(d: dict, fmt: str) -> tuple[dict[str, list], int]:
    cols, n = {}, None
    for k, v in d.items():
        v = v if isinstance(v, list) else [v]
        if n is not None and len(v) != n:
            raise http_error(f"{fmt}: column {k!r} has {len(v)} values, others have {n}",
                             "send the same number of values for every column", error="wrong_shape")
        n = len(v)
        cols[k] = v
    return cols, n or 0


def decode_mlflow(payload: Any, signature: list[Column] | None) -> Batch:
    """Decode any of MLflow's four JSON formats (plus ``params``) into a :class:`Batch`."""
    if not isinstance(payload, dict):
        raise http_error(f"the JSON body is a {type(payload).__name__}, not an object",
                         f"wrap the data in one of {', '.join(_FORMATS)}; {_DOCS}", error="unknown_format")
    keys = [k for k in payload if k in _FORMATS]
    extra = [k for k in payload if k not in _FORMATS and k != "params"]
    if len(keys) != 1 or extra:
        found = ", ".join(map(repr, payload)) or "nothing"
        raise http_error(f"the JSON body must have exactly one of {', '.join(_FORMATS)} (found {found})",
                         f"e.g. {{\"dataframe_split\": {{\"columns\": [...], \"data\": [[...]]}}}}; {_DOCS}",
                         error="unknown_format")
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise http_error("params must be an object", "send params as {\"name\": value}", error="wrong_shape")
    fmt = keys[0]
    data = payload[fmt]
    names = _layout(signature)[6] if signature else None
    if fmt == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise http_error("dataframe_split must be an object with a \"data\" list (and \"columns\")",
                             "send {\"dataframe_split\": {\"columns\": [...], \"data\": [[...], ...]}}",
                             error="wrong_shape")
        rows = data["data"]
        cols_sent = data.get("columns", names)
        if cols_sent is None:
            raise http_error("dataframe_split has no \"columns\" and the model has no signature",
                             "add \"columns\": [...] naming each value of a row", error="missing_column")
        if not isinstance(cols_sent, list) or not all(isinstance(c, str) for c in cols_sent):
            raise http_error("dataframe_split.columns must be a list of column names", "send column names as strings",
                             error="wrong_shape")
        cols, order = _from_rows(rows, cols_sent, "dataframe_split"), list(cols_sent)
        n = len(rows)
    elif fmt == "dataframe_records":
        if not isinstance(data, list):
            raise http_error("dataframe_records must be a list of row objects", "send [{\"col\": value, ...}, ...]",
                             error="wrong_shape")
        quick = _records_quick(data, names, _layout(signature)[7]) if names else None  # type: ignore[arg-type]
        cols, order = quick if quick is not None else _columnar(data, fmt)
        n = len(data)
    else:  # instances / inputs
        if isinstance(data, dict):
            cols, n = _from_dict_of_lists(data, fmt)
            order = list(cols)
        elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            cols, order = _columnar(data, fmt)
            n = len(data)
        elif isinstance(data, list) and data and all(isinstance(r, list) for r in data):
            if names is None:
                raise http_error(f"{fmt} rows are lists but the model has no signature to name their columns",
                                 f"send {fmt} as a list of objects {{\"col\": value}}", error="missing_column")
            cols, order, n = _from_rows(data, names, fmt), list(names), len(data)
        elif isinstance(data, list) and not data:
            cols, order, n = {}, [], 0
        else:
            raise http_error(f"{fmt} must be a list of rows (objects or lists) or an object of columns",
                             f"send {{\"{fmt}\": [{{\"col\": value, ...}}]}}", error="wrong_shape")
    if n == 0:
        raise http_error("the request holds no rows", "send at least one row", error="empty_batch")
    return Batch(cols, n, params, order)


CSV_MEMORY_FACTOR = 8
"""A CSV request whose decoded columns would take more than this many times its body size (and more
than :data:`CSV_MEMORY_FLOOR`) is refused with 413 before it is parsed."""
CSV_MEMORY_FLOOR = 16 * 1024 * 1024
_STR_CELL = 64  # bytes a short Python str costs in a list (object header + pointer), beyond its characters
_EXACT_FLOAT = 2.0 ** 53
_DISTINCT = 4096  # distinct values per text column shared as one object each; more are kept as they come


def _csv_estimate(text: str, header: list[str], numeric: set[str]) -> int:
    """Bytes the decoded columns will take: 8 per number, a Python str for every other cell."""
    rows = text.count("\n") + 1
    width = max(len(header), 1)
    others = width - len(numeric)
    chars_per_cell = len(text) / (rows * width)
    return int(rows * (8 * len(numeric) + others * (_STR_CELL + chars_per_cell)))


def decode_csv(body: bytes, signature: list[Column] | None = None) -> Batch:
    """``text/csv`` with a header row, decoded row by row into one column at a time.

    Memory is bounded by the body, not by Python objects per cell: the columns the signature
    declares numeric are parsed straight into float64 arrays (8 bytes a value); every other cell
    stays a string (``""`` = missing; a repeated value is one shared object) until :func:`coerce`
    casts it. A value a numeric column cannot
    hold exactly (text, an integer past 2**53) turns that column back into strings, so
    :func:`coerce` names the problem as it does for JSON. The decoded size is estimated from the
    header and the line count first: above ``CSV_MEMORY_FACTOR`` × the body (and 16 MB) the request
    is refused with 413 before anything is parsed.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise http_error("the CSV body is not UTF-8", "send UTF-8 text/csv", error="invalid_csv") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next((r for r in reader if r), None)
        if header is None:
            raise http_error("the CSV body holds no data rows", "send a header row and at least one data row",
                             error="empty_batch")
        _check_unique(header, "csv")
        types = {c.name: c.type for c in signature or []}
        numeric = {name for name in header if types.get(name) in _FLOAT or types.get(name) in _INT}
        estimate = _csv_estimate(text, header, numeric)
        if estimate > max(CSV_MEMORY_FACTOR * len(body), CSV_MEMORY_FLOOR):
            raise http_error(f"the CSV body would take about {estimate // 2**20} MB to decode "
                             f"({CSV_MEMORY_FACTOR}× its {len(body) // 1024} KB is the limit): "
                             "too many short text values",
                             "send fewer rows per request", status=413, error="csv_too_large")
        width = len(header)
        arrays: list[Any] = [array("d") if name in numeric else [] for name in header]
        seen: list[dict] = [{} for _ in header]  # one str object per distinct value (categories repeat)
        n = 0
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise http_error(f"csv row {n} has {len(row)} values but there are {width} columns",
                                 f"send one value per column, in the order {header[:5]}{'…' if width > 5 else ''}",
                                 error="wrong_shape")
            for j, v in enumerate(row):
                col = arrays[j]
                if type(col) is list:
                    known = seen[j]
                    if v == "":
                        col.append(None)
                    elif len(known) < _DISTINCT:
                        col.append(known.setdefault(v, v))
                    else:
                        col.append(v)
                    continue
                try:
                    x = float(v) if v != "" else math.nan
                    if abs(x) >= _EXACT_FLOAT and x != math.inf and x != -math.inf:
                        raise ValueError  # keep the text: an exact big integer, or coerce's message
                    col.append(x)
                except ValueError:
                    arrays[j] = col = [None if x != x else repr(x) for x in col]
                    col.append(v if v != "" else None)
            n += 1
    except csv.Error as exc:
        raise http_error(f"the CSV body cannot be parsed: {exc}", "send a header row, then one row per line",
                         error="invalid_csv") from None
    if n == 0:
        raise http_error("the CSV body holds no data rows", "send a header row and at least one data row",
                         error="empty_batch")
    cols = {name: (np.frombuffer(col, dtype=np.float64) if isinstance(col, array) else col)
            for name, col in zip(header, arrays, strict=True)}
    return Batch(cols, n, {}, header)


_V2_TYPES = {"BOOL": "boolean", "BYTES": "string", "FP16": "float", "FP32": "float", "FP64": "double",
             "INT8": "long", "INT16": "long", "INT32": "long", "INT64": "long",
             "UINT8": "long", "UINT16": "long", "UINT32": "long", "UINT64": "long"}


def _flatten(data: Any) -> list:
    if isinstance(data, list) and data and isinstance(data[0], list):
        out: list = []
        for d in data:
            out.extend(_flatten(d))
        return out
    return data if isinstance(data, list) else [data]


def decode_v2(payload: Any, signature: list[Column] | None) -> tuple[Batch, str | None]:
    """Open Inference Protocol v2 request → (:class:`Batch`, request id).

    Either one input tensor per column (``name`` = column, shape ``[n]`` or ``[n, 1]``), or one
    ``[n, k]`` tensor whose k values per row follow the signature's column order.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise http_error("an inference request needs a non-empty \"inputs\" list",
                         "send {\"inputs\": [{\"name\": ..., \"shape\": [n], \"datatype\": \"FP64\", "
                         "\"data\": [...]}]}",
                         error="wrong_shape")
    req_id = payload.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise http_error(f"the request \"id\" is a {type(req_id).__name__}, not a string",
                         "send \"id\" as a string (or leave it out)", error="wrong_shape")
    params = payload.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise http_error(f"\"parameters\" is a {type(params).__name__}, not an object",
                         "send parameters as {\"name\": value} (or leave them out)", error="wrong_shape")
    tensors = payload["inputs"]
    for t in tensors:
        if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= set(t):
            raise http_error("each input tensor needs name, shape, datatype and data",
                             "see the Open Inference Protocol v2 request schema", error="wrong_shape")
        if not isinstance(t["name"], str):
            raise http_error(f"an input tensor's name is {t['name']!r}, not a string",
                             "name each input tensor with a column name string", error="wrong_shape")
        if not isinstance(t["datatype"], str) or t["datatype"] not in _V2_TYPES:
            raise http_error(f"input {t['name']!r} has unknown datatype {t['datatype']!r}",
                             f"use one of {', '.join(_V2_TYPES)}", error="wrong_type")
        shape = t["shape"]
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise http_error(f"input {t['name']!r} has shape {shape!r}",
                             "use shape [n] or [n, k] of non-negative integers", error="wrong_shape")
        if t.get("parameters") is not None and not isinstance(t["parameters"], dict):
            kind = type(t["parameters"]).__name__
            raise http_error(f"input {t['name']!r}: \"parameters\" is a {kind}, not an object",
                             "send tensor parameters as {\"name\": value} (or leave them out)", error="wrong_shape")
    _check_unique([t["name"] for t in tensors], "the inference request")
    names = [c.name for c in signature] if signature else None
    if len(tensors) == 1 and len(tensors[0]["shape"]) == 2 and tensors[0]["shape"][1] != 1:
        t = tensors[0]
        n, k = t["shape"]
        flat = _flatten(t["data"])
        if names is None or k != len(names):
            raise http_error(f"input {t['name']!r} has {k} values per row but the model takes "
                             f"{len(names) if names else 'named'} columns",
                             "send one tensor per column, or a [n, k] tensor in signature column order",
                             error="wrong_shape")
        if len(flat) != n * k:
            raise http_error(f"input {t['name']!r}: shape {t['shape']} needs {n * k} values, got {len(flat)}",
                             "make data match shape", error="wrong_shape")
        cols = {name: flat[j::k] for j, name in enumerate(names)}
        batch = Batch(cols, n, params, names)
    else:
        cols, n = {}, None
        for t in tensors:
            flat = _flatten(t["data"])
            rows = t["shape"][0]
            if len(flat) != rows:
                raise http_error(f"input {t['name']!r}: shape {t['shape']} needs {rows} values, got {len(flat)}",
                                 "make data match shape", error="wrong_shape")
            if n is not None and rows != n:
                raise http_error(f"input {t['name']!r} has {rows} rows, others have {n}",
                                 "send the same number of rows for every input", error="wrong_shape")
            n = rows
            cols[t["name"]] = flat
        batch = Batch(cols, n or 0, params, list(cols))
    if batch.n == 0:
        raise http_error("the request holds no rows", "send at least one row", error="empty_batch")
    return batch, req_id


_FLOAT = ("double", "float")
_INT = ("long", "integer")


def coerce(batch: Batch, signature: list[Column] | None) -> dict[str, Any]:
    """Cast each column to its signature type; 400 naming the column when it cannot be.

    Numeric columns become float64 / int64 arrays, strings stay Python lists (``None`` = missing).
    Missing required columns are refused, naming the column. Columns the model does not use are
    ignored, as ``mlflow models serve`` ignores them: a client sends one feature row to a
    deployment whose versions may use different subsets of it (a canary that adds a feature).
    """
    cols = batch.columns
    if signature is None:
        return cols
    quick = _coerce_quick(cols, batch.n, signature)
    if quick is not None:
        return quick
    out: dict[str, Any] = {}
    n = batch.n
    for c in signature:
        values = cols.get(c.name)
        if values is None:
            if c.required:
                raise http_error(f"missing column {c.name!r} (type {c.type})",
                                 f"add {c.name!r} to every row", error="missing_column")
            values = [None] * n
        t = c.type
        if t in _FLOAT or t in _INT:
            if isinstance(values, np.ndarray) and values.dtype == np.float64:  # decoded as numbers (CSV)
                arr = values
            elif not (isinstance(values, np.ndarray) and values.dtype.kind in "iu") and any(  # ints: no bools
                    isinstance(v, bool) for v in values):
                raise _type_error(c, values)
            else:
                try:
                    arr = np.array(values, dtype=np.float64)
                except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past 1e308
                    raise _type_error(c, values) from None
            if arr.ndim != 1:
                raise http_error(f"column {c.name!r} holds nested values", f"send one {t} per row in {c.name!r}",
                                 error="wrong_shape")
            if np.isinf(arr).any():
                raise http_error(f"column {c.name!r} holds an infinite value", "send finite numbers",
                                 error="invalid_number")
            if t in _INT:
                if np.isnan(arr).any():
                    raise http_error(f"column {c.name!r} has a missing value but the model expects integers",
                                     f"send an integer for {c.name!r} in every row", error="missing_value")
                if (arr != np.floor(arr)).any():
                    raise _type_error(c, values)
                limit = min(_EXACT, 2.0 ** (_INT_BITS.get(t, 64) - 1))
                arr = _exact_ints(c, values) if (np.abs(arr) >= limit).any() else arr.astype(np.int64)
            out[c.name] = arr
        elif t == "string":
            for v in values:
                if v is not None and not isinstance(v, str):
                    raise _type_error(c, values)
            out[c.name] = values
        elif t == "boolean":
            conv = []
            for v in values:
                if isinstance(v, bool) or v is None:
                    conv.append(v)
                elif isinstance(v, str) and v.lower() in ("true", "false"):
                    conv.append(v.lower() == "true")
                else:
                    raise _type_error(c, values)
            out[c.name] = conv
        else:
            out[c.name] = values
    return out


_NONE = type(None)
_SMALL = 64  # numeric values in a request below which _coerce_quick checks them one by one
_INF = float("inf")
_NAN = float("nan")
_NUMERIC_TYPES = frozenset((int, float, _NONE))
_INT_TYPES = frozenset((int,))
_STRING_TYPES = frozenset((str, _NONE))
_layouts: dict[int, tuple[list, tuple]] = {}  # id(signature) -> (signature, its layout)


def _layout(signature: list[Column]) -> tuple:
    """``(numeric names, integer flags, integer limits, string names, numeric and strings only?, the small
    path's checks (and whether the signature lists its numeric columns first), every name, their itemgetter)``
    of a signature, once."""
    entry = _layouts.get(id(signature))
    if entry is not None and entry[0] is signature:
        return entry[1]
    numeric = [c.name for c in signature if c.type in _FLOAT or c.type in _INT]
    ints = np.array([c.type in _INT for c in signature if c.type in _FLOAT or c.type in _INT], dtype=bool)
    limits = np.array([min(_EXACT, 2.0 ** (_INT_BITS.get(c.type or "", 64) - 1)) if c.type in _INT else np.inf
                       for c in signature if c.type in _FLOAT or c.type in _INT])
    strings = [c.name for c in signature if c.type == "string"]
    whole = ints.tolist()
    small = (list(zip(whole, limits.tolist(), strict=True)), [j for j, w in enumerate(whole) if w],
             [j for j, w in enumerate(whole) if not w],  # per column (integer?, limit); integer / float columns
             limits[ints][:, None],  # the integer columns' limits, one per row of their matrix
             [numeric[j] for j, w in enumerate(whole) if w], [numeric[j] for j, w in enumerate(whole) if not w],
             numeric + strings == [c.name for c in signature])  # numeric columns first, then text ones?
    names = [c.name for c in signature]
    layout = (tuple(numeric), ints, limits, strings, len(numeric) + len(strings) == len(signature), small,
              names, itemgetter(*names) if names else None)
    if len(_layouts) > 256:  # versions come and go: never grow without bound
        _layouts.clear()
    _layouts[id(signature)] = (signature, layout)
    return layout


class Coerced(dict):
    """What :func:`coerce` gives on its quick path: the same ``{column: values}`` dict, plus the numeric
    columns' values as one float64 matrix, so the OOD flags and the compiled plan read them at once.

    Why: the OOD check and the plan each went over the numeric columns one numpy call per column (about
    a microsecond each, most of a small request's cost); with the matrix they take one call for all, and
    on a one-row request none (``row``: the row's numeric values as Python floats). The dict itself is
    exactly :func:`coerce`'s answer; the extra attributes are only read when present.

    ``numeric``: the signature's numeric columns, in signature order (one tuple per signature: compare
    it by identity). ``matrix``: float64, shape ``(len(numeric), n)``, row ``j`` = column ``numeric[j]``
    as float64 (``None`` = NaN; an integer column's values exactly, as every one is below 2**53).
    ``distinct``: each text column's set of distinct values (``None`` among them), when coerce made it.
    """

    __slots__ = ("numeric", "matrix", "distinct", "_row")

    def __init__(self, pairs: Any, numeric: tuple, matrix: np.ndarray, distinct: dict[str, set] | None = None) -> None:
        super().__init__(pairs)
        self.numeric = numeric
        self.matrix = matrix
        self.distinct = distinct
        self._row: list[float] | None = None

    @property
    def row(self) -> list[float]:
        """The first row's numeric values as Python floats (NaN for a missing one), in ``numeric`` order."""
        row = self._row
        if row is None:
            row = self._row = self.matrix[:, 0].tolist()
        return row


def _coerce_quick(cols: dict[str, Any], n: int, signature: list[Column]) -> dict[str, Any] | None:
    """:func:`coerce` for the common request — JSON numbers and strings, every column present — with one
    numpy conversion for all numeric columns and one check of each condition over all of them.

    None whenever anything is unusual or wrong (a missing column, a bool, text in a number, a value
    too large for the integer type, a CSV array): :func:`coerce` then does it column by column and
    names the problem. So the answer, when there is one, is exactly :func:`coerce`'s (a :class:`Coerced`).
    """
    numeric, ints, limits, strings, plain, small, order, _ = _layout(signature)
    if not plain:
        return None
    if n == 1 and numeric:
        return _coerce_one(cols, numeric, small, strings, order)
    try:
        lists = [cols[name] for name in numeric]
        texts = [cols[name] for name in strings]
    except KeyError:
        return None
    checks, int_columns, float_columns, int_limits, int_names, float_names, _ = small
    for values, (whole, _) in zip(lists, checks, strict=True):  # an integer column: Python ints only
        if type(values) is not list or not (_INT_TYPES if whole else _NUMERIC_TYPES).issuperset(map(type, values)):
            return None  # 3.0 or None in an integer column, a bool, text: coerce says what (or takes 3.0)
    distinct: dict[str, set] = {}
    for name, values in zip(strings, texts, strict=True):
        if type(values) is not list:
            return None
        try:
            seen = set(values)  # the distinct values: checked here, compared by the OOD check
        except TypeError:  # an unhashable value (a list, an object)
            return None
        if not _STRING_TYPES.issuperset(map(type, seen)):  # a str equals no other type: the distinct ones do
            return None
        distinct[name] = seen
    found: dict[str, Any] = dict(zip(strings, texts, strict=True))
    if not numeric:
        return Coerced({name: found[name] for name in order}, numeric, np.empty((0, n)), distinct)
    if n * len(numeric) <= _SMALL:  # a few values: plain Python checks beat numpy's per-call cost
        for values, (whole, limit) in zip(lists, checks, strict=True):
            if len(values) != n:
                return None
            for v in values:
                if whole:
                    if not -limit < v < limit:  # too large for the type or for float64: coerce says what
                        return None
                elif v is not None and (v == _INF or v == -_INF):
                    return None
        try:  # the float matrix of every numeric column, the integer columns also as int64 (their own np.array)
            matrix = np.array(lists, dtype=np.float64)
            if int_columns:
                whole_matrix = np.array([lists[j] for j in int_columns], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            return None
    else:
        try:
            matrix = np.array(lists, dtype=np.float64)  # one row per column: each column a contiguous view
        except (TypeError, ValueError, OverflowError):
            return None
        if matrix.shape != (len(numeric), n) or np.isinf(matrix).any():
            return None
        if int_columns:  # Python ints (checked above): only their size is left to check, all at once
            whole = matrix[int_columns]
            if not (np.abs(whole) < int_limits).all():
                return None
            whole_matrix = whole.astype(np.int64)
    for name, j in zip(float_names, float_columns, strict=True):
        found[name] = matrix[j]
    if int_columns:
        found.update(zip(int_names, whole_matrix, strict=True))  # iterating a matrix gives its rows as views
    return Coerced({name: found[name] for name in order}, numeric, matrix, distinct)  # signature order, as coerce


def _coerce_one(cols: dict[str, Any], numeric: tuple, small: tuple, strings: list[str],
                order: list[str]) -> Coerced | None:
    """:func:`_coerce_quick` of a one-row request: each value checked once, in plain Python, and three
    numpy calls in all — the numeric values as one flat float64 array (numpy converts each value as it
    does in the former list of one-value lists: the same floats, ``None`` as NaN), the integer columns as
    int64, and each column a view of those taken in C (``zip`` over a matrix's rows) — written straight
    into the :class:`Coerced` when the signature lists its numeric columns first. The row's Python floats,
    which the plan and the OOD check read, are set here: the values themselves when all are floats.
    None whenever anything is unusual or wrong, as there. (About 17% fewer instructions than the former
    form, kept in tests/test_serving_fused.py as the reference, on a credit-style row: BENCHMARKS.md, Serving.)"""
    checks, int_columns, _, _, int_names, _, in_order = small
    row: list = []
    add = row.append
    floats = True  # every value a float: the row's Python floats are the values themselves
    for name, (whole, limit) in zip(numeric, checks, strict=True):
        values = cols.get(name)
        if type(values) is not list or len(values) != 1:
            return None
        v = values[0]
        if whole:
            if type(v) is not int or not -limit < v < limit:  # 3.0, None, huge: coerce says what
                return None
            floats = False
        elif type(v) is float:
            if v == _INF or v == -_INF:
                return None
        elif v is None or type(v) is int:
            floats = False
        else:
            return None
        add(v)
    texts = []
    for name in strings:
        values = cols.get(name)
        if type(values) is not list or len(values) != 1 or (values[0] is not None and type(values[0]) is not str):
            return None
        texts.append(values)
    try:
        flat = np.array(row, dtype=np.float64)
        whole = np.array([row[j] for j in int_columns], dtype=np.int64) if int_columns else None
    except (TypeError, ValueError, OverflowError):  # a float column's integer past 1e308: coerce says what
        return None
    matrix = flat.reshape(len(row), 1)
    out = _new_coerced(Coerced)  # filled here, not copied from another dict by Coerced.__init__
    out.update(zip(numeric, matrix, strict=True))  # iterating a matrix gives its rows as views
    if whole is not None:
        out.update(zip(int_names, whole.reshape(len(int_columns), 1), strict=True))  # as int64, in place
    out.update(zip(strings, texts, strict=True))  # a text column: its list as sent
    if not in_order:
        ordered = {name: out[name] for name in order}
        out.clear()
        out.update(ordered)
    out.numeric, out.matrix, out.distinct = numeric, matrix, None
    out._row = row if floats else flat.tolist()
    return out


_new_coerced = dict.__new__


_EXACT = 2.0 ** 53  # every integer below this is exact in float64
_INT_BITS = {"long": 64, "integer": 32}


def _exact_ints(c: Column, values: Any) -> np.ndarray:
    """An integer column with a value too large for float64 to hold exactly: cast value by value,
    refusing what does not fit the column's integer type (rather than wrapping it around)."""
    bits = _INT_BITS.get(c.type or "", 64)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    out = []
    for v in values:
        if isinstance(v, str):
            try:
                v = int(v.strip())
            except ValueError:
                v = float(v)  # numeric text such as "1e20": castable, checked below
        if isinstance(v, float):
            if abs(v) >= _EXACT and lo <= v <= hi:  # the JSON parser reads an integer literal past int64 as a float
                raise http_error(f"column {c.name!r} holds {v!r}, too large to be read as an exact integer ({c.type})",
                                 f"send {c.name!r} as a JSON integer (digits only), between {lo} and {hi}",
                                 error="wrong_type")
            if lo <= v <= hi:
                v = int(v)
        if not lo <= v <= hi:
            raise _range_error(c, v)
        out.append(v)
    return np.array(out, dtype=np.int64)


def _range_error(c: Column, v: int | float) -> ServingError:
    bits = _INT_BITS.get(c.type or "", 64)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    shown = f"{v:.6g}" if isinstance(v, float) else str(v)
    if len(shown) > 40:  # a 400-digit literal is not echoed whole
        shown = f"an integer of {len(shown)} digits"
    return http_error(f"column {c.name!r} holds {shown}, outside the range of a {bits}-bit integer ({c.type})",
                      f"send an integer between {lo} and {hi} in {c.name!r}", error="wrong_type")


def _type_error(c: Column, values: Any) -> ServingError:
    bad = next((v for v in values if v is not None and not _castable(v, c.type)), None)
    if c.type in _INT and type(bad) is int:  # a Python int too large for float64: its range is what is wrong
        return _range_error(c, bad)
    shown = repr(bad)
    shown = shown if len(shown) <= 40 else f"{shown[:20]}…({len(shown)} characters)"
    return http_error(f"column {c.name!r} expects {c.type} but got {shown} ({type(bad).__name__})",
                      f"send a {c.type} value in {c.name!r}", error="wrong_type")


def _castable(v: Any, t: str | None) -> bool:
    if t in _FLOAT or t in _INT:
        if isinstance(v, bool):
            return False
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            return False
        return t in _FLOAT or (np.isfinite(f) and f == int(f))
    if t == "string":
        return isinstance(v, str)
    return True


def to_jsonable(pred: Any) -> Any:
    """Model output → the ``predictions`` value ``mlflow models serve`` would send."""
    if isinstance(pred, np.ndarray):
        return pred.tolist()
    mod = type(pred).__module__
    if mod.startswith("pandas"):
        if hasattr(pred, "to_dict") and hasattr(pred, "columns"):
            return json.loads(pred.to_json(orient="records"))
        return json.loads(pred.to_json(orient="values"))
    if isinstance(pred, (list, tuple)):
        return [to_jsonable(p) for p in pred]
    if isinstance(pred, dict):
        return {k: to_jsonable(v) for k, v in pred.items()}
    if isinstance(pred, np.generic):
        return pred.item()
    return pred


_DT = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}


def encode_v2_outputs(pred: Any, name: str) -> list[dict]:
    """Model output → OIP v2 ``outputs`` (one tensor, row-major flattened data)."""
    arr = np.asarray(pred.to_numpy() if hasattr(pred, "to_numpy") else pred)
    datatype = _DT.get(arr.dtype.kind, "BYTES")
    data = arr.ravel().tolist()
    if datatype == "BYTES":
        data = [str(x) for x in data]
    return [{"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}]


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


#: One encoder for every answer (``json.dumps`` with keywords builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default)


def dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode()


_PLAIN_KINDS = frozenset("iub")
_TINY = 1e-4  # below this (but not 0) orjson writes a float as 0.00001 / 1e-7 where Python writes 1e-05 / 1e-07


def _plain_floats(values: np.ndarray) -> bool:
    """Does orjson write every one of these floats exactly as ``repr`` (and so :func:`dumps`) does?
    True for finite values of magnitude 0 or at least 1e-4 (checked on 3.9 M values from 1e-4 to 1e308)."""
    if values.size <= 8:
        return all(x == 0.0 or _TINY <= abs(x) < _INF for x in values.ravel().tolist())
    magnitude = np.abs(values)
    return bool(np.all(np.isfinite(magnitude)) and not np.any((magnitude < _TINY) & (magnitude != 0.0)))


def dumps_answer(answer: dict, pred: Any) -> bytes:
    """:func:`dumps` of a prediction answer whose ``pred`` is the model's output: the same bytes, through
    orjson (18x the stdlib on a 100-row answer) when they are sure to be the same — ``pred`` a numpy
    array of numbers or text, finite floats that orjson writes as ``repr`` does, and an answer of plain
    ASCII text with nothing to escape (the stdlib writes ``\\u00e9`` where orjson writes UTF-8) —
    and through :func:`dumps` otherwise."""
    if _orjson is not None and isinstance(pred, np.ndarray) and (
            pred.dtype.kind in _PLAIN_KINDS or (pred.dtype.kind == "f" and _plain_floats(pred))):
        try:
            out = _orjson.dumps(answer)
        except TypeError:  # a value orjson does not take as the stdlib does (e.g. an int past 64 bits)
            return dumps(answer)
        if out.isascii() and b"\\" not in out and b"\x7f" not in out:
            return out
    return dumps(answer)
