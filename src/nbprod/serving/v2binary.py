"""The Open Inference Protocol's binary tensor data extension, as Triton and KServe speak it.

``tritonclient.http`` sends tensors this way by default (``set_data_from_numpy(..., binary_data=True)``)
and asks for binary outputs whenever it names none, so without this extension a Triton client with
its defaults cannot talk to the server.

The wire format (Triton's and KServe's "Binary Tensor Data Extension"):

- a request with binary tensors carries the header ``Inference-Header-Content-Length: N``; the
  first N bytes of the body are the usual JSON inference request, the rest is raw tensor data;
- each binary input has ``"parameters": {"binary_data_size": B}`` instead of ``"data"``, and the
  binary parts follow the JSON in the order of those inputs, without padding: their sizes add up
  to the rest of the body exactly;
- tensor data is little-endian, row major; BOOL is one byte (0 or 1); BYTES is, per element, a
  4-byte little-endian unsigned length followed by that many bytes; every other type has its
  native size (FP16 2 bytes, BF16 the upper half of an FP32, INT64 8, …);
- outputs come back binary when the request says ``"parameters": {"binary_data_output": true}``
  or an entry of ``"outputs"`` says ``"parameters": {"binary_data": true}`` (which wins over the
  request-wide flag); the answer then has the same layout and header, each binary output with
  ``"parameters": {"binary_data_size": B}`` and no ``"data"``.

:func:`read_request` turns either kind of body into the JSON form :func:`nbprod.serving.codecs.decode_v2`
checks and decodes (binary tensors become lists, so both kinds are decoded by one code path), plus
the outputs the client asked for. :func:`write_response` answers in the form asked for. Every
inconsistency of a binary body (a header length past the body, sizes that do not add up, a size
that does not fit the shape and datatype, a BYTES element running past its tensor) is a 400 that
says what to fix, never a 500.

Errors on the v2 routes (:func:`protocol_errors`) have the protocol's shape, ``{"error": "<message>"}``,
which is the one field a Triton or KServe client reads for its exception's text: the ``error`` is
nbprod's message and fix in words, and nbprod's own fields stay beside it, the stable code as
``code`` (on the other routes it is ``error``), ``message`` and ``fix``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import numpy as np
from starlette.responses import Response

from . import codecs

__all__ = ["HEADER", "EXTENSION", "OutputChoice", "read_request", "write_response", "protocol_errors",
           "protocol_error"]

#: The HTTP header giving the length of the JSON part of a body with binary tensors.
HEADER = "Inference-Header-Content-Length"
#: The name of this extension in the server metadata (``GET /v2``), as Triton reports it.
EXTENSION = "binary_tensor_data"

_NUMPY = {"BOOL": "u1", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "u1",
          "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
          "BF16": "<u2"}
_LENGTH = struct.Struct("<I")
_SPEC = "see the Open Inference Protocol's binary tensor data extension (KServe, Triton)"


@dataclass
class OutputChoice:
    """What the client asked for: every output binary (``binary_data_output``), or per output by
    name (``outputs`` in the request: only those are answered, each binary or JSON)."""

    binary_all: bool = False
    requested: dict[str, bool] | None = None  # name -> binary; None: every output

    def binary(self, name: str) -> bool:
        if self.requested is not None and name in self.requested:
            return self.requested[name]
        return self.binary_all


def _bad(message: str, fix: str, error: str = "bad_binary_tensor") -> Exception:
    return codecs.http_error(message, fix, error=error)


def _header_length(value: str, body: bytes) -> int:
    text = value.strip()
    if not text.isdigit():
        raise _bad(f"the {HEADER} header is {value!r}, not a number of bytes",
                   f"send the byte length of the JSON part of the body in {HEADER}")
    n = int(text)
    if n == 0 or n > len(body):
        raise _bad(f"the {HEADER} header says the JSON part is {n} bytes, but the body is {len(body)} bytes",
                   f"send the byte length of the JSON part (at most the body's length) in {HEADER}; {_SPEC}")
    return n


def _elements(name: str, shape: Any) -> int:
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise _bad(f"input {name!r} has shape {shape!r}", "use shape [n] or [n, k] of non-negative integers",
                   error="wrong_shape")
    return math.prod(shape)


def _bytes_elements(name: str, raw: bytes, count: int) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise _bad(f"input {name!r}: a BYTES element's 4-byte length is cut off at byte {pos} of {len(raw)}",
                       "prefix every element with its length as a 4-byte little-endian unsigned integer")
        (size,) = _LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise _bad(f"input {name!r}: a BYTES element of {size} bytes runs past the tensor's "
                       f"{len(raw)} bytes (binary_data_size)",
                       "make binary_data_size the total of every element's 4-byte length and bytes")
        try:
            out.append(raw[pos:pos + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise _bad(f"input {name!r}: element {len(out)} is not UTF-8 text",
                       "send the columns' values as UTF-8 text", error="wrong_type") from None
        pos += size
    if len(out) != count:
        raise _bad(f"input {name!r} holds {len(out)} BYTES elements, but its shape needs {count}",
                   "send one element per value of the shape", error="wrong_shape")
    return out


def _tensor(t: dict, raw: bytes) -> list:
    """The binary data of input ``t`` as the flat list its JSON ``data`` would be."""
    name, datatype = str(t.get("name")), t.get("datatype")
    count = _elements(name, t.get("shape"))
    if datatype == "BYTES":
        return _bytes_elements(name, raw, count)
    dtype = _NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise _bad(f"input {name!r} has unknown datatype {datatype!r}",
                   f"use one of {', '.join([*_NUMPY, 'BYTES'])}", error="wrong_type")
    width = np.dtype(dtype).itemsize
    if len(raw) != count * width:
        raise _bad(f"input {name!r}: shape {t['shape']} of {datatype} needs {count * width} bytes "
                   f"({width} per value), but binary_data_size is {len(raw)}",
                   "send the values in the datatype's native size, little-endian, without padding")
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if values.size and values.max() > 1:
            raise _bad(f"input {name!r}: a BOOL value is a byte other than 0 or 1",
                       "send false as the byte 0 and true as the byte 1", error="wrong_type")
        return values.astype(bool).tolist()
    if datatype == "BF16":  # the upper 16 bits of an FP32
        return (values.astype("<u4") << 16).view("<f4").tolist()
    return values.tolist()


_JSON_TYPE = {"BF16": "FP32"}  # datatypes the JSON decoder knows by another name once decoded


def _binary_size(t: dict) -> int | None:
    params = t.get("parameters") if isinstance(t, dict) else None
    if not isinstance(params, dict) or "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _bad(f"input {t.get('name')!r} has binary_data_size {size!r}",
                   "send binary_data_size as the tensor's length in bytes (an integer >= 0)")
    if "data" in t:
        raise _bad(f"input {t.get('name')!r} has both \"data\" and binary_data_size",
                   "send a tensor either as JSON \"data\" or as binary data after the JSON, not both")
    return size


def _choice(payload: dict) -> OutputChoice:
    """Take the extension's own parameters out of the request (they are not the model's params)."""
    choice = OutputChoice()
    params = payload.get("parameters")
    if isinstance(params, dict) and "binary_data_output" in params:
        flag = params["binary_data_output"]
        if not isinstance(flag, bool):
            raise _bad(f"binary_data_output is {flag!r}, not true or false", "send \"binary_data_output\": true")
        choice.binary_all = flag
        payload["parameters"] = {k: v for k, v in params.items() if k != "binary_data_output"}
    outputs = payload.pop("outputs", None)
    if outputs is None:
        return choice
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise _bad("\"outputs\" must be a list of objects with a \"name\"",
                   "send \"outputs\": [{\"name\": \"predict\"}] (GET /v2/models/{name} lists the outputs), "
                   "or leave it out for every output", error="wrong_shape")
    choice.requested = {}
    for o in outputs:
        params = o.get("parameters") or {}
        if not isinstance(params, dict):
            raise _bad(f"output {o['name']!r}: \"parameters\" is not an object", "send {\"binary_data\": true}",
                       error="wrong_shape")
        if params.get("classification"):
            raise _bad(f"output {o['name']!r} asks for a classification, which this server does not compute",
                       "leave out the classification parameter; the output holds the model's predictions",
                       error="unsupported_parameter")
        flag = params.get("binary_data", choice.binary_all)
        if not isinstance(flag, bool):
            raise _bad(f"output {o['name']!r}: binary_data is {flag!r}, not true or false",
                       "send \"binary_data\": true or false")
        choice.requested[o["name"]] = flag
    return choice


def read_request(body: bytes, header_length: str | None) -> tuple[Any, OutputChoice]:
    """The JSON form of an inference request (binary tensors as ``data`` lists) and the outputs asked for.

    Without ``header_length`` (the :data:`HEADER` header) the whole body is JSON.
    """
    if header_length is None:
        payload = codecs.parse_json(body)
        rest = b""
    else:
        n = _header_length(header_length, body)
        payload = codecs.parse_json(body[:n])
        rest = body[n:]
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        return payload, OutputChoice()  # decode_v2 says what is wrong with it
    choice = _choice(payload)
    sizes = [_binary_size(t) for t in payload["inputs"]]
    binary = [(t, s) for t, s in zip(payload["inputs"], sizes, strict=True) if s is not None]
    if not binary:
        if rest:
            raise _bad(f"the body has {len(rest)} bytes after its JSON part, but no input has binary_data_size",
                       f"give each binary input \"parameters\": {{\"binary_data_size\": <bytes>}}; {_SPEC}")
        return payload, choice
    if header_length is None:
        raise _bad(f"input {binary[0][0].get('name')!r} has binary_data_size, but the request has no {HEADER} header",
                   f"send {HEADER}: <bytes of the JSON part> with binary tensor data; {_SPEC}")
    total = sum(s for _, s in binary)
    if total != len(rest):
        raise _bad(f"the binary_data_size of the inputs add up to {total} bytes, but {len(rest)} bytes follow "
                   "the JSON part",
                   f"make {HEADER} the JSON part's length and each binary_data_size its tensor's length")
    pos = 0
    for t, size in binary:
        data = _tensor(t, rest[pos:pos + size])
        pos += size
        t["data"] = data
        t["datatype"] = _JSON_TYPE.get(t["datatype"], t["datatype"])
        t["parameters"] = {k: v for k, v in t["parameters"].items() if k != "binary_data_size"}
    return payload, choice


def _encode(output: dict) -> bytes:
    """One output's ``data`` as binary tensor data (its datatype is one :func:`codecs.encode_v2_outputs` writes)."""
    datatype, data = output["datatype"], output["data"]
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(raw)) + raw for raw in (str(v).encode("utf-8") for v in data))
    if datatype == "BOOL":
        return np.asarray(data, dtype=bool).astype("u1").tobytes()
    return np.asarray(data, dtype=_NUMPY[datatype]).tobytes()


