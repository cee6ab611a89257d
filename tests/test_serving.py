"""The model server in-process (starlette TestClient): protocols, checks, garbage, routing."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")

from starlette.testclient import TestClient  # noqa: E402

from nbprod.errors import ServingError  # noqa: E402
from nbprod.serving.app import ServingHooks, create_app  # noqa: E402
from nbprod.serving.spec import DeploymentSpec, Route  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture
def home(nbprod_home):
    return nbprod_home


def client(spec_or_dir, **kw) -> TestClient:
    return TestClient(create_app(spec_or_dir, **kw), raise_server_exceptions=False)


def split(df):
    return {"columns": list(df.columns), "data": json.loads(df.to_json(orient="values"))}


def pyfunc_predictions(path, df):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(path).predict(df).tolist()


def test_every_mlflow_format_matches_mlflow_pyfunc(serving_models, home):
    df = serving_models["df"].head(7)
    expected = pyfunc_predictions(serving_models["clf"], df)
    records = json.loads(df.to_json(orient="records"))
    payloads = [
        {"dataframe_split": split(df)},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: json.loads(df[c].to_json(orient="values")) for c in df.columns}},
        {"inputs": records, "params": {}},
        {"instances": split(df)["data"]},
    ]
    with client(serving_models["clf"], auth=False) as c:
        for payload in payloads:
            r = c.post("/invocations", json=payload)
            assert r.status_code == 200, (payload.keys(), r.text)
            body = r.json()
            assert body["predictions"] == expected
            assert body["model_version"] == r.headers["X-Model-Version"] == "1"
            assert len(body["prediction_ids"]) == len(df) == len(set(body["prediction_ids"]))
            assert body["prediction_ids"][0].startswith(r.headers["X-Prediction-Id"])
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        r = c.post("/invocations", content=buf.getvalue(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected


def test_predict_proba_model_and_fastpath_off_agree(serving_models, home):
    df = serving_models["df"].head(20)
    expected = pyfunc_predictions(serving_models["proba"], df)
    with client(serving_models["proba"], auth=False) as c:
        fast = c.post("/invocations", json={"dataframe_split": split(df)}).json()["predictions"]
        assert c.get("/version").json()["routes"][0]["path"] == "fastpath"
    spec = DeploymentSpec.single(serving_models["proba"], fastpath=False)
    with client(spec, auth=False) as c:
        slow = c.post("/invocations", json={"dataframe_split": split(df)}).json()["predictions"]
        assert c.get("/version").json()["routes"][0]["path"] == "pyfunc"
    np.testing.assert_allclose(fast, expected, rtol=1e-9)
    np.testing.assert_allclose(slow, expected, rtol=1e-9)  # to_json keeps 10 digits


def test_fastpath_equivalent_to_sklearn(serving_models):
    from _serving_models import frame

    from nbprod.serving.codecs import Batch, Column, coerce
    from nbprod.serving.fastpath import Unsupported, compile_estimator

    pipe = serving_models["pipe"]
    df, _ = frame(2000, seed=7)
    df.loc[::17, "age"] = np.nan  # the imputer's job
    df.loc[::23, "city"] = "berlin"  # unknown category, handle_unknown="ignore"
    sig = [Column(c, "long" if c == "visits" else "double" if df[c].dtype.kind == "f" else "string") for c in df]
    cols = coerce(Batch({c: df[c].tolist() for c in df}, len(df)), sig)
    assert (compile_estimator(pipe)(cols, len(df)) == pipe.predict(df)).all()
    np.testing.assert_allclose(compile_estimator(pipe, "predict_proba")(cols, len(df)), pipe.predict_proba(df),
                               rtol=1e-9, atol=1e-12)
    from sklearn.ensemble import RandomForestClassifier

    with pytest.raises(Unsupported):
        forest = RandomForestClassifier(n_estimators=2).fit(serving_models["df"][["score"]], serving_models["y"])
        compile_estimator(forest)


def test_open_inference_protocol_v2(serving_models, home):
    df = serving_models["df"].head(4)
    expected = pyfunc_predictions(serving_models["clf"], df)
    types = {"age": "FP64", "income": "FP64", "score": "FP64", "visits": "INT64", "city": "BYTES", "plan": "BYTES"}
    columnar = {"id": "req-1", "inputs": [{"name": c, "shape": [4], "datatype": types[c],
                                          "data": json.loads(df[c].to_json(orient="values"))} for c in df]}
    with client(serving_models["clf"], auth=False) as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        meta = c.get("/v2/models/clf").json()
        assert meta["name"] == "clf" and [i["name"] for i in meta["inputs"]] == list(df.columns)
        assert c.get("/v2/models/clf/ready").json()["ready"] is True
        r = c.post("/v2/models/clf/infer", json=columnar)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == "req-1" and body["model_version"] == "1"
        assert body["outputs"][0]["data"] == expected and body["outputs"][0]["shape"] == [4]
        assert len(body["parameters"]["prediction_ids"]) == 4
        # one [n, k] tensor in signature order, pinned to a version
        matrix = {"inputs": [{"name": "x", "shape": [4, 6], "datatype": "BYTES",
                              "data": json.loads(df.to_json(orient="values"))}]}
        r = c.post("/v2/models/clf/versions/1/infer", json=matrix)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
        assert c.post("/v2/models/nope/infer", json=columnar).status_code == 404
        assert c.post("/v2/models/clf/versions/9/infer", json=columnar).status_code == 404


def test_bearer_auth(serving_models, home):
    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    with client(serving_models["clf"], token=TOKEN) as c:
        assert c.get("/ping").status_code == 200  # probes stay open
        r = c.post("/invocations", json=one)
        assert r.status_code == 401 and r.json()["fix"] and r.headers["WWW-Authenticate"] == "Bearer"
        assert c.post("/invocations", json=one, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/version").status_code == 401
        assert c.post("/invocations", json=one, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # the spec holds only the hash
    from nbprod.serving.spec import hash_token

    spec = DeploymentSpec.single(serving_models["clf"], token_sha256=hash_token(TOKEN))
    assert TOKEN not in json.dumps(spec.to_dict())
    with client(spec) as c:
        assert c.post("/invocations", json=one).status_code == 401
        assert c.post("/invocations", json=one, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_body_limit_timeout_and_idempotency(serving_models, home):
    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    with client(DeploymentSpec.single(serving_models["clf"], max_body_bytes=2000), auth=False) as c:
        big = {"dataframe_records": one["dataframe_records"] * 100}
        r = c.post("/invocations", json=big)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"
        a = c.post("/invocations", json=one, headers={"Idempotency-Key": "k1"})
        b = c.post("/invocations", json=one, headers={"Idempotency-Key": "k1"})
        d = c.post("/invocations", json=one, headers={"Idempotency-Key": "k2"})
        assert a.json() == b.json() and b.headers.get("Idempotent-Replay") == "true"
        assert d.json()["prediction_ids"] != a.json()["prediction_ids"]
        assert c.get("/ping").status_code == 200
    with client(DeploymentSpec.single(serving_models["slow"], timeout_s=0.3), auth=False) as c:
        r = c.post("/invocations", json=one)
        assert r.status_code == 504 and "timeout_s" in r.json()["fix"]
        assert c.get("/ping").status_code == 200


GARBAGE = [
    (b"{not json", "application/json", 400),
    (b"", "application/json", 400),
    (b'{"dataframe_records": [{"age": NaN}]}', "application/json", 400),
    (b'{"dataframe_records": [{"age": Infinity}]}', "application/json", 400),
    (b'{"dataframe_records": []}', "application/json", 400),
    (b'{"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}', "application/json", 400),
    (b'{"dataframe_split": {"columns": ["age"], "data": 5}}', "application/json", 400),
    (b'{"whatever": []}', "application/json", 400),
    (b"[1, 2, 3]", "application/json", 400),
    (b'"just a string"', "application/json", 400),
    (b'{"instances": 7}', "application/json", 400),
    (b"\xff\xfe\x00garbage", "application/json", 400),
    (b"age\n", "text/csv", 400),
    (b"hello", "application/x-www-form-urlencoded", 415),
    (b"[" * 100000 + b"]" * 100000, "application/json", 400),
]


@pytest.mark.parametrize("body,ctype,status", GARBAGE)
def test_garbage_is_a_4xx_json_and_the_server_keeps_serving(serving_models, home, body, ctype, status):
    with client(serving_models["clf"], auth=False) as c:
        r = c.post("/invocations", content=body, headers={"Content-Type": ctype})
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error", "message", "fix"} and r.json()["fix"]
        assert c.get("/ping").status_code == 200
        r = c.post("/v2/models/clf/infer", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 415)


def test_columns_and_types_are_checked_and_named(serving_models, home):
    row = json.loads(serving_models["df"].head(1).to_json(orient="records"))[0]
    with client(serving_models["clf"], auth=False) as c:
        def post(r):
            return c.post("/invocations", json={"dataframe_records": [r]})

        missing = {k: v for k, v in row.items() if k != "city"}
        r = post(missing)
        assert r.status_code == 400 and "'city'" in r.json()["message"] and r.json()["error"] == "missing_column"
        r = post({**row, "colour": "red"})  # a column the model does not use: ignored, as MLflow does
        assert r.status_code == 200
        r = post({**row, "age": "old"})
        assert r.status_code == 400 and "'age'" in r.json()["message"] and r.json()["error"] == "wrong_type"
        r = post({**row, "visits": 2.5})
        assert r.status_code == 400 and "'visits'" in r.json()["message"]
        r = post({**row, "city": 3})
        assert r.status_code == 400 and "'city'" in r.json()["message"]
        r = post({**row, "age": [1, 2]})
        assert r.status_code == 400 and "'age'" in r.json()["message"]
        assert post({**row, "age": "41.5"}).status_code == 200  # numeric text is cast, as CSV needs
        assert c.get("/nope").status_code == 404 and c.get("/invocations").status_code == 405


def test_canary_that_errors_or_fails_to_load_falls_back_to_stable(serving_models, home):
    events = []
    spec = DeploymentSpec("credit", [Route(serving_models["clf"], "1", 0, "stable"),
                                     Route(serving_models["broken"], "2", 100, "canary"),
                                     Route("/does/not/exist", "3", 10, "canary")])
    one = {"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))}
    with client(spec, auth=False, hooks=ServingHooks(on_event=lambda kind, info: events.append(kind))) as c:
        for _ in range(5):
            r = c.post("/invocations", json=one)
            assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
        metrics = c.get("/metrics").text
        assert 'nbprod_canary_fallbacks_total{reason="predict_error",version="2"} 5.0' in metrics
        assert 'nbprod_version_load_failures_total{role="canary",version="3"} 1.0' in metrics
        routes = c.get("/version").json()["routes"]
        assert [r.get("error") for r in routes] == [None, None, "failed to load"]
    assert "canary_failed" in events and "version_load_failed" in events
    # a failing stable model answers 503, not 500
    with client(DeploymentSpec.single(serving_models["broken"]), auth=False) as c:
        r = c.post("/invocations", json=one)
        assert r.status_code == 503 and r.json()["message"]


def test_shadow_is_never_returned_and_split_uses_both(serving_models, home):
    shadowed = []
    spec = DeploymentSpec("credit", [Route(serving_models["clf"], "1", 100, "stable"),
                                     Route(serving_models["proba"], "2", 100, "shadow")])
    one = {"dataframe_records": json.loads(serving_models["df"].head(3).to_json(orient="records"))}
    with client(spec, auth=False, hooks=ServingHooks(on_shadow=shadowed.append)) as c:
        for _ in range(10):
            r = c.post("/invocations", json=one)
            assert r.headers["X-Model-Version"] == "1" and isinstance(r.json()["predictions"][0], int)
    assert len(shadowed) == 10 and shadowed[0]["version"] == "2" and len(shadowed[0]["predictions"][0]) == 2
    spec = DeploymentSpec("ab", [Route(serving_models["clf"], "3", 50, "stable"),
                                 Route(serving_models["clf"], "4", 50, "canary")])
    with client(spec, auth=False) as c:
        seen = {c.post("/invocations", json=one).headers["X-Model-Version"] for _ in range(60)}
    assert seen == {"3", "4"}


def test_metrics_and_probes(serving_models, home):
    one = {"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))}
    with client(serving_models["clf"], auth=False) as c:
        c.post("/invocations", json=one)
        c.post("/invocations", content=b"{", headers={"Content-Type": "application/json"})
        text = c.get("/metrics").text
        assert 'nbprod_requests_total{endpoint="invocations",status="200",version="1"} 1.0' in text
        assert 'nbprod_requests_total{endpoint="invocations",status="400",version="none"} 1.0' in text
        for name in ("nbprod_request_latency_seconds_bucket", "nbprod_prediction_value_bucket",
                     "nbprod_in_flight_requests", "nbprod_dropped_log_rows_total", 'path="fastpath"'):
            assert name in text
        assert c.get("/health").json()["status"] == "ok"
        assert c.get("/ping").status_code == 200
        v = c.get("/version").json()
        assert v["routes"][0]["path"] == "fastpath" and v["routes"][0]["fastpath_reason"].startswith("equivalent")


def test_a_server_of_one_model_is_named_after_the_model(tmp_path):
    """What a server of ``--model credit-risk/3`` logs and alerts under: it was "3" (the URI's last part), so
    each version's predictions were logged apart and ``nbprod monitor credit-risk`` found none of them."""
    (tmp_path / "runs" / "3").mkdir(parents=True)
    names = {source: DeploymentSpec.single(source).name
             for source in ("credit-risk/3", "models:/credit-risk/3", "credit-risk@champion",
                            "models:/credit-risk@champion", "credit-risk", str(tmp_path / "runs" / "3"))}
    assert names == {"credit-risk/3": "credit-risk", "models:/credit-risk/3": "credit-risk",
                     "credit-risk@champion": "credit-risk", "models:/credit-risk@champion": "credit-risk",
                     "credit-risk": "credit-risk", str(tmp_path / "runs" / "3"): "3"}  # a directory: its own name


@pytest.mark.slow
def test_ood_flag_and_reject_with_a_registered_profile(serving_models, home):
    """A version registered through nbprod carries its training profile: out-of-range → flagged."""
    import nbprod.registry as registry
    from nbprod.service import model_store

    mv = registry.register(serving_models["pipe"], "credit-risk", serving_models["df"], serving_models["y"])
    uri = f"credit-risk/{mv.version}"
    with pytest.raises(ServingError, match="no model store"):  # serving alone resolves no registered URI
        with client(DeploymentSpec.single(uri), auth=False):
            pass
    ok = json.loads(serving_models["df"].head(2).to_json(orient="records"))
    bad = [dict(ok[0], age=500.0), dict(ok[1], city="berlin")]
    with client(DeploymentSpec.single(uri), auth=False, models=model_store()) as c:
        r = c.post("/invocations", json={"dataframe_records": ok + bad})
        assert r.status_code == 200, r.text
        ood = r.json()["ood"]
        assert ood[0] == [] and ood[1] == []
        assert "age=500" in ood[2][0] and "berlin" in ood[3][0]
        assert 'nbprod_ood_rows_total{version="1"} 2.0' in c.get("/metrics").text
        assert r.json()["model_version"] == str(mv.version)
    with client(DeploymentSpec.single(uri, ood="reject"), auth=False, models=model_store()) as c:
        assert c.post("/invocations", json={"dataframe_records": ok}).status_code == 200
        r = c.post("/invocations", json={"dataframe_records": ok + bad})
        assert r.status_code == 400 and r.json()["error"] == "out_of_distribution" and "age=500" in r.json()["message"]


def test_request_columns_and_frames_get_the_same_ood_flags(serving_models):
    """The server flags decoded request columns; validate flags frames: one checker, same answers."""
    from nbprod.data.profile import profile
    from nbprod.data.validate import row_flags
    from nbprod.serving.codecs import Batch, Column, coerce
    from nbprod.serving.loader import OodChecker

    df = serving_models["df"]
    prof = profile(df)
    test = df.head(50).copy()
    test.loc[3, "age"] = 999.0
    test.loc[7, "income"] = -1.0
    test.loc[9, "plan"] = "gold"
    flags, _ = row_flags(test, prof)
    sig = [Column(c, "long" if c == "visits" else "double" if df[c].dtype.kind == "f" else "string") for c in df]
    cols = coerce(Batch({c: test[c].tolist() for c in test}, len(test)), sig)
    mine = OodChecker.from_profile(prof).flags(cols, len(test))
    assert [bool(r) for r in mine] == flags.tolist()


@pytest.mark.slow
def test_columns_the_model_does_not_use_are_ignored_like_mlflow(tmp_path):
    """One feature row serves versions that use different subsets of it (as `mlflow models serve`)."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from starlette.testclient import TestClient

    from nbprod.serving.app import create_app
    from nbprod.serving.spec import DeploymentSpec

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(X[["a"]], [0, 0, 1, 1])
    path = tmp_path / "m"
    mlflow.sklearn.save_model(model, str(path), input_example=X[["a"]].head(2),
                              serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    app = create_app(DeploymentSpec.single(str(path)), auth=False)
    with TestClient(app) as client:
        both = client.post("/invocations", json={"dataframe_records": [{"a": 3.0, "b": 9.0}]})
        only = client.post("/invocations", json={"dataframe_records": [{"a": 3.0}]})
        missing = client.post("/invocations", json={"dataframe_records": [{"b": 3.0}]})
    assert both.status_code == 200 and both.json()["predictions"] == only.json()["predictions"]
    assert missing.status_code == 400 and "'a'" in missing.json()["message"]


def test_traffic_changes_under_load_fail_no_request_on_the_pyfunc_path(serving_models, home):
    """Versions served through MLflow's pyfunc (no fast path) leave the routing table while requests
    routed to them are in flight: every request still gets its answer (the dropped version's
    batcher finishes what it was handed, and later submissions run on the default executor)."""
    import asyncio

    import httpx

    body = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}

    def spec(generation: int) -> DeploymentSpec:
        path = serving_models["clf"] if generation % 2 else serving_models["proba"]
        s = DeploymentSpec("credit", [Route(path, str(generation), 100, "stable")], fastpath=False)
        s.generation = generation
        return s

    async def run() -> tuple[dict, set, list]:
        app = create_app(spec(1), auth=False)
        serving = app.state.serving
        await serving.start()
        statuses: dict[int, int] = {}
        versions: set[str] = set()
        applied: list[bool] = []
        switching = True
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://nbprod.test") as c:
                async def client_loop() -> None:
                    for _ in range(400):  # bounded: ends well after the switches
                        r = await c.post("/invocations", json=body)
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                        versions.add(r.headers.get("X-Model-Version", "?"))
                        if not switching:
                            return

                async def switcher() -> None:
                    nonlocal switching
                    for generation in range(2, 22):
                        await asyncio.sleep(0.02)
                        applied.append(await serving.router.apply(spec(generation)))
                    switching = False

                await asyncio.gather(switcher(), *(client_loop() for _ in range(8)))
        finally:
            await serving.stop()
        return statuses, versions, applied

    statuses, versions, applied = asyncio.run(run())
    assert all(applied) and len(applied) == 20
    assert set(statuses) == {200}, statuses
    assert len(versions) > 2  # requests were answered by several generations, across the switches


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_integers_past_int64_and_huge_literals_are_400_naming_the_column(serving_models, home):
    """An integer the model's int64 column cannot hold is refused, not wrapped around to a wrong answer."""
    row = json.loads(serving_models["df"].head(1).to_json(orient="records"))[0]
    with client(serving_models["clf"], auth=False) as c:
        # what the message says is true of what was sent: an integer literal past 2**64 (read as a float by the
        # JSON parser) was called "a floating-point number"
        for bad, says in ((b"9223372036854775808", "outside the range of a 64-bit integer"),
                          (b"1e20", "outside the range of a 64-bit integer"),
                          (b"-9223372036854775809", "too large to be read as an exact integer"),  # -2**63 as a float
                          (b"1" + b"0" * 30, "holds 1e+30, outside the range of a 64-bit integer"),
                          (b"1" + b"0" * 400, "holds an integer of 401 digits, outside the range of a 64-bit"),
                          (b"1e17", "holds 1e+17, too large to be read as an exact integer")):
            body = compact({"dataframe_records": [{**row, "visits": 0}]}).replace(b'"visits":0', b'"visits":' + bad)
            r = c.post("/invocations", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (bad[:30], r.text)
            assert r.json()["error"] == "wrong_type" and "'visits'" in r.json()["message"] and r.json()["fix"]
            assert says in r.json()["message"], (bad[:30], r.json()["message"])
            assert len(r.json()["message"]) < 300  # a 401-digit literal is not echoed whole
        huge_double = compact({"dataframe_records": [{**row, "age": 0}]}).replace(b'"age":0', b'"age":1' + b"0" * 400)
        r = c.post("/invocations", content=huge_double, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "'age'" in r.json()["message"]
        csv_body = "age,income,score,visits,city,plan\n40,1000,0.5,99999999999999999999,paris,pro\n"
        r = c.post("/invocations", content=csv_body, headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and r.json()["error"] == "wrong_type" and "'visits'" in r.json()["message"]
        ok = c.post("/invocations", json={"dataframe_records": [{**row, "visits": 9223372036854775807}]})
        assert ok.status_code == 200, ok.text  # the largest int64 is still an int64


def test_repeated_columns_are_400_duplicate_column(serving_models, home):
    df = serving_models["df"].head(2)
    cols = list(df.columns)
    data = json.loads(df.to_json(orient="values"))
    with client(serving_models["clf"], auth=False) as c:
        split = {"columns": cols + ["age"], "data": [d + [99.0] for d in data]}
        r = c.post("/invocations", json={"dataframe_split": split})
        assert r.status_code == 400 and r.json()["error"] == "duplicate_column" and "'age'" in r.json()["message"]
        csv_body = ",".join(cols + ["city"]) + "\n" + "40,1000,0.5,3,paris,pro,lyon\n"
        r = c.post("/invocations", content=csv_body, headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and r.json()["error"] == "duplicate_column" and "'city'" in r.json()["message"]
        tensors = [{"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]}] * 2
        r = c.post("/v2/models/clf/infer", json={"inputs": tensors})
        assert r.status_code == 400 and r.json()["code"] == "duplicate_column"  # v2: the protocol's error shape


def test_malformed_v2_requests_are_400_not_500(serving_models, home):
    good = {"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]}
    bad_requests = [
        {"inputs": [{**good, "datatype": ["x"]}]},
        {"inputs": [{**good, "name": ["a"]}]},
        {"inputs": [good], "parameters": [1, 2]},
        {"inputs": [good], "parameters": "x"},
        {"inputs": [{**good, "parameters": "x"}]},
        {"inputs": [{**good, "shape": [True]}]},
        {"inputs": [good], "id": {"a": 1}},
    ]
    with client(serving_models["clf"], auth=False) as c:
        for payload in bad_requests:
            r = c.post("/v2/models/clf/infer", json=payload)
            assert r.status_code == 400, (payload, r.text)
            answer = r.json()
            assert set(answer) == {"error", "code", "message", "fix"}
            assert answer["code"] in ("wrong_shape", "wrong_type")
            assert answer["message"] in answer["error"] and answer["fix"] in answer["error"]
        assert c.get("/ping").status_code == 200


def test_idempotency_key_is_bound_to_its_request(serving_models, home):
    """A key reused with another body or endpoint is refused (422), never answered with the old response."""
    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    two = {"dataframe_records": json.loads(serving_models["df"].head(2).to_json(orient="records"))}
    df = serving_models["df"]
    v2 = {"inputs": [{"name": c, "shape": [1], "datatype": "BYTES" if df[c].dtype == object else "FP64",
                      "data": json.loads(df[c].head(1).to_json(orient="values"))} for c in df]}
    with client(serving_models["clf"], auth=False) as c:
        first = c.post("/invocations", json=one, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 200
        for r in (c.post("/invocations", json=two, headers={"Idempotency-Key": "k1"}),
                  c.post("/invocations", content=b"{garbage", headers={"Idempotency-Key": "k1",
                                                                       "Content-Type": "application/json"}),
                  c.post("/v2/models/clf/infer", json=v2, headers={"Idempotency-Key": "k1"})):
            assert r.status_code == 422, r.text
            answer = r.json()  # a v2 route's code is "code" (its "error" is the message: the protocol's shape)
            assert answer.get("code", answer["error"]) == "idempotency_key_reused"
            assert "Idempotency-Key" in answer["fix"]
        again = c.post("/invocations", json=one, headers={"Idempotency-Key": "k1"})
        assert again.json() == first.json() and again.headers["Idempotent-Replay"] == "true"
        # a failed request does not use up its key
        empty = {"dataframe_records": []}
        assert c.post("/invocations", json=empty, headers={"Idempotency-Key": "k3"}).status_code == 400
        assert c.post("/invocations", json=one, headers={"Idempotency-Key": "k3"}).status_code == 200


def test_idempotency_keys_are_shared_by_every_worker_and_computed_once(serving_models, home):
    """Two apps on one state DB stand for two worker processes: a key answered by one is replayed by the
    other; concurrent requests with one key in one worker compute one answer."""
    import asyncio

    import httpx

    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    with client(serving_models["clf"], auth=False) as a, client(serving_models["clf"], auth=False) as b:
        first = a.post("/invocations", json=one, headers={"Idempotency-Key": "shared"})
        second = b.post("/invocations", json=one, headers={"Idempotency-Key": "shared"})
        assert second.status_code == 200 and second.headers["Idempotent-Replay"] == "true"
        assert second.json()["prediction_ids"] == first.json()["prediction_ids"]

    async def concurrent() -> list:
        app = create_app(serving_models["clf"], auth=False)
        await app.state.serving.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                rs = await asyncio.gather(*(c.post("/invocations", json=one, headers={"Idempotency-Key": "burst"})
                                            for _ in range(8)))
        finally:
            await app.state.serving.stop()
        return rs

    rs = asyncio.run(concurrent())
    assert {r.status_code for r in rs} == {200}
    assert len({r.headers["X-Prediction-Id"] for r in rs}) == 1
    assert sum(1 for r in rs if r.headers.get("Idempotent-Replay") == "true") == 7


def test_auth_comes_before_the_model_name_and_errors_have_codes(serving_models, home):
    columnar = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]}]}
    with client(serving_models["clf"], token=TOKEN) as c:
        r = c.post("/v2/models/nope/infer", json=columnar)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized" and "clf" not in r.text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = c.post("/v2/models/nope/infer", json=columnar, headers=auth)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = c.post("/v2/models/clf/versions/9/infer", json=columnar, headers=auth)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        meta = c.get("/v2/models/clf", headers=auth).json()
        assert meta["outputs"][0]["datatype"] == "INT64"  # the classifier's labels, as the outputs say
    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    with client(DeploymentSpec.single(serving_models["slow"], timeout_s=0.3), auth=False) as c:
        assert c.post("/invocations", json=one).json()["error"] == "timeout"
    with client(DeploymentSpec.single(serving_models["broken"]), auth=False) as c:
        assert c.post("/invocations", json=one).json()["error"] == "model_error"
    with client(serving_models["proba"], auth=False) as c:
        assert c.get("/v2/models/proba").json()["outputs"][0]["datatype"] == "FP64"


def test_a_model_the_fast_path_does_not_match_is_served_by_pyfunc(serving_models, home, tmp_path):
    """The compiled path is used only when it reproduces the model on the sample rows; otherwise the
    server says why and answers through MLflow's pyfunc, with the model's own predictions."""
    import copy

    import mlflow.sklearn

    df = serving_models["df"]
    odd = copy.deepcopy(serving_models["pipe"])
    odd.predict = lambda X: 1 - serving_models["pipe"].predict(X)  # disagrees with its own coefficients
    path = tmp_path / "odd"
    mlflow.sklearn.save_model(odd, str(path), input_example=df.head(10), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    with client(str(path), auth=False) as c:
        route = c.get("/version").json()["routes"][0]
        assert route["path"] == "pyfunc" and route["fastpath_reason"].startswith("equivalence check failed")
        r = c.post("/invocations", json={"dataframe_split": split(df.head(20))})
        assert r.status_code == 200
        assert r.json()["predictions"] == (1 - serving_models["pipe"].predict(df.head(20))).tolist()


def test_stored_idempotency_answers_are_bounded_per_deployment(serving_models, home):
    from sqlalchemy import func, select

    from nbprod import state
    from nbprod.serving.idempotency import idempotency_keys

    one = {"dataframe_records": json.loads(serving_models["df"].head(1).to_json(orient="records"))}
    with client(DeploymentSpec.single(serving_models["clf"], idempotency_keys=2), auth=False) as c:
        for key in ("a", "b", "c"):
            assert c.post("/invocations", json=one, headers={"Idempotency-Key": key}).status_code == 200
        with state.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(idempotency_keys.c.key.table)
                                  .where(idempotency_keys.c.scope == "clf")).scalar()
        assert stored == 2
        replay = c.post("/invocations", json=one, headers={"Idempotency-Key": "c"})
        assert replay.headers.get("Idempotent-Replay") == "true"
        assert "Idempotent-Replay" not in c.post("/invocations", json=one, headers={"Idempotency-Key": "a"}).headers
        r = c.post("/invocations", json=one, headers={"Idempotency-Key": "x" * 300})
        assert r.status_code == 400 and r.json()["error"] == "bad_idempotency_key"


def test_invocations_past_starlette_answer_as_through_it_and_middleware_still_sees_them(serving_models, home):
    """POST /invocations skips Starlette's layers: the same status, headers (names, order) and body as
    the same app answers through them; other methods and paths go through Starlette; and once middleware
    is added to the app, /invocations goes through it too."""
    from starlette.applications import Starlette

    body = {"dataframe_records": json.loads(serving_models["df"].head(3).to_json(orient="records"))}
    app = create_app(serving_models["clf"], token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = []
    with TestClient(app) as fast:
        for headers, payload in [(auth, body), ({}, body), (auth, {"nothing": 1})]:
            answers.append(fast.post("/invocations", json=payload, headers=headers))
        assert fast.get("/invocations").status_code == 405
    seen = []

    class Seen:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            seen.append(scope.get("path"))
            await self.app(scope, receive, send)

    slow_app = create_app(serving_models["clf"], token=TOKEN)
    slow_app.add_middleware(Seen)
    with TestClient(slow_app) as slow:
        for (headers, payload), fast_answer in zip([(auth, body), ({}, body), (auth, {"nothing": 1})], answers,
                                                   strict=True):
            answer = slow.post("/invocations", json=payload, headers=headers)
            assert answer.status_code == fast_answer.status_code
            drop = {"x-prediction-id", "content-length"}  # a new request id; its length follows the ids
            assert [k for k, _ in answer.headers.items()] == [k for k, _ in fast_answer.headers.items()]
            assert {k: v for k, v in answer.headers.items() if k not in drop} == \
                   {k: v for k, v in fast_answer.headers.items() if k not in drop}
            got, want = answer.json(), fast_answer.json()
            got.pop("prediction_ids", None), want.pop("prediction_ids", None)
            assert got == want
    assert seen.count("/invocations") == 3
    assert type(app).__mro__[1] is Starlette  # the fast app is still a Starlette app (routes, state, OpenAPI)
