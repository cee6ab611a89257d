"""A request's arrays → ONE stored record of the prediction log (the writer thread's conversion).

The log stores one record per request, not one row per predicted row (issue 13: a 100-row request
cost the writer 100 JSON objects and 100 inserts). A record's texts are columnar JSON:

- ``inputs``: ``{"column": [v0, v1, ...], ...}`` (NaN stored as ``null``);
- ``predictions``: ``[p0, p1, ...]``, one JSON value per row (a label, a number, a list of class
  probabilities, an object per row for a model with several outputs);
- a request of ``_PACK_MIN`` rows or more is stored *compact* (issue 13: a 100-row credit record
  9.3 KB → 3.5 KB, within one 4 KB SQLite page, so an insert and a prune no longer read and write
  overflow pages): its ``inputs`` are ``[n, {"column": spec, ...}, "b64"]``, ONE base64 text of every
  packed column's bytes, one after the other in the order of the specs (one base64 per record, not
  one per column: ~24 characters fewer per packed column, 192 of a 100-row credit record's 3,505, and
  ~1 µs of base64 calls, measured). A spec is
  ``{"dtype": "|u1"}`` (the column's ``n`` values in that dtype), ``{"dtype": "|u1", "as": "<f8"}``
  (whole floats stored as integers, read back as floats), ``{"dtype": "|u1", "values": [...]}``
  (a text column: its distinct values once, each row the code of its value; None is a value like
  any other), or, for a column that is none of these, its JSON list itself. Each numeric column
  takes the narrowest dtype that holds its values exactly: ``|u1`` when its values survive a round
  trip through uint8 (ages, counts, flags, labels), an integer column else the smallest
  (u)int of its min..max, a float64 column ``<f4`` when every value's float32 has the same bits
  (NaN-aware), else ``<f8``; integer columns read back as ints, float columns as floats, bools as
  bools: the values a reader gets (:func:`columns`) are the JSON list's. All numeric columns are
  checked at once, as the rows of one float64 matrix (six numpy calls in all, where a min/max per
  column cost two each): the server's coerced inputs (``nbprod.serving.codecs.Coerced``) already
  hold that matrix and each text column's distinct values, and both are reused (no text hashed
  again); a plain dict's int and float64 columns are stacked into one (an integer past 2**53 is not
  exact there, but it never passes for 0..255, and its own array decides its dtype). A text column
  of more distinct values than half its rows stays a JSON list (a dictionary would not be shorter);
- a record's numeric predictions (1-D, or 2-D class probabilities) of ``_PACK_MIN`` rows or more are
  ``{"dtype": "|u1", ["as": "<f8",] "shape": [n], "b64": "..."}``, narrowed as the inputs; text
  predictions (labels) ``{"dtype": "|u1", "values": [...], "shape": [n], "b64": "..."}``;
- earlier nbprods wrote ``inputs`` as ``{"column": [values] or {"dtype", "shape", "b64"}}`` (a
  column packed in its own dtype, one base64 each) and predictions in the latter form without
  ``as``/``values``: :func:`columns` and :func:`unpack` read every form ever written. Packing (a
  copy) replaced turning each float into its shortest decimal text, most of the writer's cost once.
  Below ``_PACK_MIN`` rows the JSON lists are as short (measured: a 4-row credit record is 331
  characters as JSON, 439 compact, the dictionaries' texts dominating) and a run of small requests
  is converted at once (:func:`_run_records`). A column with ±inf is never packed (JSON refuses it,
  and a request holding one was never logged; so it stays);
- ``ood``: ``{"i": [reasons], ...}`` for the rows out of the training distribution only, NULL
  when none is.

Each value's JSON text is exactly the text the per-row log wrote for it (the same encoder and the
same conversions: :func:`_plain_list`, :func:`_jsonable`, :func:`_prediction_list`), and each packed
value reads back as that JSON value, so the rows a reader expands from a record (:mod:`.logread`) are
the rows the per-row log held (tests/test_predlog_records.py: every dtype, random arrays, old forms).

``import nbprod`` does not load this module.
"""

from __future__ import annotations

import binascii
import itertools
import json
import math
from json.encoder import encode_basestring_ascii as _escape  # what json.dumps uses
from operator import itemgetter
from typing import Any, Iterator

