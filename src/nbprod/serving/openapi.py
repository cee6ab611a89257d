"""The server's OpenAPI 3.1 description, built from what the server knows about its model.

``GET /openapi.json`` describes every route the app serves: ``POST /invocations`` in each MLflow
request form (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, ``text/csv``)
with the model's columns — their types from the signature, and the ranges and categories of the
training profile (the very bounds the OOD check uses: under ``ood="reject"`` as ``minimum`` /
``maximum`` / ``enum``, which the server enforces; under ``ood="flag"`` as the ``x-nbprod-ood-range`` /
``x-nbprod-categories`` extensions, since such rows are answered and flagged) —, the Open Inference
Protocol v2 routes (JSON and binary tensors), the probes, and every route another layer adds
(``POST /feedback``): a route passed to ``create_app(routes=...)`` brings its own operations with
:func:`describe`. ``GET /docs`` is a small self-contained page that renders the document (no CDN, no
external script: it works offline).

Why here and built from a :class:`~nbprod.serving.loader.ServedVersion`: the served version already
holds the signature and the compiled OOD checker (ranges with the tolerance applied, complete
category sets), so the document says exactly what the server checks; :func:`for_model_dir` builds
the same facts from a model directory, so ``nbprod package`` writes the document the bundle's
server will serve.

The document names columns, ranges and categories of the training data, so it needs the bearer
token when the server has one (like ``GET /v2/models/{name}``); the docs page asks for it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as HttpRoute

from .._version import __version__
from ..data.ood import CategoryCheck, RangeCheck
from ..errors import ServingError
from .codecs import Column
from .loader import ServedVersion
from .spec import DeploymentSpec

__all__ = ["OPENAPI_VERSION", "describe", "document", "for_model_dir", "openapi_json", "docs_page", "routes",
           "BUILTIN_PATHS"]

OPENAPI_VERSION = "3.1.0"
_ATTR = "openapi_operations"
_ERROR = {"$ref": "#/components/schemas/Error"}
_V2_ERROR = {"$ref": "#/components/schemas/V2Error"}


def describe(route: BaseRoute, operations: dict[str, dict]) -> BaseRoute:
    """Attach OpenAPI operations (``{"post": {...}}``) to a route served beside the model endpoints.

    The operations may refer to ``#/components/schemas/Error`` (the server's error body) and
    ``#/components/responses/Error``; the bearer-token requirement is added when the server has a token.
    """
    setattr(route, _ATTR, operations)
    return route


# --- columns -----------------------------------------------------------------------------------

_NUMBER = {"double": "number", "float": "number", "long": "integer", "integer": "integer"}
_V2_TYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL"}


def _plain(v: Any) -> Any:
    """A bound as JSON: numbers stay numbers, datetimes become ISO text."""
    if isinstance(v, np.datetime64):
        return str(np.datetime_as_string(v, unit="s"))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _bounds_text(lo: Any, hi: Any) -> str:
    return f"{lo} to {hi}"


def _column_schema(col: Column, rng: RangeCheck | None, cats: CategoryCheck | None, reject: bool,
                   tolerance: float) -> dict:
    t = col.type
    schema: dict[str, Any]
    if t in _NUMBER:
        schema = {"type": _NUMBER[t]} if _NUMBER[t] == "integer" else {"type": ["number", "null"]}
        if t in ("long", "integer"):
            schema["format"] = "int64" if t == "long" else "int32"
    elif t == "boolean":
        schema = {"type": ["boolean", "null"]}
    elif t == "string":
        schema = {"type": ["string", "null"]}
    elif t == "datetime":
        schema = {"type": ["string", "null"], "format": "date-time"}
    else:
        schema = {}
    notes = [f"MLflow type {t}" if t else "no type in the signature"]
    if rng is not None:
        lo, hi = _plain(rng.lo), _plain(rng.hi)
        notes.append(f"training range {_bounds_text(lo, hi)}"
                     + (f" (the seen range widened by {tolerance:g} of its span)" if tolerance else ""))
        if reject and rng.kind == "numeric":
            schema["minimum"], schema["maximum"] = lo, hi
        else:
            schema["x-nbprod-ood-range"] = {"minimum": lo, "maximum": hi}
    if cats is not None:
        seen = sorted(cats.seen)
        notes.append(f"categories seen in training: {', '.join(seen[:20])}{' …' if len(seen) > 20 else ''}")
        if reject and t == "string":
            schema["enum"] = [*seen, None]
        else:
            schema["x-nbprod-categories"] = seen
    if rng is not None or cats is not None:
        notes.append("a value outside is refused with 400 out_of_distribution" if reject else
                     "a value outside is answered and flagged in the row's `ood` reasons")
    if t in ("long", "integer"):
        notes.append("required in every row (an integer column has no missing value)")
    elif t is not None:
        notes.append("null is a missing value")
    schema["description"] = "; ".join(notes) + "."
    return schema


def _example(col: Column, rng: RangeCheck | None, cats: CategoryCheck | None) -> Any:
    t = col.type
    if cats is not None and cats.seen:
        first = sorted(cats.seen)[0]
        return {"true": True, "false": False}.get(first.lower(), first) if t == "boolean" else first
    if rng is not None and rng.kind == "numeric":
        lo, hi = float(rng.lo), float(rng.hi)
        if math.isfinite(lo) and math.isfinite(hi):
            mid = (lo + hi) / 2
            if t in ("long", "integer"):
                return int(round(mid))
            rounded = round(mid, 2)
            return rounded if lo <= rounded <= hi else mid
    if rng is not None:
        return _plain(rng.lo)
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False,
            "datetime": "2024-01-01T00:00:00"}.get(t or "", "text")


def _columns(model: ServedVersion, reject: bool) -> tuple[dict, list[str], dict]:
    """``(properties, required, example row)`` of the model's input columns."""
    ood = model.ood
    ranges = {r.name: r for r in (ood.ranges if ood is not None else ())}
    cats = {c.name: c for c in (ood.categories if ood is not None else ())}
    tolerance = ood.tolerance if ood is not None else 0.0
    props, required, example = {}, [], {}
    for col in model.signature or []:
        props[col.name] = _column_schema(col, ranges.get(col.name), cats.get(col.name), reject, tolerance)
        example[col.name] = _example(col, ranges.get(col.name), cats.get(col.name))
        if col.required:
            required.append(col.name)
    return props, required, example