def write_response(payload: dict, choice: OutputChoice) -> dict | Response:
    """The inference response as the client asked: ``payload`` itself (JSON) or, when an output is
    wanted binary, a :class:`Response` with the JSON part, the binary outputs and :data:`HEADER`.

    ``outputs`` named in the request must exist (else a 400 naming the outputs there are).
    """
    outputs = payload["outputs"]
    if choice.requested is not None:
        names = [o["name"] for o in outputs]
        unknown = [n for n in choice.requested if n not in names]
        if unknown:
            raise _bad(f"the model has no output {unknown[0]!r}",
                       f"ask for one of: {', '.join(names)} (or leave \"outputs\" out)", error="unknown_output")
        outputs = [o for o in outputs if o["name"] in choice.requested]
    parts: list[bytes] = []
    answered = []
    for o in outputs:
        if choice.binary(o["name"]):
            raw = _encode(o)
            parts.append(raw)
            o = {k: v for k, v in o.items() if k != "data"}
            o["parameters"] = {**(o.get("parameters") or {}), "binary_data_size": len(raw)}
        answered.append(o)
    payload = {**payload, "outputs": answered}
    if not parts:
        return payload
    head = codecs.dumps(payload)
    return Response(head + b"".join(parts), status_code=200, media_type="application/octet-stream",
                    headers={HEADER: str(len(head))})