try:  # a C encoder: 6-7x the stdlib on a list of texts (used where its bytes are the stdlib's, _texts_json)
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the stdlib writes the same, slower
    _orjson = None  # type: ignore[assignment]

__all__ = ["RECORD_COLUMNS", "columns", "records_of", "row_count", "rows_in", "unpack"]

#: The columns of a stored record, in the order the writer's tuples give them.
RECORD_COLUMNS = ("deployment", "ts", "request_id", "id_prefix", "version", "role", "status", "latency_ms",
                  "n_rows", "inputs", "predictions", "ood", "requests", "n_requests")

#: One encoder for every value (``json.dumps`` with keywords builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str)
_dumps = _ENCODER.encode
_NONE = type(None)
_NUMBERS = frozenset((int, float, bool, _NONE))
_TEXTS = frozenset((str, _NONE))


def _plain_list(values: Any, n: int) -> list:
    """Column values as a list of JSON-able Python values (NaN → None)."""
    if hasattr(values, "tolist"):
        out = values.tolist()
        kind = getattr(getattr(values, "dtype", None), "kind", "")
        if kind == "f":
            out = [None if v != v else v for v in out]
    else:
        out = list(values)
    if len(out) != n:
        out = (out + [None] * n)[:n]
    return out


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "item") and not hasattr(v, "__len__"):
        return _jsonable(v.item())
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _finite(values: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(values).all())


def _prediction_list(pred: Any, n: int) -> list:
    """One prediction value per row, whatever the model returned."""
    mod = type(pred).__module__
    if mod.startswith("pandas"):
        if hasattr(pred, "columns"):
            records = pred.to_dict(orient="records")
            return [_jsonable(r if len(r) > 1 else next(iter(r.values()))) for r in records]
        pred = pred.to_numpy()
    if hasattr(pred, "ndim"):
        if pred.ndim == 1:
            return _plain_list(pred, n)
        rows = pred.reshape(len(pred), -1)
        kind = getattr(getattr(rows, "dtype", None), "kind", "")
        if type(rows).__module__ == "numpy" and (kind in ("b", "i", "u") or (kind == "f" and _finite(rows))):
            return rows.tolist()  # numbers only, none of them NaN or ±inf: the lists _jsonable gives, made in C
        return [_jsonable(r) for r in rows.tolist()]
    if isinstance(pred, dict):  # {output: array} → one object per row
        cols = {k: _prediction_list(v, n) for k, v in pred.items()}
        return [{k: cols[k][i] for k in cols} for i in range(n)]
    values = list(pred) if isinstance(pred, (list, tuple)) else [pred] * n
    return [_jsonable(v) for v in (values + [None] * n)[:n]]


def _is_number_lists(values: list) -> bool:
    return (set(map(type, values)) == {list} and all(values)
            and set(map(type, itertools.chain.from_iterable(values))) <= _NUMBERS)


def _texts_json(values: list) -> str:
    """``_dumps(values)`` of a list of texts and Nones, by orjson when its bytes are the stdlib's.

    They are whenever orjson's output is ASCII without DEL: the stdlib (``ensure_ascii``) writes every
    other character as ``\\uXXXX`` and orjson as UTF-8, and both escape quotes, backslashes and control
    characters alike (a test compares them over every ASCII character). Anything else, and a lone
    surrogate orjson refuses, takes the stdlib: the stored text never depends on which encoder ran.
    """
    if _orjson is not None:
        try:
            out = _orjson.dumps(values)
        except TypeError:  # orjson.JSONEncodeError is one
            out = b"\x7f"
        if out.isascii() and b"\x7f" not in out:
            return out.decode("ascii")
    return _dumps(values)


def _list_text(values: list) -> str:
    """``[v0,v1,...]``: each value's text as ``_dumps(_jsonable(v))`` gives it, in one encoder call where
    the values are plain already (numbers, texts, lists of numbers: ±inf raise there, as they did per row)."""
    types = set(map(type, values))
    if types <= _TEXTS:
        return _texts_json(values)
    if types <= _NUMBERS or _is_number_lists(values):
        return _dumps(values)
    return _dumps([_jsonable(v) for v in values])