# --- the document -------------------------------------------------------------------------------


def _error_response(description: str, schema: dict = _ERROR) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_STATUS = {
    400: "bad input: the error code and message say which column or field, the fix what to send",
    401: "missing or wrong bearer token",
    404: "no such model or version here",
    408: "the body did not arrive in time",
    413: "the body is over the size limit",
    415: "unsupported content type",
    422: "the Idempotency-Key was used for another request",
    503: "not ready, or the stable model failed (Retry-After)",
    504: "the prediction took longer than the deployment's timeout",
}


def _errors(*codes: int, auth: bool, v2: bool = False) -> dict:
    """Error responses by status; ``v2``: in the Open Inference Protocol's shape (``V2Error``)."""
    prefix = "V2E" if v2 else "E"
    return {str(c): {"$ref": f"#/components/responses/{prefix}{c}"} for c in codes if c != 401 or auth}


def _json(schema: dict, example: Any = None) -> dict:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _components(model: ServedVersion, reject: bool, auth: bool) -> tuple[dict, dict]:
    props, required, example = _columns(model, reject)
    names = list(props)
    row: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True,
                           "description": "One row, column: value. Columns the model does not use are ignored."}
    if required:
        row["required"] = required
    values = {"type": "array", "items": {}, "minItems": 1}
    rows_of_values: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "array"}}
    if names:
        rows_of_values["items"] = {"type": "array", "prefixItems": [props[n] for n in names],
                                   "minItems": len(names), "maxItems": len(names),
                                   "description": f"One row as a list in signature order: {', '.join(names)}."}
    columns: dict[str, Any] = {"type": "object", "additionalProperties": values,
                               "description": "Columns, name: list of values (one per row)."}
    if names:
        columns["properties"] = {n: {"type": "array", "items": props[n], "minItems": 1} for n in names}
        if required:
            columns["required"] = required
    params = {"type": "object", "additionalProperties": True,
              "description": "MLflow params, passed to the model when its signature declares params."}
    tabular = {"oneOf": [{"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}},
                         rows_of_values, {"$ref": "#/components/schemas/Columns"}]}

    def form(key: str, value: dict, description: str) -> dict:
        return {"type": "object", "required": [key], "additionalProperties": False, "description": description,
                "properties": {key: value, "params": {"$ref": "#/components/schemas/Params"}}}

    split = {"type": "object", "required": ["data"],
             "properties": {"columns": {"type": "array", "items": {"type": "string"},
                                        **({"example": names} if names else {})},
                            "index": {"type": "array"},
                            "data": {"type": "array", "minItems": 1,
                                     "items": {"type": "array", "minItems": 1},
                                     "description": "Rows, each a list of one value per column, in the order of "
                                                    "`columns` (default: the signature's order)."}}}
    scalar = {"FP64": {"type": "number"}, "FP32": {"type": "number"}, "INT64": {"type": "integer"},
              "INT32": {"type": "integer"}, "BOOL": {"type": "boolean"}, "BYTES": {"type": "string"}}.get(
        model.output_datatype or "", {})
    prediction = {"anyOf": [scalar, {"type": "array", "items": scalar}]} if scalar else {}
    ood = {"type": "array", "items": {"type": "array", "items": {"type": "string"}},
           "description": "Per row, the reasons it is out of the training distribution (empty: in it)."}
    datatypes = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                 "FP64", "BF16", "BYTES"]
    tensor_columns = ", ".join(f"{c.name} ({_V2_TYPES.get(c.type or '', 'BYTES')})" for c in model.signature or [])
    schemas = {
        "Row": row,
        "Columns": columns,
        "Params": params,
        "DataframeSplit": form("dataframe_split", split, "MLflow's pandas split orient."),
        "DataframeRecords": form("dataframe_records", {"type": "array", "minItems": 1,
                                                       "items": {"$ref": "#/components/schemas/Row"}},
                                 "MLflow's pandas records orient: a list of rows."),
        "Instances": form("instances", tabular, "TF-serving style: rows (objects or lists) or columns."),
        "Inputs": form("inputs", tabular, "TF-serving style: rows (objects or lists) or columns."),
        "InvocationsRequest": {"oneOf": [{"$ref": f"#/components/schemas/{k}"}
                                         for k in ("DataframeSplit", "DataframeRecords", "Instances", "Inputs")]},
        "Predictions": {"type": "object", "required": ["predictions", "model_version", "prediction_ids"],
                        "properties": {"predictions": {"type": "array", "items": prediction,
                                                       "description": f"The model's {model.predict_fn} output, "
                                                                      "one per row."},
                                       "model_version": {"type": "string"},
                                       "prediction_ids": {"type": "array", "items": {"type": "string"},
                                                          "description": "One per row, for POST /feedback."},
                                       "ood": ood}},
        "Error": {"type": "object", "required": ["error", "message", "fix"],
                  "properties": {"error": {"type": "string", "description": "a stable error code"},
                                 "message": {"type": "string", "description": "what is wrong"},
                                 "fix": {"type": "string", "description": "what to do about it"}}},
        "V2Error": {"type": "object", "required": ["error", "code", "message", "fix"],
                    "description": "An error on a v2 route, in the Open Inference Protocol's shape: `error` is "
                                   "the text a Triton or KServe client shows; nbprod's code is `code`.",
                    "properties": {"error": {"type": "string", "description": "the message and the fix, in words"},
                                   "code": {"type": "string", "description": "a stable error code"},
                                   "message": {"type": "string", "description": "what is wrong"},
                                   "fix": {"type": "string", "description": "what to do about it"}}},
        "InferenceRequest": {
            "type": "object", "required": ["inputs"],
            "description": ("Open Inference Protocol v2. One tensor per column — "
                            f"{tensor_columns or 'named as the model columns'} — with shape [n] or [n, 1], "
                            "or one [n, k] tensor whose k values per row follow the signature's column order."),
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}},
                               "additionalProperties": True},
                "inputs": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "shape", "datatype"],
                    "properties": {"name": {"type": "string"},
                                   "shape": {"type": "array", "minItems": 1, "maxItems": 2,
                                             "items": {"type": "integer", "minimum": 0}},
                                   "datatype": {"type": "string", "enum": datatypes},
                                   "data": {"type": "array"},
                                   "parameters": {"type": "object", "properties": {
                                       "binary_data_size": {"type": "integer", "minimum": 0}}}}}},
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "enum": [model.predict_fn]},
                                   "parameters": {"type": "object",
                                                  "properties": {"binary_data": {"type": "boolean"}}}}}}}},
        "InferenceResponse": {
            "type": "object", "required": ["model_name", "outputs"],
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                           "id": {"type": "string"},
                           "outputs": {"type": "array", "items": {"type": "object", "properties": {
                               "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                               "datatype": {"type": "string"}, "data": {"type": "array"},
                               "parameters": {"type": "object"}}}},
                           "prediction_ids": {"type": "array", "items": {"type": "string"}},
                           "ood": ood, "parameters": {"type": "object"}}},
        "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"],
                           "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                          "shape": {"type": "array", "items": {"type": "integer"}}}},
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
                          "properties": {"name": {"type": "string"},
                                         "versions": {"type": "array", "items": {"type": "string"}},
                                         "platform": {"type": "string"},
                                         "inputs": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                                         "outputs": {"type": "array",
                                                     "items": {"$ref": "#/components/schemas/TensorMetadata"}}}},
    }
    components: dict[str, Any] = {"schemas": schemas,
                                  "responses": {f"E{c}": _error_response(d) for c, d in _STATUS.items()}}
    components["responses"].update({f"V2E{c}": _error_response(d, _V2_ERROR) for c, d in _STATUS.items()})
    components["responses"]["Error"] = _error_response("an error: code, message and fix")
    if auth:
        components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                        "description": "the token shown at deploy time"}}
    return components, example


