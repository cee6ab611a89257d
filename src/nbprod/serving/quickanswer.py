"""The ``/invocations`` answer's JSON written from its parts: the bytes :func:`codecs.dumps_answer` writes
for the answer dict, without building the dict, the list of predictions or one string per prediction id.

Why: on a 100-row request the answer is ~4.5 KB, most of it the prediction ids; building 100 id
strings, a list of 100 Python numbers and then encoding them cost more than the encoding itself.
Here the ids are one ``str.join`` over pieces made once per process, the predictions are written by
orjson straight from the numpy array, and the ``ood`` of an unflagged request is ``[[],…]``.

Only where the bytes are sure to be the general path's (:func:`answer` returns None otherwise, and the
caller encodes the dict): a C-contiguous numpy array of integers, booleans or float64 values that
orjson writes as ``repr`` does (:func:`codecs._plain_floats`), a model version and OOD reasons of plain
ASCII text with nothing to escape. ``tests/test_serving_quick.py`` compares both on awkward input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from .codecs import _plain_floats

__all__ = ["answer", "ids_json"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_KINDS = frozenset("iub")
#: numpy dtype -> "plain" (integers, booleans: always the stdlib's text), "float" (float64: when
#: :func:`_plain_floats`), None (another dtype: float32/16 are written shortest, tolist() writes their
#: float64 value; text, objects, a byte order other than the machine's)
#: Keyed by the dtype object's id (hashing a dtype costs more than the rest of the check); the entry keeps
#: the dtype alive, so its id is never another dtype's while the entry exists.
_DTYPES: dict[int, tuple[Any, str | None]] = {}


def _dtype_class(dtype: Any) -> str | None:
    entry = _DTYPES.get(id(dtype))
    if entry is not None and entry[0] is dtype:
        return entry[1]
    found = None
    if dtype.isnative and dtype.kind in _KINDS:
        found = "plain"
    elif dtype.isnative and dtype.kind == "f" and dtype.itemsize == 8:
        found = "float"
    if len(_DTYPES) >= 64:
        _DTYPES.clear()
    _DTYPES[id(dtype)] = (dtype, found)
    return found

#: ``['["', '-0","', '-1","', …]``: ``request_id.join(_PIECES[:n] + ['-<n-1>"]'])`` is the ids' JSON.
_PIECES: list[str] = ['["']
_MAX_PIECES = 65536


def ids_json(request_id: str, n: int) -> str:
    """``json.dumps(["<request id>-0", …, "<request id>-<n-1>"])`` without spaces, for an id of plain
    ASCII text with nothing to escape (the server's are hex digits)."""
    if n == 1:
        return f'["{request_id}-0"]'
    if n <= 0:
        return "[]"
    if n > len(_PIECES):
        if n > _MAX_PIECES:
            return '["' + '","'.join(f"{request_id}-{i}" for i in range(n)) + '"]'
        _PIECES.extend(f'-{i - 1}","' for i in range(len(_PIECES), max(n, 1024)))
    parts = _PIECES[:n]
    parts.append(f'-{n - 1}"]')
    return request_id.join(parts)


def _plain(out: bytes) -> bool:
    """Is this orjson output also what the stdlib writes (ASCII, nothing escaped)? As dumps_answer checks."""
    return out.isascii() and b"\\" not in out and b"\x7f" not in out


_VERSIONS: dict[str, bytes | None] = {}  # a model version -> its JSON, or None when it is not plain


def _version_json(version: str) -> bytes | None:
    found = _VERSIONS.get(version, False)
    if found is False:
        out = orjson.dumps(version) if type(version) is str else b""
        found = out if out and _plain(out) else None
        if len(_VERSIONS) > 256:  # a few versions per deployment: never grow without bound anyway
            _VERSIONS.clear()
        _VERSIONS[version] = found
    return found  # type: ignore[return-value]


_NO_FLAGS: dict[int, bytes] = {}  # n -> b"[[],[],…]"


def _no_flags(n: int) -> bytes:
    found = _NO_FLAGS.get(n)
    if found is None:
        found = b"[" + b",".join([b"[]"] * n) + b"]"
        if n <= 4096:
            if len(_NO_FLAGS) > 64:
                _NO_FLAGS.clear()
            _NO_FLAGS[n] = found
    return found


def answer(pred: Any, version: str, request_id: str, n: int, with_ood: bool, ood: list | None) -> bytes | None:
    """``dumps_answer({"predictions": to_jsonable(pred), "model_version": version, "prediction_ids": ids
    [, "ood": ood or [[]] * n]}, pred)`` when it can write the same bytes itself; else None."""
    if type(pred) is not np.ndarray or not pred.ndim:
        return None
    dtype = _dtype_class(pred.dtype)
    if dtype is None or (dtype == "float" and not _plain_floats(pred)):
        return None
    v = _VERSIONS.get(version) or _version_json(version)
    if v is None:
        return None
    try:
        p = orjson.dumps(pred, option=_NUMPY)
    except TypeError:  # orjson.JSONEncodeError: an array that is not C-contiguous
        return None
    parts = [b'{"predictions":', p, b',"model_version":', v, b',"prediction_ids":', ids_json(request_id, n).encode()]
    if with_ood:
        if ood is None:
            o = _no_flags(n)
        else:
            try:
                o = orjson.dumps(ood)
            except TypeError:
                return None
            if not _plain(o):
                return None
        parts.append(b',"ood":')
        parts.append(o)
    parts.append(b"}")
    return b"".join(parts)