def _fragments(values: list) -> list[str]:
    """Each value's JSON text (as in :func:`_list_text`), one per value: the writer slices these per record
    when it converts many small requests at once."""
    types = set(map(type, values))
    if types <= _NUMBERS:
        return _dumps(values)[1:-1].split(",") if values else []  # no number's text holds a comma
    if types <= _TEXTS:
        return ["null" if v is None else _escape(v) for v in values]
    if _is_number_lists(values):
        return [f"[{x}]" for x in _dumps(values)[2:-2].split("],[")]  # class probabilities: [[0.2,0.8],[0.9,0.1]]
    return [_dumps(_jsonable(v)) for v in values]


#: Requests with at least this many rows store their numeric numpy columns packed (a few rows: JSON is as short).
_PACK_MIN = 8


def _packable(values: Any, n: int) -> bool:
    """A numeric numpy array of ``n`` rows without ±inf (1-D; 2-D for predictions), worth packing."""
    if n < _PACK_MIN or type(values).__module__ != "numpy" or getattr(values, "ndim", 0) not in (1, 2):
        return False
    import numpy as np

    kind = values.dtype.kind
    return (isinstance(values, np.ndarray) and len(values) == n and kind in "biuf"
            and not (kind == "f" and np.isinf(values).any()))


def unpack(stored: Any) -> list:
    """A record's stored column or predictions → the list of values the JSON list holds (a list is one)."""
    if isinstance(stored, list):
        return stored
    import numpy as np

    arr = np.frombuffer(binascii.a2b_base64(stored["b64"]), dtype=np.dtype(stored["dtype"])).reshape(stored["shape"])
    return _decoded(arr, stored)


def _decoded(arr: Any, spec: dict) -> list:
    """A stored array's values as the JSON list held them: dictionary codes → their values, integers stored
    for floats → floats (``"as"``), NaN → None."""
    values = spec.get("values")
    if values is not None:
        codes = arr.tolist()
        return list(itemgetter(*codes)(values)) if len(codes) > 1 else [values[c] for c in codes]  # 1-D only
    wide = spec.get("as")
    if wide is not None:
        arr = arr.astype(wide)
    out = arr.tolist()
    if arr.dtype.kind == "f":
        import numpy as np

        if np.isnan(arr).any():
            if arr.ndim == 1:
                out = [None if v != v else v for v in out]
            else:
                out = [[None if v != v else v for v in row] for row in out]
    return out


def columns(stored: Any) -> dict[str, list]:
    """A record's parsed ``inputs`` (any form ever written) → ``{column: [values]}``, the values the
    JSON lists held."""
    if isinstance(stored, dict):  # {"column": [values] or {"dtype", "shape", "b64"}}
        return {k: unpack(v) for k, v in stored.items()}
    import numpy as np  # [n, {"column": spec or [values]}, "b64 of every packed column, in that order"]

    n, specs, text = stored
    raw = binascii.a2b_base64(text)
    out: dict[str, list] = {}
    at = 0
    for name, spec in specs.items():
        if isinstance(spec, list):
            out[name] = spec
            continue
        dtype = np.dtype(spec["dtype"])
        arr = np.frombuffer(raw, dtype=dtype, count=n, offset=at)
        at += n * dtype.itemsize
        out[name] = _decoded(arr, spec)
    return out


#: The narrowest integer dtypes, tried in this order: (dtype, lowest, highest).
_INTS = (("|u1", 0, 255), ("|i1", -128, 127), ("<u2", 0, 65535), ("<i2", -32768, 32767), ("<u4", 0, 2 ** 32 - 1),
         ("<i4", -2 ** 31, 2 ** 31 - 1), ("<i8", -2 ** 63, 2 ** 63 - 1), ("<u8", 0, 2 ** 64 - 1))


_F4_MAX = 3.4028234663852886e38  # the largest float32


def _int_dtype(lo: int, hi: int) -> str:
    """The narrowest integer dtype holding ``lo..hi``."""
    for dtype, low, high in _INTS:
        if low <= lo and hi <= high:
            return dtype
    raise ValueError(f"integers {lo}..{hi} fit no 64-bit dtype")  # pragma: no cover - an int64/uint64 column's


