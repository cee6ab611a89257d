"""A request's arrays → ONE stored record of the prediction log (the writer thread's conversion).

The log stores one record per request, not one row per predicted row (issue 13: a 100-row request
cost the writer 100 JSON objects and 100 inserts). A record's texts are columnar JSON:

- ``inputs``: ``{"column": [v0, v1, ...], ...}`` (NaN stored as ``null``);
- ``predictions``: ``[p0, p1, ...]``, one JSON value per row (a label, a number, a list of class
  probabilities, an object per row for a model with several outputs);
- a numeric numpy column (or 1-/2-D numeric predictions) of a request of ``_PACK_MIN`` rows or more
  is stored *packed* instead of as a JSON list: ``{"dtype": "<f8", "shape": [n], "b64": "..."}``, its
  bytes in base64. Turning floats into decimal text was most of the writer's remaining cost (the
  shortest-repr conversion of each value); packing is a copy. A reader unpacks it (:func:`unpack`)
  to exactly the values the JSON list held: ``tolist()``, NaN → None. A column with ±inf is never
  packed (JSON refuses it, and a request holding one was never logged; so it stays);
- ``ood``: ``{"i": [reasons], ...}`` for the rows out of the training distribution only, NULL
  when none is.

Each value's JSON text is exactly the text the per-row log wrote for it (the same encoder and the
same conversions: :func:`_plain_list`, :func:`_jsonable`, :func:`_prediction_list`), so the rows a
reader expands from a record (:mod:`.logread`) are the rows the per-row log held.

``import nbprod`` does not load this module.
"""

from __future__ import annotations

import binascii
import itertools
import json
import math
from json.encoder import encode_basestring_ascii as _escape  # what json.dumps uses
from typing import Any, Iterator

try:  # a C encoder: 6-7x the stdlib on a list of texts (used where its bytes are the stdlib's, _texts_json)
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the stdlib writes the same, slower
    _orjson = None  # type: ignore[assignment]

__all__ = ["RECORD_COLUMNS", "records_of", "row_count", "rows_in", "unpack"]

#: The columns of a stored record, in the order the writer's tuples give them.
RECORD_COLUMNS = ("deployment", "ts", "request_id", "id_prefix", "version", "role", "status", "latency_ms",
                  "n_rows", "inputs", "predictions", "ood")

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


def _packed(values: Any) -> str:
    """``{"dtype":"<f8","shape":[n],"b64":"..."}``: the array's bytes, for :func:`unpack`."""
    shape = ",".join(map(str, values.shape))
    data = values if values.flags.c_contiguous else values.tobytes()  # its bytes in C order, copied only if need be
    return '{"dtype":"%s","shape":[%s],"b64":"%s"}' % (values.dtype.str, shape,
                                                        binascii.b2a_base64(data, newline=False).decode("ascii"))


def unpack(stored: Any) -> list:
    """A record's stored column or predictions → the list of values the JSON list holds (a list is one)."""
    if isinstance(stored, list):
        return stored
    import numpy as np

    arr = np.frombuffer(binascii.a2b_base64(stored["b64"]), dtype=np.dtype(stored["dtype"])).reshape(stored["shape"])
    values = arr.tolist()
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        if arr.ndim == 1:
            values = [None if v != v else v for v in values]
        else:
            values = [[None if v != v else v for v in row] for row in values]
    return values


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
                int(rec.get("status") or 500), rec.get("latency_ms"), int(rec.get("count") or 1), None, None, None)
    n = row_count(rec)
    pred: Any = rec.get("predictions")
    packed = kind == "prediction" and _packable(pred, n)
    preds = [] if packed else _prediction_list(pred, n)
    rid, version, latency = rec.get("request_id"), _s(rec.get("version")), rec.get("latency_ms")
    if kind == "shadow":
        return (deployment, ts, rid, None, version, "shadow", 200, latency, n, None,
                _dumps([_jsonable(p) for p in preds[:n]]), None)
    inputs = rec.get("inputs") or {}
    text = "{" + ",".join(_escape(str(k)) + ":" + _column_text(v, n) for k, v in inputs.items()) + "}"
    if packed:
        shown = _packed(pred if pred.ndim == 1 else pred.reshape(n, -1))
    else:
        shown = _list_text(preds[:n] + [None] * (n - len(preds)))
    return (deployment, ts, rid, rid, version, rec.get("role") or "stable", 200, latency, n, text, shown,
            _ood_text(rec.get("ood"), n))


def _column_text(values: Any, n: int) -> str:
    """One input column of a record: packed, or its JSON list."""
    return _packed(values) if _packable(values, n) and values.ndim == 1 else _list_text(_plain_list(values, n))


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
             rec.get("role") or "stable", 200, rec.get("latency_ms"), n, text, pred, _ood_text(rec.get("ood"), n))
            for (_, ts, rec), n, text, pred in zip(run, ns, texts, preds, strict=True)]
