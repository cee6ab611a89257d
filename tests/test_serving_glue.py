"""The prediction path's quick forms (issue 13) give what the general forms give: the answer's JSON, the
prediction ids, the remembered bearer token, the body read without a coroutine, the prediction called
without one, and the answer's two ASGI messages sent without ``Response.__call__``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from nbprod.errors import ServingError
from nbprod.serving import app as serving_app
from nbprod.serving import quickanswer
from nbprod.serving.app import ServingHooks, ServingState, create_app
from nbprod.serving.batching import LATER, MicroBatcher
from nbprod.serving.codecs import Batch
from nbprod.serving.spec import DeploymentSpec, Route, StaticSource

TOKEN = "s3cret-token"
RID = "0123456789abcdef0123456789abcdef"


def _target(version: str, ood: bool):
    return SimpleNamespace(served=SimpleNamespace(version=version, ood=object() if ood else None))


@pytest.mark.parametrize("pred", [
    np.array([0]), np.array([1, 0, 1] * 40), np.array([0.25]), np.array([0.0, -0.0, 1e-4, 0.5, 1e16, 1.5e300]),
    np.array([1e-5]), np.array([2.5e-7] + [0.5] * 20), np.array([np.nan]), np.array([np.inf] * 10),
    np.random.default_rng(0).random(500), np.random.default_rng(1).random((50, 2)),
    np.random.default_rng(2).normal(size=300) * 1e6, np.random.default_rng(3).random(40)[::2],
    np.array([1, -2, 2 ** 62], dtype=np.int64), np.array([2 ** 64 - 1], dtype=np.uint64),
    np.array([3, 4], dtype=np.int32), np.array([7], dtype=np.uint8), np.array([0.5, 2.0], dtype=">f8"),
    np.array([True, False]), np.array(["yes", "no"]), np.array([0.1], dtype=np.float32),
    np.array([1, "a"], dtype=object), np.array(3.5), [0.5, 1], {"a": [1]},
])
@pytest.mark.parametrize("ood", [None, "flags", [["city 'Zürich' not seen"]], [["a \"quoted\" \\ reason\x7f\x01"]]])
@pytest.mark.parametrize("version", ["3", "v1.2-rc", "é", 'a"b'])
@pytest.mark.parametrize("with_ood", [True, False])
def test_the_quick_answer_is_byte_for_byte_the_general_answer(pred, ood, version, with_ood):
    n = len(pred) if hasattr(pred, "__len__") and getattr(pred, "ndim", 1) else 1
    if ood == "flags":
        ood = [["age 140 above the training range"] if i % 3 == 0 else [] for i in range(n)]
    elif ood is not None:
        ood = ood * n
    target, batch = _target(version, with_ood), SimpleNamespace(n=n)
    general = serving_app._encode_mlflow_dict(pred, target, RID, ood, batch)
    assert serving_app._encode_mlflow(pred, target, RID, ood, batch) == general
    json.loads(general)


@pytest.mark.parametrize("pred", [np.array([0, 1]), np.random.default_rng(0).random(100),
                                  np.random.default_rng(1).random((10, 2))])
def test_a_numeric_answer_takes_the_quick_form(pred):
    """What a compiled model answers (integers, probabilities) is written by quickanswer, not the dict path."""
    out = quickanswer.answer(pred, "1", RID, len(pred), True, None)
    assert out is not None
    assert out == serving_app._encode_mlflow_dict(pred, _target("1", True), RID, None, SimpleNamespace(n=len(pred)))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1023, 1024, 1025, 3000, 65536, 65537])
def test_the_ids_json_is_the_list_of_ids_encoded(n):
    ids = serving_app._prediction_ids(RID, n)
    assert quickanswer.ids_json(RID, n) == json.dumps(ids, separators=(",", ":"))
    assert quickanswer.ids_json(RID, 3) == json.dumps([f"{RID}-0", f"{RID}-1", f"{RID}-2"], separators=(",", ":"))


def _state(token: str | None = TOKEN) -> tuple[ServingState, DeploymentSpec]:
    spec = DeploymentSpec.single("unused-model-dir")
    return ServingState(StaticSource(spec), token, True, ServingHooks()), spec


def _refused(state: ServingState, header: str, spec: DeploymentSpec) -> bool:
    try:
        state.check_auth(None, header, spec)
    except ServingError as err:
        assert err.status == 401 and err.code == "unauthorized"
        return True
    return False


def test_an_accepted_token_is_remembered_a_wrong_one_never_and_a_changed_token_is_refused_at_once():
    state, spec = _state()
    assert not _refused(state, f"Bearer {TOKEN}", spec)
    assert state._accepted == {f"Bearer {TOKEN}": hashlib.sha256(TOKEN.encode()).hexdigest()}
    assert not _refused(state, f"Bearer {TOKEN}", spec)  # from the memory: the same answer
    for i in range(200):  # wrong tokens: refused, none remembered
        assert _refused(state, f"Bearer wrong-{i}", spec)
    for header in ("", "Basic " + TOKEN, TOKEN, f"Bearer {TOKEN}x", "Bearer"):
        assert _refused(state, header, spec)
    assert list(state._accepted) == [f"Bearer {TOKEN}"]
    for variant in (f"bearer {TOKEN}", f"Bearer  {TOKEN}", f"BEARER {TOKEN} "):  # accepted as before
        assert not _refused(state, variant, spec)
    state.token_sha256 = hashlib.sha256(b"rotated").hexdigest()  # a new token: the old one, remembered, is refused
    assert _refused(state, f"Bearer {TOKEN}", spec) and not _refused(state, "Bearer rotated", spec)
    for i in range(100):  # many accepted headers: the memory stays bounded
        assert not _refused(state, "Bearer rotated" + " " * i, spec)
    assert len(state._accepted) <= serving_app._ACCEPTED_MAX
    open_state, spec = _state(None)  # no token anywhere: every request passes, nothing remembered
    assert not _refused(open_state, "Bearer anything", spec) and not open_state._accepted


def _request(messages: list, headers: dict | None = None, wait: asyncio.Event | None = None) -> Request:
    queue = list(messages)

    async def receive():
        if wait is not None and not wait.is_set():
            await wait.wait()
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/invocations", "headers": raw}, receive)


def _body(messages, state, spec, quick: bool, headers=None, wait=None):
    """The body (or the error) read by body_now + read_body (``quick``) or by read_body alone."""
    async def run():
        request = _request(messages, headers, wait)
        length = (headers or {}).get("content-length")
        try:
            if not quick:
                return await state.read_body(request, length)
            now = state.body_now(request, length, spec)
            if type(now) is bytes:
                return "now", now, request._body
            if wait is not None:
                asyncio.get_running_loop().call_later(0.01, wait.set)
            return "later", await state.read_body(request, length, now), request._body
        except (ServingError, ClientDisconnect) as exc:
            return type(exc).__name__, getattr(exc, "status", None), getattr(exc, "problem", None)
    return asyncio.run(run())


@pytest.mark.parametrize("case", ["one", "parts", "empty", "disconnect", "declared-too-large", "too-large",
                                  "parts-too-large", "waits"])
def test_reading_the_body_without_a_coroutine_gives_what_read_body_gives(case):
    state, spec = _state()
    spec.max_body_bytes = 10
    state.router.table = SimpleNamespace(spec=spec)  # what ``state.spec`` reads: the served spec
    one = [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}]
    messages, headers, wait = {
        "one": (one, {"content-length": "8"}, None),
        "parts": ([{"type": "http.request", "body": b"ab", "more_body": True},
                   {"type": "http.request", "body": b"", "more_body": True},
                   {"type": "http.request", "body": b"cd", "more_body": False}], None, None),
        "empty": ([{"type": "http.request"}], None, None),
        "disconnect": ([{"type": "http.disconnect"}], None, None),
        "declared-too-large": (one, {"content-length": "11"}, None),
        "too-large": ([{"type": "http.request", "body": b"x" * 11}], None, None),
        "parts-too-large": ([{"type": "http.request", "body": b"x" * 6, "more_body": True},
                             {"type": "http.request", "body": b"x" * 6}], None, None),
        "waits": (one, None, asyncio.Event()),
    }[case]
    general = _body(messages, state, spec, False, headers, None if wait is None else _set(asyncio.Event()))
    quick = _body(messages, state, spec, True, headers, wait)
    if isinstance(general, bytes):
        assert quick[1:] == (general, general)
        assert quick[0] == ("now" if case in ("one", "empty") else "later")
    else:
        assert quick == general


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def test_a_body_that_does_not_arrive_is_still_answered_408():
    state, spec = _state()
    spec.body_timeout_s = 0.05
    state.router.table = SimpleNamespace(spec=spec)
    never = asyncio.Event()
    out = _body([{"type": "http.request", "body": b"{}"}], state, spec, True, None, None)
    assert out[0] == "now"

    async def run():
        request = _request([{"type": "http.request", "body": b"{}"}], None, never)
        now = state.body_now(request, None, spec)
        assert type(now) is not bytes
        try:
            await state.read_body(request, None, now)
        except ServingError as err:
            return err.status, err.code
    assert asyncio.run(run()) == (408, "body_timeout")


def test_the_prediction_without_a_coroutine_equals_the_general_one_also_when_a_canary_fails(serving_models,
                                                                                          nbprod_home):
    """``_predict_now``: a compiled version's answer at once; a failing compiled canary: counted and answered
    by the stable version, as ``_predict`` does; a busy batcher: the rest awaited."""
    from nbprod.serving.codecs import decode_mlflow

    path = serving_models["clf"]
    spec = DeploymentSpec("glue", [Route(path, "1", 50, "stable"), Route(path, "2", 50, "canary")])
    app = create_app(spec, auth=False)
    state = app.state.serving

    async def run():
        await state.start()
        try:
            table = state.router.current
            stable, canary = table.stable, next(t for t in table.targets.values() if t.served.version == "2")
            payload = {"dataframe_records": json.loads(serving_models["df"].head(3).to_json(orient="records"))}

            def batch() -> Batch:
                return decode_mlflow(payload, stable.served.signature)

            now = serving_app._predict_now(state, table, stable, "stable", batch())
            general = await serving_app._predict(state, table, stable, "stable", batch())
            assert type(now) is tuple and now[:2] == general[:2] == (stable, "stable")
            assert now[2].tolist() == general[2].tolist() and now[4] == general[4]

            def boom(cols, n):
                raise RuntimeError("canary broke")

            canary.batcher = MicroBatcher(boom, direct=True)
            later = serving_app._predict_now(state, table, canary, "canary", batch())
            assert type(later) is not tuple
            fell_back = await later
            general = await serving_app._predict(state, table, canary, "canary", batch())
            assert fell_back[:2] == general[:2] == (stable, "stable")
            assert fell_back[2].tolist() == general[2].tolist() == now[2].tolist()
            stable.batcher._running = True  # a batch in flight: this one queues behind it, awaited
            try:
                assert stable.batcher.now({}, 1) is LATER
                queued = serving_app._predict_now(state, table, stable, "stable", batch())
                assert type(queued) is not tuple
            finally:
                stable.batcher._running = False
            done = await queued
            assert done[2].tolist() == now[2].tolist()
            return state.metrics.render().decode()
        finally:
            await state.stop()

    metrics = asyncio.run(run())
    assert 'nbprod_canary_fallbacks_total{reason="predict_error",version="2"} 2.0' in metrics


def test_the_answer_messages_are_what_response_call_sends(serving_models, nbprod_home):
    """The prediction's two ASGI messages, sent by the app itself, equal those of ``Response(body, 200,
    headers, "application/json")`` called as Starlette calls it; an error answer still goes through it."""
    app = create_app(serving_models["clf"], token=TOKEN)
    body = json.dumps({"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))})

    async def call(auth: str) -> list:
        sent: list = []

        async def receive():
            return {"type": "http.request", "body": body.encode(), "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/invocations", "root_path": "", "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"authorization", auth.encode())]}
        await app(scope, receive, send)
        return sent

    async def run():
        await app.state.serving.start()
        try:
            return await call(f"Bearer {TOKEN}"), await call("Bearer wrong")
        finally:
            await app.state.serving.stop()

    ok, refused = asyncio.run(run())
    start, answer = ok
    headers = dict(start["headers"])
    expected = Response(answer["body"], 200, {"X-Model-Version": headers[b"x-model-version"].decode(),
                                              "X-Prediction-Id": headers[b"x-prediction-id"].decode()},
                        "application/json")
    sent: list = []

    async def collect(message):
        sent.append(message)

    asyncio.run(expected({"type": "http"}, None, collect))
    assert ok == sent
    assert refused[0]["status"] == 401 and json.loads(refused[1]["body"])["error"] == "unauthorized"


def test_the_routing_table_works_out_its_shadows_and_lone_route_once(serving_models, nbprod_home):
    from nbprod.serving.router import Router

    path = serving_models["clf"]
    router = Router()
    lone = router.build(DeploymentSpec.single(path))
    assert lone.pick(lambda: 1 / 0) == (lone.stable, "stable") and lone.shadows() == []
    spec = DeploymentSpec("glue", [Route(path, "1", 100, "stable"), Route(path, "2", 0, "shadow")])
    table = router.build(spec)
    assert [t.served.version for t in table.shadows()] == ["2"] and table.shadows() is table.shadows()


def test_a_receive_that_is_not_an_async_function_is_awaited_as_before():
    """ASGI only asks ``receive()`` to give an awaitable: a future is read by read_body, not stepped by hand."""
    state, spec = _state()
    state.router.table = SimpleNamespace(spec=spec)

    async def run():
        loop = asyncio.get_running_loop()

        def receive():
            fut = loop.create_future()
            fut.set_result({"type": "http.request", "body": b"[1]", "more_body": False})
            return fut

        request = Request({"type": "http", "method": "POST", "path": "/invocations", "headers": []}, receive)
        now = state.body_now(request, None, spec)
        assert type(now) is not bytes
        return await state.read_body(request, None, now)

    assert asyncio.run(run()) == b"[1]"