def _float_rows(matrix: Any) -> list[tuple[str, str | None, Any]]:
    """How to store each row of a float64 matrix (one column's values per row) exactly in the fewest bytes:
    ``(dtype, read-as dtype or None, the row's data in that dtype)``.

    A row whose float64 bits survive a round trip through ``uint8`` (whole numbers 0..255: counts, ages,
    flags, class labels; no NaN, no -0.0) is stored as ``|u1`` read back as ``<f8``; else a row whose
    bits survive a round trip through float32 (NaN-aware: the bits, not ``==``, are compared) as ``<f4``;
    else as ``<f8``. Rows are compared as bytes (a memcmp each): six numpy calls for all the rows, where
    a min/max per column costs two each (what made the narrowing too dear before: BENCHMARKS.md, Monitoring).
    """
    import numpy as np

    rows, n = matrix.shape
    size = n * 8
    bits = matrix.tobytes()
    with np.errstate(all="ignore"):  # NaN, negatives and values past a dtype cast to garbage the bits then refuse
        small = matrix.astype(np.uint8)
        back = small.astype(np.float64).tobytes()
        is_small = [back[j * size:(j + 1) * size] == bits[j * size:(j + 1) * size] for j in range(rows)]
        if all(is_small):
            return [("|u1", "<f8", row) for row in small]
        narrow = matrix.astype(np.float32)
        back = narrow.astype(np.float64).tobytes()
    out: list[tuple[str, str | None, Any]] = []
    for j, ok in enumerate(is_small):
        if ok:
            out.append(("|u1", "<f8", small[j]))
        elif back[j * size:(j + 1) * size] == bits[j * size:(j + 1) * size]:
            out.append(("<f4", None, narrow[j]))
        else:
            out.append(("<f8", None, matrix[j]))
    return out


def _narrowed(values: Any) -> tuple[str, str | None, Any]:
    """One packable numeric array (no ±inf) in the fewest bytes that hold it exactly: ``(dtype, read-as
    dtype or None, the data)`` (see :func:`_float_rows`; integers in the narrowest dtype of their min..max)."""
    import numpy as np

    kind = values.dtype.kind
    if kind in "iu" and values.dtype.itemsize == 1:
        dtype = values.dtype.str
    elif kind in "iu":  # wider than a byte: its dtype holds 0..255, so the round trip cannot wrap around
        small = values.astype(np.uint8)  # the usual labels and counts: one cast back and a memcmp, no min/max
        if small.astype(values.dtype).tobytes() == values.tobytes():
            return "|u1", None, small
        dtype = _int_dtype(int(values.min()), int(values.max()))
    elif kind == "f" and values.dtype.itemsize == 8 and values.dtype.isnative:
        first = float(values.flat[0]) if values.size else 0.0
        if (first == first and not (first.is_integer() and 0 <= first <= 255)
                and (abs(first) > _F4_MAX or float(np.float32(first)) != first)):
            return "<f8", None, values  # its first value alone needs float64 (class probabilities): no array checked
        dtype, read_as, data = _float_rows(values.reshape(1, -1))[0]
        return dtype, read_as, data.reshape(values.shape)
    else:  # bools, float16/float32: kept as they are (read back as those values, widened)
        dtype = values.dtype.str
    return dtype, None, values if values.dtype.str == dtype else values.astype(dtype)


#: Dictionaries seen (a set of distinct texts → its codes and its JSON text): categories repeat across requests.
_DICTIONARIES: dict[frozenset, tuple[dict, str, str]] = {}


def _dictionary(values: list, seen: Any, n: int) -> tuple[str, bytes] | None:
    """A text column (texts and Nones) as its distinct values and narrow codes: ``('"dtype":..,"values":[..]',
    codes)``; None when it is not one, or has too many distinct values to gain from it (over half its rows)."""
    if seen is None:
        try:
            seen = frozenset(values)
        except TypeError:  # an unhashable value: not a text column
            return None
    if len(seen) * 2 > n:
        return None
    known = seen if type(seen) is frozenset else frozenset(seen)
    entry = _DICTIONARIES.get(known)
    if entry is None:
        if not _TEXTS.issuperset(map(type, known)):
            return None
        keys = list(known)
        dtype = "|u1" if len(keys) <= 256 else "<u2" if len(keys) <= 65536 else "<u4"
        entry = (dict(zip(keys, range(len(keys)), strict=True)), dtype, _texts_json(keys))
        if len(_DICTIONARIES) >= 256:  # a column of many distinct values: never grow without bound
            _DICTIONARIES.clear()
        _DICTIONARIES[known] = entry
    codes_of, dtype, text = entry
    try:
        codes = itemgetter(*values)(codes_of)
    except (KeyError, TypeError):  # ``seen`` was not this list's: not encoded
        return None
    if dtype == "|u1":
        data = bytes(codes)
    else:
        import numpy as np

        data = np.array(codes, dtype=dtype).tobytes()
    return '"dtype":"%s","values":%s' % (dtype, text), data