def _probe(summary: str, content: dict, *codes: int) -> dict:
    responses = {"200": {"description": "OK", "content": content}}
    for c in codes:
        responses[str(c)] = {"description": "not ready", "content": content}
    return {"get": {"summary": summary, "tags": ["probes"], "responses": responses}}


def _text() -> dict:
    return {"text/plain": {"schema": {"type": "string"}}}


def _builtin_paths(spec: DeploymentSpec, model: ServedVersion, example: dict, auth: bool) -> dict:
    name_param = {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string"}, "example": spec.name,
                  "description": "the deployment's name, or a served model's name"}
    version_param = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
                     "example": model.version}
    key = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string",
                                                                                       "maxLength": 255},
           "description": "a repeated key with the same request replays the stored answer"}
    answer_headers = {"X-Model-Version": {"schema": {"type": "string"}, "description": "the answering version"},
                      "X-Prediction-Id": {"schema": {"type": "string"}, "description": "the request id"}}
    csv_example = ",".join(example) + "\n" + ",".join(str(v) for v in example.values()) + "\n" if example else None
    invocations = {"post": {
        "summary": "Predict (MLflow scoring protocol)", "tags": ["predictions"], "operationId": "invocations",
        "description": ("The request forms of `mlflow models serve`: `dataframe_split`, `dataframe_records`, "
                        "`instances`, `inputs` (each with optional `params`), and `text/csv` with a header row. "
                        f"Out-of-distribution rows are {'refused (400)' if spec.ood == 'reject' else 'flagged'}."),
        "parameters": [key],
        "requestBody": {"required": True, "content": {
            **_json({"$ref": "#/components/schemas/InvocationsRequest"},
                    {"dataframe_records": [example]} if example else None),
            "text/csv": {"schema": {"type": "string"}, **({"example": csv_example} if csv_example else {})}}},
        "responses": {"200": {"description": "one prediction per row", "headers": answer_headers,
                              "content": _json({"$ref": "#/components/schemas/Predictions"})},
                      **_errors(400, 401, 408, 413, 415, 422, 503, 504, auth=auth)}}}
    v2_tensors = [{"name": n, "shape": [1], "datatype": _V2_TYPES.get(c.type or "", "BYTES"), "data": [example[n]]}
                  for c in model.signature or [] for n in [c.name] if n in example]
    infer_params = [key]  # Inference-Header-Content-Length belongs to octet-stream bodies only: in the text
    infer = {"post": {
        "summary": "Predict (Open Inference Protocol v2)", "tags": ["v2"], "parameters": infer_params,
        "description": ("JSON tensors, or Triton's and KServe's binary tensor data extension "
                        "(`application/octet-stream`): the JSON request first, its byte length in the header "
                        "`Inference-Header-Content-Length`, then each binary input's bytes in order "
                        "(`binary_data_size`); `binary_data_output` or an output's `binary_data` asks for binary "
                        "outputs, answered the same way."),
        "requestBody": {"required": True, "content": {
            **_json({"$ref": "#/components/schemas/InferenceRequest"},
                    {"inputs": v2_tensors} if v2_tensors else None),
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "the outputs", "headers": answer_headers, "content": {
            **_json({"$ref": "#/components/schemas/InferenceResponse"}),
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            **_errors(400, 401, 404, 408, 413, 415, 422, 503, 504, auth=auth, v2=True)}}}
    metadata = {"get": {"summary": "Model metadata (v2)", "tags": ["v2"],
                        "responses": {"200": {"description": "inputs and outputs",
                                              "content": _json({"$ref": "#/components/schemas/ModelMetadata"})},
                                      **_errors(401, 404, 503, auth=auth, v2=True)}}}
    ready_schema = {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}
    ready = {"get": {"summary": "Model readiness (v2)", "tags": ["v2"],
                     "responses": {"200": {"description": "ready", "content": _json(ready_schema)},
                                   "404": {"description": "no such model or version", "content": {
                                       "application/json": {"schema": {"anyOf": [ready_schema, _V2_ERROR]}}}},
                                   **_errors(401, 503, auth=auth, v2=True)}}}
    obj = {"type": "object"}
    paths = {
        "/invocations": invocations,
        "/ping": _probe("Liveness and readiness (text)", _text(), 503),
        "/health": _probe("Readiness with the served versions", _json(obj), 503),
        "/version": {"get": {"summary": "What is served: deployment, generation, versions, fast path",
                             "tags": ["probes"], "responses": {"200": {"description": "OK", "content": _json(obj)},
                                                               **_errors(401, auth=auth)}}},
        "/metrics": _probe("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}),
        "/v2": {"get": {"summary": "Server metadata (v2)", "tags": ["v2"],
                        "responses": {"200": {"description": "name, version and extensions", "content": _json(
                            {"type": "object", "properties": {"name": {"type": "string"},
                                                              "version": {"type": "string"},
                                                              "extensions": {"type": "array",
                                                                             "items": {"type": "string"}}}})}}}},
        "/v2/health/live": _probe("Liveness (v2)", _json({"type": "object",
                                                         "properties": {"live": {"type": "boolean"}}})),
        "/v2/health/ready": _probe("Readiness (v2)", _json({"type": "object",
                                                           "properties": {"ready": {"type": "boolean"}}}), 503),
        "/v2/models/{name}": metadata,
        "/v2/models/{name}/ready": ready,
        "/v2/models/{name}/versions/{version}": metadata,
        "/v2/models/{name}/versions/{version}/ready": ready,
        "/v2/models/{name}/infer": infer,
        "/v2/models/{name}/versions/{version}/infer": infer,
        "/openapi.json": {"get": {"summary": "This document", "tags": ["docs"],
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": _json(obj)},
                                                **_errors(401, 503, auth=auth)}}},
        "/docs": {"get": {"summary": "A page rendering this document (self-contained, works offline)",
                          "tags": ["docs"], "responses": {"200": {"description": "HTML", "content": {
                              "text/html": {"schema": {"type": "string"}}}}}}},
    }
    if auth:
        for path in ("/invocations", "/version", "/openapi.json", *(p for p in paths if p.startswith("/v2/models"))):
            for op in paths[path].values():
                op["security"] = [{"bearerAuth": []}]
    for path, item in paths.items():
        params = [name_param] if "{name}" in path else []
        if "{version}" in path:
            params.append(version_param)
        if params:  # a copy: the routes with and without {version} share their operations
            paths[path] = {**item, "parameters": params}
    return paths


#: The paths :func:`document` describes itself; any other route of the app is an extra route.
BUILTIN_PATHS = frozenset({"/invocations", "/ping", "/health", "/version", "/metrics", "/v2", "/v2/health/live",
                           "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                           "/v2/models/{name}/versions/{version}", "/v2/models/{name}/versions/{version}/ready",
                           "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer", "/openapi.json",
                           "/docs"})


def _extra(route: BaseRoute, auth: bool) -> tuple[str, dict] | None:
    path = getattr(route, "path", None)
    if not isinstance(path, str) or path in BUILTIN_PATHS:
        return None
    operations = getattr(route, _ATTR, None)
    if operations is None:
        methods = sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"})
        operations = {m.lower(): {"summary": f"{m} {path}", "responses": {"default": {"description": "see the "
                                                                                      "route's documentation"}}}
                      for m in methods}
    item = {m: dict(op) for m, op in operations.items()}
    if auth:
        for op in item.values():
            op.setdefault("security", [{"bearerAuth": []}])
    return path, item


def _signature_key(model: ServedVersion) -> list[tuple[str, str | None, bool]]:
    return [(c.name, c.type, c.required) for c in model.signature or []]


def _routed_versions(model: ServedVersion, routed: Sequence[tuple[str, float, ServedVersion]], reject: bool,
                     schemas: dict) -> tuple[list[dict], list[str]]:
    """Each routed version with the schema of its rows: ``Row`` when its signature is the stable's,
    else its own ``Row_v<version>`` (added to ``schemas``); and a sentence per version that differs."""
    entries, notes = [], []
    for role, weight, served in routed:
        ref = "#/components/schemas/Row"
        if served is not model and _signature_key(served) != _signature_key(model):
            name = "Row_v" + re.sub(r"[^A-Za-z0-9._-]", "_", str(served.version))
            props, required, _ = _columns(served, reject)
            row: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True,
                                   "description": f"One row for version {served.version} ({role}), whose "
                                                  "signature differs from the stable version's."}
            if required:
                row["required"] = required
            schemas[name] = row
            ref = f"#/components/schemas/{name}"
            share = "a copy of each request, answered by the stable" if role == "shadow" else f"{weight:g}% of requests"
            notes.append(f"version {served.version} ({role}, {share}) has another signature: its rows are `{name}`")
        entries.append({"version": str(served.version), "role": role, "weight": weight, "schema": ref})
    return entries, notes


def document(spec: DeploymentSpec, model: ServedVersion, *, routes: Sequence[BaseRoute] = (),
             auth: bool = True, routed: Sequence[tuple[str, float, ServedVersion]] = ()) -> dict:
    """The OpenAPI 3.1 document of a server answering ``spec`` with ``model`` as its stable version.

    ``routes``: the routes other layers add (each described by :func:`describe`, else listed
    with its methods); ``auth``: whether the server asks for a bearer token; ``routed``: every
    version the server routes to, ``(role, weight, version)`` with the stable among them. The
    request schemas are the stable's; a canary, split or shadow version with another signature
    gets its own row schema (``Row_v<version>``), named in the description, in the
    ``/invocations`` operation and in ``x-nbprod-routes`` (every routed version and its row schema):
    a request may be answered by any weighted version, so a client reads what each one needs.
    """
    reject = spec.ood == "reject"
    components, example = _components(model, reject, auth)
    paths = _builtin_paths(spec, model, example, auth)
    for route in routes:
        found = _extra(route, auth)
        if found is not None:
            paths[found[0]] = found[1]
    title = f"{model.name} (version {model.version})" if model.name else spec.name
    description = (f"nbprod {__version__} model server for deployment `{spec.name}`, stable version "
                   f"{model.version}. Out-of-distribution rows: {spec.ood}.")
    entries, notes = _routed_versions(model, routed, reject, components["schemas"])
    if notes:
        differs = ("The request schemas are the stable version's; " + "; ".join(notes) + ". A request to "
                   "/invocations or /v2/models/{name}/infer may be answered by any weighted version, so send the "
                   "columns each needs; /v2/models/{name}/versions/{version}/infer reaches one version.")
        description += " " + differs
        operation = paths["/invocations"]["post"]
        operation["description"] += " " + differs
    doc = {"openapi": OPENAPI_VERSION,
           "info": {"title": title, "version": str(model.version), "description": description},
           "tags": [{"name": "predictions"}, {"name": "v2"}, {"name": "probes"}, {"name": "docs"}],
           "paths": paths, "components": components}
    if len(entries) > 1:
        doc["x-nbprod-routes"] = entries
    return doc


def for_model_dir(path: str | Path, spec: DeploymentSpec, *, name: str, version: str,
                  routes: Sequence[BaseRoute] = (), auth: bool = True) -> dict:
    """:func:`document` for a model directory, as a server loading it would build it (the signature
    from MLmodel, the ranges and categories from ``nbprod/profile.json``); no model is loaded."""
    from .loader import NBPROD_DIR, _ood_checker, _output_datatype, _predict_fn, _read_mlmodel, _signature

    path = Path(path)
    mlmodel = _read_mlmodel(path)
    signature, has_params = _signature(mlmodel)
    profile = None
    profile_file = path / NBPROD_DIR / "profile.json"
    if profile_file.is_file():
        from ..data.profile import Profile

        profile = Profile.from_json(profile_file.read_text(encoding="utf-8"))
    served = ServedVersion(name, str(version), str(path), path, signature, has_params, ood=_ood_checker(profile),
                           predict_fn=_predict_fn(mlmodel), output_datatype=_output_datatype(mlmodel))
    return document(spec, served, routes=routes, auth=auth)


# --- the routes ---------------------------------------------------------------------------------


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``: the document of what this app serves now (its stable version, and
    the row schema of each routed version whose signature differs)."""
    from .app import error_response, json_response  # here: app imports this module for its routes

    state = request.app.state.serving
    try:
        state.check_auth(request)
        if not state.ready:
            raise ServingError("the server is still loading its models", "retry in a moment", status=503,
                               code="not_ready")
    except ServingError as err:
        return error_response(err)
    table = state.router.current
    auth = bool(state.auth and (table.spec.token_sha256 or state.token_sha256))
    routed = [(r.role, r.weight, served) for r, served in table.routes if served is not None]
    return json_response(document(table.spec, table.stable.served, routes=request.app.routes, auth=auth,
                                  routed=routed))


async def docs_page(request: Request) -> Response:
    """``GET /docs``: the page rendering ``openapi.json`` (inline script and style only)."""
    return Response(_page(), media_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                   "connect-src 'self'; base-uri 'none'; form-action 'none'"})


def routes() -> list[BaseRoute]:
    """``GET /openapi.json`` and ``GET /docs``, for ``create_app``."""
    return [HttpRoute("/openapi.json", openapi_json, methods=["GET"]), HttpRoute("/docs", docs_page, methods=["GET"])]


def _page() -> str:
    from importlib.resources import files

    return files("nbprod.serving").joinpath("docs.html").read_text(encoding="utf-8")
