"""``POST /feedback`` on the model server: the HTTP face of :func:`nbprod.monitoring.feedback.feedback`.

Body: ``{"prediction_ids": [...], "labels": [...]}`` or ``{"feedback": [{"prediction_id", "label"}, ...]}``.
Answer: 200 with ``{"stored", "unchanged", "updated", "unknown", "ok"}`` — unknown ids are listed,
not dropped silently. Auth is the server's (bearer token). The DB write runs in a worker thread,
never on the event loop. The server's wiring (:mod:`nbprod.service`) adds :func:`feedback_route`
to the app through ``create_app(routes=...)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.routing import Route

from ..errors import DataError, ServingError
from ..serving.app import json_response
from .feedback import feedback

__all__ = ["feedback_endpoint", "feedback_route"]

log = logging.getLogger("nbprod.monitoring")


def _parse(body: bytes) -> tuple[list, list]:
    def bad(problem: str) -> ServingError:
        return ServingError(problem, 'send {"prediction_ids": ["<id>", ...], "labels": [<label>, ...]}', status=400,
                            code="bad_feedback")

    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise bad(f"the body is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("feedback"), list):
        items = data["feedback"]
        if not all(isinstance(i, dict) and "prediction_id" in i and "label" in i for i in items):
            raise bad("every item of 'feedback' needs 'prediction_id' and 'label'")
        return [i["prediction_id"] for i in items], [i["label"] for i in items]
    if isinstance(data, dict) and isinstance(data.get("prediction_ids"), list) and isinstance(data.get("labels"), list):
        return data["prediction_ids"], data["labels"]
    raise bad("the body needs 'prediction_ids' and 'labels' lists (or a 'feedback' list)")


async def feedback_endpoint(request):
    """Store the labels of one request; 400 for bad input, 503 (``Retry-After``) when the state DB
    cannot take them — the cause goes to the server log, never into the answer (it can name the
    DB's host, port and driver)."""
    t0 = time.perf_counter()
    state = request.app.state.serving
    try:
        state.check_auth(request)
        ids, labels = _parse(await state.read_body(request))
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, feedback, ids, labels)
        except ServingError:
            raise
        except DataError as exc:  # the labels themselves: a 400 that says which, under the route's stable code
            raise ServingError(exc.problem, exc.fix, status=400, code="bad_feedback") from None
        except Exception:  # noqa: BLE001 - the state DB is unreachable, locked or failing
            log.warning("POST /feedback: the labels could not be stored", exc_info=True)
            raise ServingError("the labels could not be stored: nbprod's state DB is unavailable",
                               "retry the same request later (a repeated label is a no-op)", status=503,
                               code="feedback_unavailable") from None
        return json_response(result.to_dict())
    except ServingError as err:
        return state.refuse("feedback", err, t0)  # counted in /metrics, never in the prediction log


_ERROR = {"$ref": "#/components/responses/Error"}
_LABEL = {"type": ["number", "string", "boolean"], "description": "the true outcome: a number, a string or a bool"}

#: ``POST /feedback`` in the server's OpenAPI document (nbprod.serving.openapi).
OPERATIONS = {"post": {
    "summary": "Labels for earlier predictions (ground truth, joined by prediction id)", "tags": ["predictions"],
    "operationId": "feedback",
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [
            {"type": "object", "required": ["prediction_ids", "labels"],
             "properties": {"prediction_ids": {"type": "array", "items": {"type": "string"}},
                            "labels": {"type": "array", "items": _LABEL, "description": "one label per id"}}},
            {"type": "object", "required": ["feedback"],
             "properties": {"feedback": {"type": "array", "items": {
                 "type": "object", "required": ["prediction_id", "label"],
                 "properties": {"prediction_id": {"type": "string"}, "label": _LABEL}}}}}]},
        "example": {"prediction_ids": ["<prediction id from an answer>"], "labels": [1]}}}},
    "responses": {
        "200": {"description": "what was stored; unknown ids are listed, not dropped", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "stored": {"type": "integer"}, "unchanged": {"type": "integer"},
                "updated": {"type": "array", "items": {"type": "object"}},
                "unknown": {"type": "array", "items": {"type": "string"}}, "ok": {"type": "boolean"}}}}}},
        "400": _ERROR, "401": _ERROR, "503": _ERROR}}}


def feedback_route():
    """``POST /feedback`` as a route for ``create_app(routes=...)``, with its OpenAPI operation."""
    from ..serving.openapi import describe

    return describe(Route("/feedback", feedback_endpoint, methods=["POST"]), OPERATIONS)