def _compact_inputs(inputs: Any, n: int) -> str:
    """A request's inputs of ``n`` >= ``_PACK_MIN`` rows as ``[n, {"column": spec or [values]}, "b64"]``:
    numeric columns in their narrowest exact dtype and text columns as dictionary codes, all their bytes
    in one base64 text, in the order of the specs (see the module docstring)."""
    import numpy as np

    packed: dict[str, tuple[str, str | None, Any]] = {}
    numeric: tuple | list = ()
    matrix = getattr(inputs, "matrix", None)
    if matrix is not None and matrix.shape == (len(inputs.numeric), n):
        numeric = inputs.numeric  # the server's coerce (a Coerced): every numeric column a float64 row, no ±inf
    else:  # a plain dict (the batch scorer's log_rows, other callers): int and float64 columns as one float64 matrix
        numeric = []
        for k, v in inputs.items():
            if type(v) is np.ndarray and v.ndim == 1 and len(v) == n and v.dtype.kind in "biuf":
                if v.dtype.kind in "iu" or v.dtype == np.float64:
                    numeric.append(k)
                elif v.dtype.kind != "f" or not np.isinf(v).any():  # ±inf: the JSON list, which refuses it (below)
                    packed[k] = _narrowed(v)
        if numeric:
            matrix = np.array([inputs[k] for k in numeric], dtype=np.float64)  # integers past 2**53 inexact: see below
            if np.isinf(matrix).any():  # ±inf: never packed (JSON refuses it: the request fails alone, as it did)
                keep = (~np.isinf(matrix).any(axis=1)).tolist()
                numeric = [k for k, ok in zip(numeric, keep, strict=True) if ok]
                matrix = matrix[keep]
    if numeric:
        for k, (dtype, read_as, data) in zip(numeric, _float_rows(matrix), strict=True):
            own = inputs.get(k)
            if type(own) is not np.ndarray or own.shape != (n,):
                continue  # pragma: no cover - coerce's numeric columns are arrays of n values (the JSON list then)
            if own.dtype.kind in "iu":  # an integer column: its ints, read back as ints; 0..255 exactly (a huge int's
                dtype, read_as, data = ("|u1", None, data) if dtype == "|u1" else _narrowed(own)  # float is not)
            elif own.dtype != np.float64:  # pragma: no cover - coerce's numbers are int64 or float64
                dtype, read_as, data = _narrowed(own)
            packed[k] = (dtype, read_as, data)
    distinct = getattr(inputs, "distinct", None) or {}
    parts: list[str] = []
    chunks: list[Any] = []
    for k, values in inputs.items():
        key = _escape(str(k))
        spec = packed.get(k)
        if spec is not None:
            dtype, read_as, data = spec
            chunks.append(data if data.flags.c_contiguous else data.copy())
            parts.append('%s:{"dtype":"%s","as":"%s"}' % (key, dtype, read_as) if read_as
                         else '%s:{"dtype":"%s"}' % (key, dtype))
            continue
        coded = _dictionary(values, distinct.get(k), n) if type(values) is list and len(values) == n else None
        if coded is None:
            parts.append(key + ":" + _list_text(_plain_list(values, n)))
        else:
            parts.append(key + ":{" + coded[0] + "}")
            chunks.append(coded[1])
    return '[%d,{%s},"%s"]' % (n, ",".join(parts), binascii.b2a_base64(b"".join(chunks), newline=False).decode())


def _compact_array(values: Any) -> str:
    """A packable numeric array (predictions) in its narrowest exact dtype: ``{"dtype", ["as",] "shape", "b64"}``."""
    dtype, read_as, data = _narrowed(values)
    if not data.flags.c_contiguous:
        data = data.copy()
    shape = ",".join(map(str, values.shape))
    wide = ',"as":"%s"' % read_as if read_as else ""
    return '{"dtype":"%s"%s,"shape":[%s],"b64":"%s"}' % (dtype, wide, shape,
                                                          binascii.b2a_base64(data, newline=False).decode())


