"""The model server: a Starlette app speaking MLflow's scoring protocol and the Open Inference Protocol v2.

``create_app(source, token=...)`` returns an ASGI app serving the deployment a :class:`SpecSource`
describes. Every prediction response carries the answering model version and prediction ids:

- header ``X-Model-Version``; header ``X-Prediction-Id`` = the *request id* (one per request);
- body ``model_version``, ``prediction_ids`` = ``["<request id>-0", "<request id>-1", …]`` — one per
  row, so ground truth can be joined to a row later; ``ood`` = one list of reasons per row.

Every error is JSON ``{"error", "message", "fix"}`` with a 4xx status for bad input; a failing
*stable* model answers 503, a failing canary is answered by the stable version (see router).
Auth: ``Authorization: Bearer <token>`` compared (``hmac.compare_digest``) by sha256 against the
spec's ``token_sha256``; probes (``/ping``, ``/health``, ``/v2/health/*``) and ``/metrics`` are open.
Auth comes first on every model endpoint, so an unauthenticated caller learns no model names.

``Idempotency-Key``: the stored answer is shared by every worker through the state DB and bound to
the request it answered (another body or endpoint with the same key: 422); see :mod:`.idempotency`.
A body that does not arrive within ``body_timeout_s`` is answered 408; a client that disconnects
mid-body is counted as status 499, not as a server error; an unexpected exception is logged with its
traceback (logger ``nbprod.serving``) and answered 500 JSON.

Serving is the bottom of the request path: it knows nothing of monitoring or deployments. What
they add — hooks on every answer, extra routes (``POST /feedback``), lifespans (the prediction
log's writer), the model store that resolves registered URIs — comes in through
:func:`create_app`'s keywords, the way ``Starlette(routes=, lifespan=)`` takes them; the server's
wiring (:mod:`nbprod.service`) passes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import os
import time
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, AsyncContextManager, Awaitable, Callable, MutableMapping, Sequence

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as HttpRoute

from .._version import __version__
from ..errors import ServingError
from . import codecs, idempotency, openapi, quickanswer, v2binary
from .batching import LATER
from .fastpath import UnknownCategory
from .loader import ModelStore
from .metrics import CONTENT_TYPE_LATEST, ServingMetrics, observe_many
from .router import Router, RoutingTable, Target
from .spec import DeploymentSpec, SpecSource, StaticSource, hash_token

__all__ = ["create_app", "ServingHooks", "ServingState", "Lifespan", "json_response", "error_response",
           "internal_error", "RETRY_AFTER_S"]

#: A lifespan another layer adds to the app: entered before the models load, left after they stop.
Lifespan = Callable[[Starlette], AsyncContextManager[Any]]

log = logging.getLogger("nbprod.serving")

#: A request carrying ``X-Nbprod-Traffic: latency-gate`` (the deploy verb's latency gate sends it
#: to a pinned version) is test traffic: its rows are logged with role ``gate`` and the monitor
#: leaves them out unless asked (``include_gate=True``).
TRAFFIC_HEADER = "x-nbprod-traffic"
GATE_TRAFFIC = "latency-gate"

_OPEN_PATHS = {"/ping", "/health", "/v2/health/live", "/v2/health/ready", "/metrics"}


@dataclass
class ServingHooks:
    """Callbacks the deploy and monitoring code wire in; each receives one dict.

    ``on_prediction``: every answered request (request_id, version, role, n, inputs, predictions, ood).
    ``on_shadow``: every shadow answer (never returned to the client).
    ``on_event``: operational events (canary_failed, version_load_failed, spec_applied, spec_rejected).
    ``on_error``: every failed prediction request (version, status, endpoint, latency_ms) — the
    prediction log counts error rates from it (nbprod.monitoring).
    Hooks run on the event loop: they must be quick (enqueue, don't write to a DB inline).
    """

    on_prediction: Callable[[dict], None] | None = None
    on_shadow: Callable[[dict], None] | None = None
    on_event: Callable[[str, dict], None] | None = None
    on_error: Callable[[dict], None] | None = None  # monitoring: one call per failed request


def json_response(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response encoded the way predictions are (NaN-safe, numpy-aware): every route's answer."""
    return Response(codecs.dumps(obj), status_code=status, media_type="application/json", headers=headers)


#: Seconds a client is asked to wait (``Retry-After``) before retrying a 503.
RETRY_AFTER_S = 5


def error_response(err: ServingError) -> Response:
    """``err`` as the server's error body ``{"error", "message", "fix"}`` with its status (401: a
    Bearer challenge; 503: ``Retry-After``)."""
    body = {"error": err.code or type(err).__name__, "message": err.problem, "fix": err.fix}
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if err.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return json_response(body, err.status, headers)


def internal_error() -> Response:
    """The 500 answer to a bug: what went wrong stays in the server log (exception text can name
    hosts, ports, paths or drivers), the client gets the code and the fix."""
    return json_response({"error": "internal_error", "message": "nbprod's server failed unexpectedly on this request",
                          "fix": "this is a bug in nbprod's server: report it with the server log's traceback"}, 500)


class ServingState:
    """Everything one app holds: router, metrics, limits, idempotency store, background tasks."""

    def __init__(self, source: SpecSource, token: str | None, auth: bool, hooks: ServingHooks,
                 models: ModelStore | None = None) -> None:
        self.source = source
        self.hooks = hooks
        self.metrics = ServingMetrics()
        self.router = Router(on_event=self._event, on_batch=self._batch, store=models)
        self.token_sha256 = hash_token(token) if token else None
        self.auth = auth
        self._accepted: dict[str, str] = {}  # Authorization header of a token accepted before -> its sha256
        self.idempotency = idempotency.IdempotencyStore(on_event=self._event)
        self.tasks: set[asyncio.Task] = set()
        self.ready = False
        self.started = time.time()

    # -- hooks and metrics ------------------------------------------------------------------
    def _event(self, kind: str, info: dict) -> None:
        if kind == "version_load_failed":
            self.metrics.load_failures.labels(str(info.get("version")), str(info.get("role"))).inc()
        if self.hooks.on_event is not None:
            try:
                self.hooks.on_event(kind, info)
            except Exception:  # noqa: BLE001 - a hook never breaks serving
                pass

    def _batch(self, version: str, rows: int) -> None:
        self.metrics.child(self.metrics.batch_rows, version).observe(rows)

    def _hook(self, fn: Callable[[dict], None] | None, record: dict) -> None:
        if fn is None:
            return
        try:
            fn(record)
        except Exception:  # noqa: BLE001
            self.metrics.dropped_log_rows.inc()

    @property
    def spec(self) -> DeploymentSpec:
        return self.router.current.spec

    # -- start-up and spec polling ------------------------------------------------------------
    async def start(self) -> None:
        spec = await asyncio.get_running_loop().run_in_executor(None, self.source.initial)
        table = await asyncio.get_running_loop().run_in_executor(None, self.router.build, spec)
        self.router.install(table)
        self.metrics.set_routes(table)
        self.ready = True
        if self.source.poll_interval:
            self._spawn(self._poll(self.source.poll_interval))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _poll(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        failed_generation = None
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                spec = await loop.run_in_executor(None, self.source.changed, self.router.current.generation)
            except Exception as exc:  # noqa: BLE001 - the DB may be unavailable: keep serving, keep polling
                if not failing:  # once per outage, not five times a second
                    log.warning("nbprod: cannot read the deployment spec (%s); serving generation %s meanwhile",
                                type(exc).__name__, getattr(self.router.table, "generation", None))
                failing = True
                self._event("spec_poll_failed", {"error": f"{type(exc).__name__}: {exc}"})
                continue
            if failing:
                log.warning("nbprod: the deployment spec is readable again")
                failing = False
            if spec is None or spec.generation == failed_generation:
                continue
            if await self.router.apply(spec):
                self.metrics.set_routes(self.router.current)
            else:
                failed_generation = spec.generation

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.router.table is not None:
            for t in self.router.table.targets.values():
                t.batcher.close()
        self.metrics.close()  # what the requests counted, written before the worker goes

    # -- request plumbing ---------------------------------------------------------------------
    def refuse(self, endpoint: str, err: ServingError, t0: float) -> Response:
        """The answer to a request refused before the prediction path (a wrong token, an unknown model,
        a bad ``/feedback`` body): counted in ``nbprod_requests_total`` and the latency histogram as every
        other refusal is, with version ``none`` — and never written to the prediction log, so a flood
        of them costs the log nothing (issue 11, point 1)."""
        status, m = str(err.status), self.metrics
        m.child(m.requests, "none", status, endpoint).inc()
        m.child(m.latency, "none", status).observe(time.perf_counter() - t0)
        return error_response(err)

    def check_auth(self, request: Request | None, header: str | None = None,
                   spec: DeploymentSpec | None = None) -> None:
        """401 unless the request carries the bearer token (``header``: its Authorization, if read already;
        ``spec``: the served spec, if looked up already).

        The sha256 of a token that was accepted is remembered with its Authorization header (the last
        :data:`_ACCEPTED_MAX` of them), so a client sending the same token again costs a dict lookup, not
        a hash; the comparison with the expected digest stays ``hmac.compare_digest`` on every request,
        a changed token is refused at once, and a wrong token is never remembered."""
        if not self.auth:
            return
        expected = (spec if spec is not None else self.spec).token_sha256 or self.token_sha256
        if expected is None:
            return
        if header is None:
            header = request.headers.get("authorization", "") if request is not None else ""
        given = self._accepted.get(header)
        if given is None:
            scheme, _, token = header.partition(" ")
            given = hashlib.sha256(token.strip().encode()).hexdigest() if scheme.lower() == "bearer" else ""
            if hmac.compare_digest(given, expected):
                if len(self._accepted) >= _ACCEPTED_MAX:
                    self._accepted.clear()
                self._accepted[header] = given
                return
        elif hmac.compare_digest(given, expected):
            return
        raise codecs.http_error("missing or wrong bearer token",
                                "send the header `Authorization: Bearer <token>` with the token shown at "
                                "deploy time", status=401, error="unauthorized")

    def body_now(self, request: Request, length: str | None = None,
                 spec: DeploymentSpec | None = None) -> bytes | Awaitable[Any]:
        """The whole body if it is here already, in one message, as for nearly every request (no
        coroutine, no deadline: nothing waits); else what to pass to :meth:`read_body` as ``first`` (the
        first message, received or still awaited). The same checks and errors as :meth:`read_body`."""
        limit = (spec if spec is not None else self.spec).max_body_bytes
        if length is None:
            length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(int(length), limit)
        waiting: Any = request.receive()
        if type(waiting) is not CoroutineType:  # a server whose receive is not an async function: awaited
            return waiting
        try:
            first = waiting.send(None)
        except StopIteration as done:
            message = done.value
            if message["type"] == "http.request" and not message.get("more_body", False):
                body = message.get("body", b"")
                if len(body) > limit:
                    raise _too_large(len(body), limit) from None
                request._body = body  # as read_body leaves it
                return body
            return _Ready(message)  # a first part, or a disconnect: read_body goes on from it
        return _Resume(waiting, first)

    async def read_body(self, request: Request, length: str | None = None,
                        first: Awaitable[Any] | None = None) -> bytes:
        """The whole body (408 past ``body_timeout_s``, 413 past ``max_body_bytes``); ``length``: the
        Content-Length header, if read already; ``first``: the first message as :meth:`body_now` left
        it. Read from the ASGI ``receive`` as ``request.stream()`` does (a disconnect:
        :class:`ClientDisconnect`), without an async generator per request."""
        limit = self.spec.max_body_bytes
        if first is None:
            if length is None:
                length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise _too_large(int(length), limit)
        chunks: list[bytes] = []
        receive = request.receive

        async def read() -> None:
            size = 0
            pending = first
            while True:
                if pending is not None:
                    message, pending = await pending, None
                else:
                    message = await receive()
                if message["type"] == "http.request":
                    chunk = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise _too_large(size, limit)
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        return
                elif message["type"] == "http.disconnect":
                    raise ClientDisconnect()

        timeout = self.spec.body_timeout_s
        try:
            await _within(read(), timeout)
        except asyncio.TimeoutError:
            raise codecs.http_error(f"the request body did not arrive within {timeout:g} s",
                                    "send the whole body at once (and a correct Content-Length)", status=408,
                                    error="body_timeout") from None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        request._body = body  # what Request.body() gives from now on, as after request.stream()
        return body


_timeout_at = getattr(asyncio, "timeout_at", None)

#: Authorization headers whose token's digest :meth:`ServingState.check_auth` remembers (clients of a
#: deployment share a token or a few; a wrong token is never remembered).
_ACCEPTED_MAX = 16


class _Ready:
    """An awaitable that gives ``value`` at once (a message already received)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: B901 - a generator: awaiting it never suspends


class _Resume:
    """Awaiting it goes on with a coroutine that has already run up to ``first``, the future it waits
    on: ``yield from`` written out, so the task's wake-ups, cancellations and the coroutine's result
    pass through unchanged."""

    __slots__ = ("coro", "first")

    def __init__(self, coro, first) -> None:
        self.coro = coro
        self.first = first

    def __await__(self):
        coro, out = self.coro, self.first
        while True:
            try:
                sent = yield out
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - a cancellation included: the coroutine decides
                try:
                    out = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    out = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _within(coro, seconds: float):
    """``await coro`` with a deadline (``asyncio.TimeoutError`` past it).

    Most requests never wait: the body came with the headers, and a compiled model predicts right
    on the loop. So the coroutine first runs on its own; only if it has to wait is the rest awaited
    under ``asyncio.timeout_at`` with the deadline counted from the start, which is what a timeout
    around the whole would do (its timer could only fire at the first wait anyway). No timer, no
    task per request otherwise; ``wait_for`` (Python < 3.11) would run it as a task of its own."""
    if _timeout_at is None:
        return await asyncio.wait_for(coro, seconds)
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        first = coro.send(None)
    except StopIteration as done:
        return done.value
    async with _timeout_at(deadline):
        return await _Resume(coro, first)


def _too_large(size: int, limit: int) -> ServingError:
    return ServingError(f"the request body is {size} bytes, more than the limit of {limit}",
                        "split the rows over several requests (or raise max_body_bytes in the deployment)",
                        status=413, code="body_too_large")


#: Content-Type headers as clients send them, and their kind: a dict lookup instead of parsing each.
_KINDS = {"application/json": "json", "": "json", "application/json; charset=utf-8": "json",
          "application/json;charset=utf-8": "json", "text/csv": "csv"}


def _content_kind(request: Request | None, header: str | None = None) -> str:
    if header is None:
        header = request.headers.get("content-type", "") if request is not None else ""
    kind = _KINDS.get(header)
    if kind is not None:
        return kind
    ctype = header.split(";")[0].strip().lower()
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        return "json"
    if ctype in ("text/csv", "application/csv"):
        return "csv"
    if ctype == "application/octet-stream":  # the v2 binary tensor extension (v2binary)
        return "binary"
    raise ServingError(f"unsupported content type {ctype!r}",
                       "send Content-Type: application/json (or text/csv with a header row)", status=415,
                       code="unsupported_media_type")


def _checked(state: ServingState, target: Target, batch: codecs.Batch) -> tuple[dict, list | None]:
    """Coerce and check OOD: the columns and the OOD flags (None: none flagged); 400 under ood='reject'."""
    cols = codecs.coerce(batch, target.served.signature)
    ood = target.served.ood_flags(cols, batch.n)
    if ood is not None and state.spec.ood == "reject":
        state.metrics.ood_rejected.labels(target.served.version).inc()
        rows = [i for i, r in enumerate(ood) if r][:5]
        raise ServingError(f"{sum(1 for r in ood if r)} row(s) are outside the training distribution "
                           f"(row {rows[0]}: {'; '.join(ood[rows[0]])})",
                           "send values inside the training range and seen categories, or deploy with ood='flag'",
                           status=400, code="out_of_distribution")
    return cols, ood


def _params(batch: codecs.Batch) -> dict:
    """The request's params for the model (the v2 request id left out)."""
    params = batch.params
    if not params:
        return params
    return {k: v for k, v in params.items() if k != "_id"}


def _model_failed(state: ServingState, table: RoutingTable, target: Target, role: str, exc: Exception) -> None:
    """A model call raised ``exc``: raise the request's error (400 for an unknown category, 503 when the
    stable failed), or count a canary's failure and return, for the stable version to answer."""
    if isinstance(exc, UnknownCategory):
        raise ServingError(str(exc), f"send a category of {exc.column!r} seen in training", status=400,
                           code="unknown_category") from None
    version = target.served.version
    state.metrics.model_errors.labels(version, role).inc()
    if target is table.stable:
        log.error("model version %s raised on a request", version, exc_info=exc)
        raise codecs.http_error(f"model version {version} failed ({type(exc).__name__})",
                                "check the server log; the model raised on this input", status=503,
                                error="model_error") from None
    state.metrics.fallbacks.labels(version, "predict_error").inc()
    state._event("canary_failed", {"version": version, "role": role, "error": f"{type(exc).__name__}: {exc}"})


async def _predict(state: ServingState, table: RoutingTable, target: Target, role: str,
                   batch: codecs.Batch, checked: tuple[dict, list | None] | None = None
                   ) -> tuple[Target, str, Any, dict, list | None]:
    """Coerce, check OOD, predict — falling back to the stable version if a canary fails.
    ``checked``: :func:`_checked`'s answer for ``target``, if it was computed already."""
    cols, ood = checked if checked is not None else _checked(state, target, batch)
    params = _params(batch)
    try:
        if params and target.served.has_params:  # params change the answer: no batching with others
            pred = await asyncio.get_running_loop().run_in_executor(
                None, lambda: target.served.predict(cols, batch.n, params, batch.order))
            return target, role, pred, cols, ood
        pred = target.batcher.now(cols, batch.n)
        if pred is LATER:
            pred = await target.batcher.submit(cols, batch.n)
        return target, role, pred, cols, ood
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001
        _model_failed(state, table, target, role, exc)
    return await _predict(state, table, table.stable, "stable", batch)


def _predict_now(state: ServingState, table: RoutingTable, target: Target, role: str,
                 batch: codecs.Batch) -> tuple[Target, str, Any, dict, list | None] | Awaitable[Any]:
    """:func:`_predict`'s answer when nothing has to wait (a compiled version called at once, as for
    nearly every request), without a coroutine; else the awaitable :func:`_predict` that goes on
    from where this stopped (the checks done are not done again)."""
    cols, ood = _checked(state, target, batch)
    if batch.params and target.served.has_params and _params(batch):
        return _predict(state, table, target, role, batch, (cols, ood))
    try:
        pred = target.batcher.now(cols, batch.n)
    except Exception as exc:  # noqa: BLE001
        _model_failed(state, table, target, role, exc)
        return _predict(state, table, table.stable, "stable", batch)
    if pred is LATER:
        return _predict(state, table, target, role, batch, (cols, ood))
    return target, role, pred, cols, ood


def _observe(state: ServingState, version: str, pred: Any, n: int, ood: list | None) -> None:
    m = state.metrics
    if isinstance(pred, np.ndarray) and pred.dtype.kind in "fiub" and pred.size:
        values = pred if pred.ndim == 1 else pred.reshape(len(pred), -1)[:, -1]
        observe_many(m.child(m.predictions, version), values.astype(np.float64, copy=False))
    if ood is not None:
        flagged = sum(1 for r in ood if r)
        if flagged:
            m.child(m.ood_rows, version).inc(flagged)


def _shadow(state: ServingState, table: RoutingTable, batch: codecs.Batch, request_id: str) -> None:
    for shadow in table.shadows():
        async def run(t: Target = shadow) -> None:
            version = t.served.version
            try:
                cols = codecs.coerce(batch, t.served.signature)
                pred = await t.batcher.submit(cols, batch.n)
                state.metrics.rows.labels(version, "shadow").inc(batch.n)
                state._hook(state.hooks.on_shadow, {"request_id": request_id, "version": version,
                                                    "predictions": codecs.to_jsonable(pred)})
            except Exception as exc:  # noqa: BLE001 - a shadow never affects the answer
                state.metrics.model_errors.labels(version, "shadow").inc()
                state._event("shadow_failed", {"version": version, "error": f"{type(exc).__name__}: {exc}"})
        state._spawn(run())


async def _serve_prediction(state: ServingState, request: Request, endpoint: str, decode, encode,
                            version: str | None = None) -> Response:
    """The shared life of a prediction request, for both protocols."""
    t0 = time.perf_counter()
    m = state.metrics
    m.in_flight.inc()
    label, status = "none", 500
    try:
        headers = _request_headers(request.scope)
        spec = state.router.current.spec
        state.check_auth(request, headers.get(b"authorization", ""), spec)
        kind = _content_kind(request, headers.get(b"content-type", ""))
        now = state.body_now(request, headers.get(b"content-length"), spec)
        if type(now) is bytes:
            body = now
        else:  # the body is still arriving, or came in parts: read it under the deadline
            body = await state.read_body(request, headers.get(b"content-length"), now)  # type: ignore[arg-type]

        gate = version is not None and headers.get(TRAFFIC_HEADER.encode(), "").lower() == GATE_TRAFFIC
        key = headers.get(b"idempotency-key")
        if key is None:
            answered = _answer_now(state, kind, body, decode, encode, version, t0, gate)
            response = answered if isinstance(answered, Response) else await answered
        else:
            async def answer() -> Response:
                return await _answer(state, kind, body, decode, encode, version, t0, gate)

            fp = idempotency.fingerprint(request.method, request.url.path, request.url.query,
                                         headers.get(b"authorization", ""), body,
                                         request.headers.get(v2binary.HEADER))  # only with a key: off the hot path
            response = await state.idempotency.run(key, fp, state.spec, answer)
        status = response.status_code
        label = response.version if type(response) is _Answer else response.headers.get("x-model-version", "none")
        return response
    except ServingError as err:
        status = err.status
        return error_response(err)
    except ClientDisconnect:  # the client went away mid-body: nobody to answer, not a server error
        status = 499
        return Response(status_code=499)
    except Exception:  # noqa: BLE001 - never let a bug turn into a dropped connection
        status = 500
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return internal_error()
    finally:
        m.in_flight.dec()
        elapsed = time.perf_counter() - t0
        code = str(status)
        m.child(m.requests, label, code, endpoint).inc()
        m.child(m.latency, label, code).observe(elapsed)
        if status >= 400 and state.hooks.on_error is not None:  # monitoring: error rate (499: client left)
            state._hook(state.hooks.on_error, {"version": None if label == "none" else label, "status": status,
                                               "endpoint": endpoint, "latency_ms": elapsed * 1000.0})


#: The request headers the prediction path reads, found in one pass over the ASGI headers.
_WANTED = frozenset((b"authorization", b"content-type", b"content-length", b"idempotency-key",
                     TRAFFIC_HEADER.encode()))


def _request_headers(scope: MutableMapping[str, Any]) -> dict[bytes, str]:
    """``{name: value}`` of the headers in :data:`_WANTED`, the first of each as ``request.headers.get``
    gives it (latin-1), in one pass: not a scan of every header per lookup."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


class _Answer(Response):
    """A prediction's 200 answer, its headers laid out as ``Response(body, 200, headers, "application/json")``
    lays them out (same names, values and order), built without re-encoding them per request."""

    media_type = "application/json"

    def __init__(self, body: bytes, version: str, request_id: str) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.version = version
        self.raw_headers = [(b"x-model-version", version.encode("latin-1")),
                            (b"x-prediction-id", request_id.encode("latin-1")),
                            (b"content-length", b"%d" % len(body)),
                            (b"content-type", b"application/json")]


_ids: list = []  # [prefix, counter]: 80 random bits per process, then a counter


def _new_ids() -> None:
    _ids[:] = [os.urandom(10).hex(), itertools.count()]


_new_ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_ids)  # a forked worker never repeats its parent's ids


_SUFFIXES: list[str] = []  # "-0", "-1", …: the prediction ids' tails, made once


def _prediction_ids(request_id: str, n: int) -> list[str]:
    """``["<request id>-0", …, "<request id>-<n-1>"]``."""
    if n > len(_SUFFIXES):
        if n > 65536:
            return [f"{request_id}-{i}" for i in range(n)]
        _SUFFIXES.extend(f"-{i}" for i in range(len(_SUFFIXES), max(n, 1024)))
    return list(map(request_id.__add__, _SUFFIXES[:n]))


def _request_id() -> str:
    """32 hex digits, unique: a per-process random prefix and a 48-bit counter (a uuid4 costs a system
    call and an object per request)."""
    return "%s%012x" % (_ids[0], next(_ids[1]) & 0xFFFFFFFFFFFF)


async def _answer(state: ServingState, kind: str, body: bytes, decode, encode, version: str | None,
                  t0: float, gate: bool = False) -> Response:
    """Route, decode, predict and encode one request whose body has been read. ``gate``: a pinned
    request the latency gate sent (role ``gate`` in the prediction log, not production traffic)."""
    answer = _answer_now(state, kind, body, decode, encode, version, t0, gate)
    return answer if isinstance(answer, Response) else await answer


def _answer_now(state: ServingState, kind: str, body: bytes, decode, encode, version: str | None,
                t0: float, gate: bool = False) -> Response | Awaitable[Response]:
    """:func:`_answer`'s response when nothing has to wait (nearly always), without a coroutine; else
    the awaitable that waits for the prediction under the deadline and gives the response."""
    table = state.router.current
    if version is not None:
        pinned = table.by_version(version)
        if pinned is None:
            raise codecs.http_error(f"version {version!r} is not served here",
                                    f"use one of: {', '.join(s.version for s in table.versions())}", status=404,
                                    error="not_found")
        target, role = pinned, "gate" if gate else "pinned"
    else:
        target, role = table.pick()
    batch = decode(kind, body, target.served.signature)
    request_id = _request_id()
    started = time.perf_counter()
    found = _predict_now(state, table, target, role, batch)
    if not isinstance(found, tuple):  # it has to wait: the rest under the deadline, counted from the start
        return _answer_later(state, table, found, started, batch, request_id, encode, version, t0)
    return _respond(state, table, found, batch, request_id, encode, version, t0)


async def _answer_later(state: ServingState, table: RoutingTable, waiting: Awaitable[Any], started: float,
                        batch: codecs.Batch, request_id: str, encode, version: str | None, t0: float) -> Response:
    """The prediction awaited under ``timeout_s`` counted from ``started`` (504 past it), then answered."""
    timeout = state.spec.timeout_s
    try:
        found = await _within(waiting, timeout - (time.perf_counter() - started))
    except asyncio.TimeoutError:
        raise codecs.http_error(f"the prediction took longer than {timeout:g} s",
                                "send fewer rows per request, or raise timeout_s in the deployment", status=504,
                                error="timeout") from None
    return _respond(state, table, found, batch, request_id, encode, version, t0)


def _respond(state: ServingState, table: RoutingTable, found: tuple, batch: codecs.Batch, request_id: str, encode,
             version: str | None, t0: float) -> Response:
    """Encode the prediction, count it, start the shadows, hand it to the prediction log: the response."""
    target, role, pred, cols, ood = found
    label = target.served.version
    n = batch.n
    payload = encode(pred, target, request_id, ood, batch)
    if type(payload) is bytes:  # JSON, encoded by the protocol's encoder
        response: Response = _Answer(payload, label, request_id)
    elif isinstance(payload, Response):  # an encoder that writes its own body (v2 binary tensors)
        payload.headers.update({"X-Model-Version": label, "X-Prediction-Id": request_id})
        response = payload
    else:
        response = json_response(payload, 200, {"X-Model-Version": label, "X-Prediction-Id": request_id})
    m = state.metrics
    m.child(m.rows, label, role).inc(n)
    _observe(state, label, pred, n, ood)
    if version is None and table.shadows():
        _shadow(state, table, batch, request_id)
    hook = state.hooks.on_prediction
    if hook is not None:
        state._hook(hook, {"request_id": request_id, "version": label, "role": role, "n": n, "inputs": cols,
                           "predictions": pred, "ood": ood, "latency_ms": (time.perf_counter() - t0) * 1000.0})
    return response


# --- MLflow scoring protocol -------------------------------------------------------------------


def _decode_mlflow(kind: str, body: bytes, signature):
    if kind == "csv":
        return codecs.decode_csv(body, signature)  # numeric columns straight into arrays
    if kind == "binary":
        raise codecs.http_error("/invocations takes JSON or CSV, not application/octet-stream",
                                "send Content-Type: application/json (binary tensors go to /v2/models/{name}/infer)",
                                status=415, error="unsupported_media_type")
    return codecs.decode_mlflow(codecs.parse_json(body), signature)


def _encode_mlflow(pred, target: Target, request_id: str, ood, batch) -> bytes:
    served = target.served
    quick = quickanswer.answer(pred, served.version, request_id, batch.n, served.ood is not None, ood)
    if quick is not None:  # the same bytes, written from the parts (a numpy answer of numbers: nearly always)
        return quick
    return _encode_mlflow_dict(pred, target, request_id, ood, batch)


def _encode_mlflow_dict(pred, target: Target, request_id: str, ood, batch) -> bytes:
    """The MLflow answer as a dict, encoded: what :func:`quickanswer.answer` writes when it can."""
    out = {"predictions": codecs.to_jsonable(pred), "model_version": target.served.version,
           "prediction_ids": _prediction_ids(request_id, batch.n)}
    if target.served.ood is not None:
        out["ood"] = ood if ood is not None else [[]] * batch.n  # only written out: one empty list will do
    return codecs.dumps_answer(out, pred)


async def invocations(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    return await _serve_prediction(state, request, "invocations", _decode_mlflow, _encode_mlflow)


class _ServingApp(Starlette):
    """The server's Starlette app, with ``POST /invocations`` — nearly every request a model server
    gets — answered without Starlette's middleware layers, router and per-message send wrappers.

    What they would do for it is done here or not needed: the endpoint answers every exception
    itself (``_serve_prediction``), raises no ``HTTPException``, has no path parameters; ``scope["app"]``
    is set as Starlette sets it. Any other request (another method, path or root path, the lifespan),
    and every request once middleware is added to the app, goes through Starlette as before."""

    #: ``app.state.serving``, read without Starlette's ``State.__getattr__`` (set by :func:`create_app`)
    serving: ServingState

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/invocations" and scope["method"] == "POST" \
                and not scope.get("root_path") and not self.user_middleware:
            scope["app"] = self
            request = Request(scope, receive, send)
            response = await _serve_prediction(self.serving, request, "invocations", _decode_mlflow, _encode_mlflow)
            try:
                if type(response) is _Answer:  # its two messages, as Response.__call__ sends them (no background)
                    await send({"type": "http.response.start", "status": 200, "headers": response.raw_headers})
                    await send({"type": "http.response.body", "body": response.body})
                else:
                    await response(scope, receive, send)
            except Exception as exc:  # the server's send failed: logged as Starlette would, then uvicorn's to handle
                log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
                raise
            return
        await super().__call__(scope, receive, send)


# --- Open Inference Protocol v2 ----------------------------------------------------------------


def _model_names(state: ServingState) -> set[str]:
    table = state.router.current
    return {table.spec.name, *(s.name for s in table.versions())}


def _check_model(state: ServingState, name: str) -> None:
    if not state.ready:
        raise codecs.http_error("the server is still loading its models", "retry in a moment", status=503,
                                error="not_ready")
    if name not in _model_names(state):
        raise codecs.http_error(f"no model called {name!r} is served here",
                                f"use /v2/models/{state.spec.name}", status=404, error="not_found")


async def v2_infer(request: Request) -> Response:
    t0 = time.perf_counter()
    state: ServingState = request.app.state.serving
    name = request.path_params["name"]
    version = request.path_params.get("version")
    try:
        state.check_auth(request)  # before the name: no model names for unauthenticated callers
        _check_model(state, name)
    except ServingError as err:
        return state.refuse("v2_infer", err, t0)

    header_length = request.headers.get(v2binary.HEADER)
    choice = v2binary.OutputChoice()

    def decode(kind: str, body: bytes, signature):
        nonlocal choice
        if kind == "csv":
            raise codecs.http_error("the inference protocol takes JSON (and binary tensors after it)",
                                    "send Content-Type: application/json, or application/octet-stream with the "
                                    f"{v2binary.HEADER} header", status=415, error="unsupported_media_type")
        payload, choice = v2binary.read_request(body, header_length)
        batch, req_id = codecs.decode_v2(payload, signature)
        batch.params = {"_id": req_id, **batch.params}
        return batch

    def encode(pred, target: Target, request_id, ood, batch) -> bytes | dict | Response:
        ids = _prediction_ids(request_id, batch.n)
        out = {"model_name": name, "model_version": target.served.version,
               "id": batch.params.get("_id") or request_id,
               "outputs": codecs.encode_v2_outputs(pred, target.served.predict_fn),
               "prediction_ids": ids,
               "parameters": {"prediction_ids": ids}}
        if target.served.ood is not None:
            out["ood"] = out["parameters"]["ood"] = ood if ood is not None else [[] for _ in range(batch.n)]
        answer = v2binary.write_response(out, choice)
        if isinstance(answer, dict) and type(answer["id"]) is str:  # a client's id of another type: dumps
            return codecs.dumps_answer(answer, pred)
        return answer

    return await _serve_prediction(state, request, "v2_infer", decode, encode, version)


def _dtype(t: str | None) -> str:
    types = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL"}
    return types.get(t or "", "BYTES")


def _v2_metadata_guard(request: Request) -> tuple[ServingState, str, Response | None]:
    """The state, the model name and, when auth or the name is wrong, the error response to send."""
    t0 = time.perf_counter()
    state: ServingState = request.app.state.serving
    name = request.path_params["name"]
    try:
        state.check_auth(request)
        _check_model(state, name)
    except ServingError as err:
        return state, name, state.refuse("v2_model", err, t0)
    return state, name, None


async def v2_model(request: Request) -> Response:
    state, name, refused = _v2_metadata_guard(request)
    if refused is not None:
        return refused
    table = state.router.current
    stable = table.stable.served
    inputs = [{"name": c.name, "datatype": _dtype(c.type), "shape": [-1]} for c in stable.signature or []]
    outputs = [{"name": stable.predict_fn, "datatype": stable.output_datatype or "FP64", "shape": [-1]}]
    return json_response({"name": name, "versions": [s.version for s in table.versions()], "platform": "mlflow",
                          "inputs": inputs, "outputs": outputs})


async def v2_model_ready(request: Request) -> Response:
    state, name, refused = _v2_metadata_guard(request)
    if refused is not None:
        return refused
    version = request.path_params.get("version")
    if version is not None and state.router.current.by_version(version) is None:
        return json_response({"name": name, "ready": False}, 404)
    return json_response({"name": name, "ready": True})


async def v2_live(request: Request) -> Response:
    return json_response({"live": True})


async def v2_ready(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    return json_response({"ready": state.ready}, 200 if state.ready else 503)


async def v2_server(request: Request) -> Response:
    return json_response({"name": "nbprod", "version": __version__, "extensions": [v2binary.EXTENSION]})


# --- probes, version, metrics -------------------------------------------------------------------


async def ping(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    return Response("\n" if state.ready else "loading\n", status_code=200 if state.ready else 503,
                    media_type="text/plain")


def _describe(state: ServingState) -> dict:
    table = state.router.current
    routes = []
    for route, served in table.routes:
        d = served.describe() if served is not None else {"uri": route.uri, "version": route.version,
                                                          "path": None, "error": "failed to load"}
        d.update(role=route.role, weight=route.weight)
        routes.append(d)
    return {"deployment": table.spec.name, "generation": table.generation, "nbprod": __version__,
            "ood": table.spec.ood, "auth": bool(state.auth and (table.spec.token_sha256 or state.token_sha256)),
            "routes": routes, "uptime_s": round(time.time() - state.started, 3)}


async def health(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    if not state.ready:
        return json_response({"status": "loading"}, 503)
    d = _describe(state)
    return json_response({"status": "ok", "deployment": d["deployment"], "generation": d["generation"],
                  "versions": [{"version": r["version"], "role": r["role"], "weight": r["weight"],
                                "path": r["path"]} for r in d["routes"]]})


async def version_info(request: Request) -> Response:
    t0 = time.perf_counter()
    state: ServingState = request.app.state.serving
    try:
        state.check_auth(request)
    except ServingError as err:
        return state.refuse("version", err, t0)
    return json_response(_describe(state))


async def metrics(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    if status == 405:  # RFC 9110: a 405 lists the allowed methods (Starlette's exception carries them)
        allow = getattr(exc, "headers", None) or {}
        response = json_response({"error": "method_not_allowed",
                                  "message": f"{request.method} is not allowed on {request.url.path}",
                                  "fix": "use POST for predictions and GET for probes"}, 405,
                                 {"Allow": allow["Allow"]} if "Allow" in allow else None)
    else:
        response = json_response({"error": "not_found", "message": f"no endpoint {request.url.path}",
                                  "fix": "POST /invocations or /v2/models/{name}/infer; "
                                         "GET /ping, /health, /version, /metrics"}, status)
    # a v2 client (tritonclient) reads the message from ``error``, also when no v2 route matched
    return v2binary.protocol_error(response) if request.url.path.startswith("/v2/") else response


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error()


def create_app(source: SpecSource | DeploymentSpec | str, *, token: str | None = None, auth: bool = True,
               hooks: ServingHooks | None = None, routes: Sequence[BaseRoute] = (),
               lifespan: Lifespan | Sequence[Lifespan] = (), models: ModelStore | None = None) -> Starlette:
    """The ASGI app for ``source`` (a SpecSource, a DeploymentSpec, or a model dir / URI).

    ``token``: the bearer token clients must send (only its sha256 is kept); alternatively the
    spec's ``token_sha256``. ``auth=False`` serves without auth (``--no-auth``, local use only).
    Models load in the app's lifespan, before the first request is accepted.

    What other layers add, as ``Starlette(routes=, lifespan=)`` takes it: ``hooks`` (called on
    every answer, error and event), ``routes`` (served beside the model endpoints; they reach this
    app's :class:`ServingState` as ``request.app.state.serving``), ``lifespan`` (one or several;
    entered in order before the models load, left in reverse after they stop) and ``models``
    (the :class:`~nbprod.serving.loader.ModelStore` that resolves registered model URIs and
    verifies registered directories; without one, only plain MLflow directories are served).
    """
    if isinstance(source, str):
        source = StaticSource.model(source)
    elif isinstance(source, DeploymentSpec):
        source = StaticSource(source)
    state = ServingState(source, token, auth, hooks or ServingHooks(), models)
    extra = [lifespan] if callable(lifespan) else list(lifespan)

    @contextlib.asynccontextmanager
    async def serving_lifespan(app):
        async with contextlib.AsyncExitStack() as stack:
            for enter in extra:
                await stack.enter_async_context(enter(app))
            await state.start()
            try:
                yield
            finally:
                await state.stop()

    table = [
        HttpRoute("/invocations", invocations, methods=["POST"]),
        HttpRoute("/ping", ping, methods=["GET"]),
        HttpRoute("/health", health, methods=["GET"]),
        HttpRoute("/version", version_info, methods=["GET"]),
        HttpRoute("/metrics", metrics, methods=["GET"]),
        HttpRoute("/v2", v2_server, methods=["GET"]),
        HttpRoute("/v2/health/live", v2_live, methods=["GET"]),
        HttpRoute("/v2/health/ready", v2_ready, methods=["GET"]),
        # the v2 routes answer errors in the protocol's shape, {"error": message, "code", …} (v2binary)
        HttpRoute("/v2/models/{name}", v2binary.protocol_errors(v2_model), methods=["GET"]),
        HttpRoute("/v2/models/{name}/ready", v2binary.protocol_errors(v2_model_ready), methods=["GET"]),
        HttpRoute("/v2/models/{name}/versions/{version}", v2binary.protocol_errors(v2_model), methods=["GET"]),
        HttpRoute("/v2/models/{name}/versions/{version}/ready", v2binary.protocol_errors(v2_model_ready),
                  methods=["GET"]),
        HttpRoute("/v2/models/{name}/infer", v2binary.protocol_errors(v2_infer), methods=["POST"]),
        HttpRoute("/v2/models/{name}/versions/{version}/infer", v2binary.protocol_errors(v2_infer),
                  methods=["POST"]),
        *openapi.routes(),  # GET /openapi.json (built from the routes above and ``routes``), GET /docs
        *routes,
    ]
    app = _ServingApp(routes=table, lifespan=serving_lifespan,
                    exception_handlers={404: _not_found, 405: _not_found, 500: _server_error})
    app.state.serving = app.serving = state
    return app