# --- errors in the protocol's shape -------------------------------------------------------------


def protocol_error(response: Response) -> Response:
    """``response`` with an nbprod error body (``{"error": code, "message", "fix"}``) in the
    protocol's shape: ``error`` the message and fix in words, the code kept as ``code``. Any other
    response (a success, a readiness ``{"ready": false}``) is returned as it is."""
    if response.status_code < 400 or not (response.media_type or "").startswith("application/json"):
        return response
    try:
        body = json.loads(getattr(response, "body", b"") or b"null")
    except ValueError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or "message" not in body:
        return response
    text = str(body["message"]).rstrip(".")
    if body.get("fix"):
        text += f". Fix: {body['fix']}"
    raw = json.dumps({"error": text, "code": body["error"], **{k: v for k, v in body.items() if k != "error"}},
                     ensure_ascii=False).encode()
    response.body = raw
    response.headers["content-length"] = str(len(raw))
    return response


def protocol_errors(handler: Callable[[Any], Awaitable[Response]]) -> Callable[[Any], Awaitable[Response]]:
    """A v2 route's handler whose error answers are in the protocol's shape (:func:`protocol_error`)."""

    async def route(request: Any) -> Response:
        return protocol_error(await handler(request))

    route.__name__ = route.__qualname__ = getattr(handler, "__name__", "v2_route")
    route.__doc__ = handler.__doc__
    return route