def _compact_texts(values: list, n: int) -> str | None:
    """Text predictions of ``n`` rows as dictionary codes, or None (not texts, or too many distinct ones)."""
    coded = _dictionary(values, None, n)
    if coded is None:
        return None
    return '{%s,"shape":[%d],"b64":"%s"}' % (coded[0], n, binascii.b2a_base64(coded[1], newline=False).decode("ascii"))


def _template(names: list) -> str:
    """``{"a":[%s],"b":[%s]}``: a record's inputs from its columns' joined value texts (one C format)."""
    return "{" + ",".join(_escape(str(k)).replace("%", "%%") + ":[%s]" for k in names) + "}"


def _ood_text(ood: Any, n: int) -> str | None:
    """``{"i": [reasons]}`` of the flagged rows, None when no row is flagged (the usual case)."""
    if ood is None:
        return None
    if n == 1:
        flags = ood[0] if len(ood) else None
        return '{"0":' + _dumps(list(flags)) + "}" if flags else None
    rows = list(itertools.islice(ood, n))
    flagged = {str(i): list(rows[i]) for i in itertools.compress(range(len(rows)), rows)}  # the test of each in C
    return _dumps(flagged) if flagged else None


def row_count(rec: dict) -> int:
    """A prediction record's rows: its ``n``, else as many as its predictions."""
    pred = rec.get("predictions")
    sized = hasattr(pred, "__len__") and not isinstance(pred, (str, dict))
    return int(rec.get("n") or 0) or (len(pred) if sized else 1)  # type: ignore[arg-type]


def rows_in(kind: str, rec: dict) -> int:
    """The rows a hook record stands for in the log's row counts (retention, buffer, written, dropped):
    an error record is one row, a shadow record one per answer, a prediction one per predicted row."""
    if kind == "error":
        return 1
    if kind == "shadow":
        preds = rec.get("predictions")
        return len(preds) if isinstance(preds, list) else 1
    return int(rec.get("n") or 1)


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def _record(deployment: str, kind: str, ts: float, rec: dict) -> tuple:
    """The stored record (a tuple in :data:`RECORD_COLUMNS` order) of one hook record."""
    if kind == "error":
        return (deployment, ts, rec.get("request_id"), None, _s(rec.get("version")), "error",
                int(rec.get("status") or 500), rec.get("latency_ms"), int(rec.get("count") or 1), None, None, None,
                None, None)
    n = row_count(rec)
    pred: Any = rec.get("predictions")
    packed = kind != "shadow" and _packable(pred, n)
    preds = [] if packed else _prediction_list(pred, n)
    rid, version, latency = rec.get("request_id"), _s(rec.get("version")), rec.get("latency_ms")
    if kind == "shadow":
        return (deployment, ts, rid, None, version, "shadow", 200, latency, n, None,
                _dumps([_jsonable(p) for p in preds[:n]]), None, None, None)
    inputs = rec.get("inputs") or {}
    if n >= _PACK_MIN:
        text = _compact_inputs(inputs, n)
    else:
        text = "{" + ",".join(_escape(str(k)) + ":" + _list_text(_plain_list(v, n)) for k, v in inputs.items()) + "}"
    if packed:
        shown = _compact_array(pred if pred.ndim == 1 else pred.reshape(n, -1))
    else:
        preds = preds[:n] + [None] * (n - len(preds))
        shown = (_compact_texts(preds, n) if n >= _PACK_MIN else None) or _list_text(preds)
    block = rec.get("requests") if kind == "block" else None
    return (deployment, ts, rid, rid, version, rec.get("role") or "stable", 200, latency, n, text, shown,
            _ood_text(rec.get("ood"), n), block, None if block is None else rec["n_requests"])


def _names(rec: dict) -> tuple:
    return tuple(rec.get("inputs") or ())


#: A run of requests averaging at most this many rows is converted a column at a time across them.
_SMALL = 8


