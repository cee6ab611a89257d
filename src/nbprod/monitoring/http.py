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

__all__ = ["feedback_endpoint", "feedback_route"]


def _parse(body: bytes) -> tuple[list, list]:
    from ..errors import ServingError

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
    from ..errors import NbprodError, ServingError
    from ..serving.app import error_response, json_response
    from .feedback import feedback

    state = request.app.state.serving
    try:
        state.check_auth(request)
        ids, labels = _parse(await state.read_body(request))
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, feedback, ids, labels)
        except ServingError:
            raise
        except NbprodError as exc:
            raise ServingError(exc.problem, exc.fix, status=400, code=type(exc).__name__) from None
        return json_response(result.to_dict())
    except ServingError as err:
        return error_response(err)


def feedback_route():
    """``POST /feedback`` as a route for ``create_app(routes=...)``."""
    from starlette.routing import Route

    return Route("/feedback", feedback_endpoint, methods=["POST"])