def records_of(deployment: str, items: list) -> Iterator[tuple | Exception]:
    """The stored record of each ``(kind, ts, hook record)`` of ``items``, or the exception of one that
    cannot be stored (one odd record never stops the others). A run of consecutive small predictions
    with the same input columns is converted at once (:func:`_run_records`): a one-row request costs
    a row's work, not a request's worth of per-column calls."""
    i = 0
    while i < len(items):
        kind, ts, rec = items[i]
        j = i + 1
        if kind == "prediction":
            names = _names(rec)
            while j < len(items) and items[j][0] == "prediction" and _names(items[j][2]) == names:
                j += 1
        run = items[i:j]
        if len(run) > 1 and sum(row_count(r) for _, _, r in run) <= _SMALL * len(run):
            try:
                yield from _run_records(deployment, run)
                i = j
                continue
            except Exception:  # noqa: BLE001 - one odd record: convert the run one by one, it alone fails
                pass
        for kind, ts, rec in run:
            try:
                yield _record(deployment, kind, ts, rec)
            except Exception as exc:  # noqa: BLE001
                yield exc
        i = j


def _column_fragments(parts: list, ns: list[int]) -> list[str]:
    """The JSON text of each value of one input column over several records, each exactly as
    ``_fragments(_plain_list(part, n))`` gives it for its record alone: numeric or text arrays of one
    dtype, and lists of texts only or numbers only (a JSON body's text columns), are joined and turned
    into text once; anything else a record at a time."""
    import numpy as np  # the server has it loaded; ``import nbprod`` does not import this module

    if set(map(type, parts)) == {np.ndarray} and list(map(len, parts)) == ns:
        dtypes = {p.dtype for p in parts}
        kinds = {d.kind for d in dtypes}
        if (len(dtypes) == 1 or kinds == {"U"}) and kinds <= set("biufUO") and all(p.ndim == 1 for p in parts):
            values = _plain_list(np.concatenate(parts), sum(ns))
            if "O" not in kinds or set(map(type, values)) <= _TEXTS:  # objects: only all-text ones take one path
                return _fragments(values)
    elif set(map(type, parts)) == {list} and list(map(len, parts)) == ns:  # the columns of JSON bodies
        values = list(itertools.chain.from_iterable(parts))
        types = set(map(type, values))
        if types <= _TEXTS or types <= _NUMBERS:  # each value's text is its own, as for each record alone
            return _fragments(values)
    out: list[str] = []
    for values, n in zip(parts, ns, strict=True):
        out += _fragments(_plain_list(values, n))
    return out


def _prediction_fragments(preds: list, ns: list[int]) -> list[str]:
    """The JSON text of each row's prediction over several records, as :func:`_record` gives each record's."""
    import numpy as np

    first = preds[0]
    if (set(map(type, preds)) == {np.ndarray} and len({(p.dtype, p.shape[1:]) for p in preds}) == 1
            and first.dtype.kind in "biuf" and first.ndim >= 1 and list(map(len, preds)) == ns):
        return _fragments(_prediction_list(np.concatenate(preds), sum(ns)))
    out: list[str] = []
    for pred, n in zip(preds, ns, strict=True):
        values = _prediction_list(pred, n)
        out += _fragments(values[:n] + [None] * (n - len(values)))
    return out


def _run_records(deployment: str, run: list) -> list[tuple]:
    """The records of consecutive prediction records with the same input columns, byte for byte what
    :func:`_record` gives each, converted a column at a time across all of them."""
    recs = [rec for _, _, rec in run]
    ns = [row_count(rec) for rec in recs]
    names = list(recs[0].get("inputs") or ())
    columns = [_column_fragments([rec["inputs"][k] for rec in recs], ns) for k in names]
    shown = _prediction_fragments([rec.get("predictions") for rec in recs], ns)
    template = _template(names)
    if len(ns) == sum(ns):  # one-row requests (the common case): a C format per request, as per row before
        texts = [template % row for row in zip(*columns, strict=True)] if columns else [template] * len(ns)
        preds = [f"[{x}]" for x in shown]
    else:
        texts, preds, at = [], [], 0
        for n in ns:
            texts.append(template % tuple(",".join(c[at:at + n]) for c in columns))
            preds.append("[" + ",".join(shown[at:at + n]) + "]")
            at += n
    return [(deployment, ts, rec.get("request_id"), rec.get("request_id"), _s(rec.get("version")),
             rec.get("role") or "stable", 200, rec.get("latency_ms"), n, text, pred, _ood_text(rec.get("ood"), n),
             None, None)
            for (_, ts, rec), n, text, pred in zip(run, ns, texts, preds, strict=True)]
