"""Triton's own HTTP client against `nbprod serve`: binary tensors (its default) and JSON, the v2
metadata and readiness endpoints, and bad binary bodies answered 4xx JSON, never 500."""

from __future__ import annotations

import http.client
import json
import os
import struct

import numpy as np
import pytest
from _servers import request, server

pytestmark = pytest.mark.slow  # a real `nbprod serve` under uvicorn

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a test dependency")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "v2-binary-test-token"
TYPES = {"age": "FP64", "income": "FP64", "score": "FP64", "visits": "INT64", "city": "BYTES", "plan": "BYTES"}


@pytest.fixture(scope="module")
def live(serving_models, tmp_path_factory):
    """`nbprod serve --model-dir clf --token …` on a free loopback port, for the whole module."""
    home = tmp_path_factory.mktemp("v2binary") / "nbprod-home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_TOKEN")}
    env["NBPROD_HOME"] = str(home)
    with server(["--model-dir", serving_models["clf"], "--token", TOKEN], env) as port:
        yield port


@pytest.fixture
def triton(live):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{live}", connection_timeout=10, network_timeout=10)
    try:
        yield client
    finally:
        client.close()


def auth() -> dict:
    """A fresh headers dict per call: tritonclient writes Inference-Header-Content-Length into the one it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


def tensors(df, binary: bool) -> list:
    out = []
    for col, datatype in TYPES.items():
        values = df[col].to_numpy()
        values = values.astype(object) if datatype == "BYTES" else values
        t = httpclient.InferInput(col, [len(df)], datatype)
        t.set_data_from_numpy(values, binary_data=binary)
        out.append(t)
    return out


def test_triton_client_with_its_defaults_binary_in_and_out(triton, serving_models):
    df = serving_models["df"].head(5)
    inputs = tensors(df, binary=True)  # set_data_from_numpy's default
    result = triton.infer("clf", inputs, headers=auth())  # no outputs named: the client asks for binary outputs
    header = result.get_response()
    (out,) = header["outputs"]
    assert out["name"] == "predict" and "data" not in out and out["parameters"]["binary_data_size"] == 5 * 8
    assert result.as_numpy("predict").tolist() == serving_models["pipe"].predict(df).tolist()
    assert header["model_name"] == "clf" and header["model_version"] == "1"
    assert len(header["parameters"]["prediction_ids"]) == 5


def test_triton_client_in_json_mode(triton, serving_models):
    df = serving_models["df"].head(3)
    outputs = [httpclient.InferRequestedOutput("predict", binary_data=False)]
    result = triton.infer("clf", tensors(df, binary=False), outputs=outputs, headers=auth(), request_id="r-7")
    header = result.get_response()
    assert header["id"] == "r-7" and header["outputs"][0]["data"] == serving_models["pipe"].predict(df).tolist()
    assert result.as_numpy("predict").tolist() == serving_models["pipe"].predict(df).tolist()


def test_mixed_binary_inputs_json_outputs_and_the_reverse(triton, serving_models):
    df = serving_models["df"].head(4)
    want = serving_models["pipe"].predict(df).tolist()
    json_out = [httpclient.InferRequestedOutput("predict", binary_data=False)]
    r = triton.infer("clf", tensors(df, binary=True), outputs=json_out, headers=auth())
    assert r.get_response()["outputs"][0]["data"] == want
    r = triton.infer("clf", tensors(df, binary=False), model_version="1", headers=auth())  # binary out (default)
    assert r.as_numpy("predict").tolist() == want
    assert "binary_data_size" in r.get_response()["outputs"][0]["parameters"]


def test_one_matrix_tensor_in_signature_order(triton, serving_models):
    df = serving_models["df"].head(3)
    t = httpclient.InferInput("x", [3, 6], "BYTES")
    t.set_data_from_numpy(df.to_numpy().astype(str).astype(object))  # every value as text, binary
    r = triton.infer("clf", [t], headers=auth())
    assert r.as_numpy("predict").tolist() == serving_models["pipe"].predict(df).tolist()


def test_metadata_and_readiness_through_the_triton_client(triton, serving_models):
    assert triton.is_server_live() and triton.is_server_ready(headers=auth())
    server_meta = triton.get_server_metadata()
    assert server_meta["name"] == "nbprod" and "binary_tensor_data" in server_meta["extensions"]
    meta = triton.get_model_metadata("clf", headers=auth())
    assert meta["name"] == "clf" and meta["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == TYPES
    assert [o["name"] for o in meta["outputs"]] == ["predict"]
    assert triton.get_model_metadata("clf", model_version="1", headers=auth())["name"] == "clf"
    assert triton.is_model_ready("clf", headers=auth())
    assert triton.is_model_ready("clf", model_version="1", headers=auth())
    assert not triton.is_model_ready("clf", model_version="9", headers=auth())
    assert not triton.is_model_ready("nope", headers=auth())
    with pytest.raises(InferenceServerException) as denied:
        triton.get_model_metadata("clf")  # no token
    assert denied.value.status() == "401"
    with pytest.raises(InferenceServerException) as denied:
        triton.infer("clf", tensors(serving_models["df"].head(1), binary=True))
    assert denied.value.status() == "401"


def test_the_triton_clients_exception_shows_nbprods_message_and_fix(triton, serving_models):
    """tritonclient shows an error body's `error` field only: it is nbprod's message and fix in words."""
    df = serving_models["df"].head(1)
    only_age = [t for t in tensors(df, binary=True) if t.name() == "age"]
    with pytest.raises(InferenceServerException) as bad:
        triton.infer("clf", only_age, headers=auth())
    assert bad.value.status() == "400"
    text = bad.value.message()
    assert "income" in text and "Fix: " in text, text  # a missing column named, and what to send
    with pytest.raises(InferenceServerException) as missing:
        triton.get_model_metadata("nope", headers=auth())
    assert missing.value.status() == "404" and "no model called 'nope'" in missing.value.message()
    with pytest.raises(InferenceServerException) as denied:
        triton.infer("clf", only_age)
    assert denied.value.status() == "401" and "token" in denied.value.message().lower()


def test_an_idempotent_replay_of_a_binary_answer_is_the_same_binary_answer(triton, serving_models):
    df = serving_models["df"].head(2)
    headers = {**auth(), "Idempotency-Key": "binary-replay-1"}
    first = triton.infer("clf", tensors(df, binary=True), headers=headers)
    again = triton.infer("clf", tensors(df, binary=True), headers=headers)
    assert again.get_response() == first.get_response()
    assert again.as_numpy("predict").tolist() == first.as_numpy("predict").tolist()


# --- bad binary bodies: 4xx JSON, never 500 ---------------------------------------------------


def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {**auth(), **headers})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def binary_request(inputs: list[tuple[dict, bytes]], extra: dict | None = None) -> tuple[bytes, int]:
    head = json.dumps({"inputs": [t for t, _ in inputs], **(extra or {})}).encode()
    return head + b"".join(raw for _, raw in inputs), len(head)


def fp64(name: str, values: list[float]) -> tuple[dict, bytes]:
    raw = np.asarray(values, "<f8").tobytes()
    return {"name": name, "shape": [len(values)], "datatype": "FP64", "parameters": {"binary_data_size": len(raw)}}, raw


def text(name: str, values: list[str]) -> tuple[dict, bytes]:
    raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    tensor = {"name": name, "shape": [len(values)], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    return tensor, raw


def row() -> list[tuple[dict, bytes]]:
    visits = np.asarray([3], "<i8").tobytes()
    return [fp64("age", [40.0]), fp64("income", [20000.0]), fp64("score", [0.5]),
            ({"name": "visits", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}, visits),
            text("city", ["paris"]), text("plan", ["pro"])]


def test_a_hand_written_binary_request_is_answered(live):
    body, n = binary_request(row())
    status, headers, raw = post(live, "/v2/models/clf/infer", body, {"Inference-Header-Content-Length": str(n),
                                                                     "Content-Type": "application/octet-stream"})
    assert status == 200, raw
    assert "inference-header-content-length" not in headers  # no binary output asked for: JSON answer
    assert json.loads(raw)["outputs"][0]["data"] in ([0], [1])


def _bad_cases() -> dict[str, tuple[bytes, dict, str]]:
    body, n = binary_request(row())
    h = {"Inference-Header-Content-Length": str(n)}
    short_tensor = row()
    t, raw = short_tensor[0]
    short_tensor[0] = ({**t, "parameters": {"binary_data_size": 4}}, raw[:4])  # 4 bytes for one FP64
    bad_bool = row() + [({"name": "flag", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": 1}},
                         b"\x02")]
    overrun = row()
    t, raw = overrun[4]
    overrun[4] = (t, struct.pack("<I", 99) + b"paris"[: t["parameters"]["binary_data_size"] - 4])
    both = row()
    both[0] = ({**both[0][0], "data": [40.0]}, both[0][1])
    unknown = row()
    unknown[0] = ({**unknown[0][0], "datatype": "FP128"}, unknown[0][1])
    wrong_count = row()
    t, raw = text("city", ["paris", "nice"])
    wrong_count[4] = ({**t, "shape": [1]}, raw)
    s_body, s_n = binary_request(short_tensor)
    b_body, b_n = binary_request(bad_bool)
    o_body, o_n = binary_request(overrun)
    d_body, d_n = binary_request(both)
    u_body, u_n = binary_request(unknown)
    w_body, w_n = binary_request(wrong_count)
    out_body, out_n = binary_request(row(), {"outputs": [{"name": "predict_proba"}]})
    flag_body, flag_n = binary_request(row(), {"parameters": {"binary_data_output": "yes"}})
    return {
        "header past the body": (body, {"Inference-Header-Content-Length": str(len(body) + 1)}, "bad_binary_tensor"),
        "header not a number": (body, {"Inference-Header-Content-Length": "-3"}, "bad_binary_tensor"),
        "header zero": (body, {"Inference-Header-Content-Length": "0"}, "bad_binary_tensor"),
        "header cuts the JSON": (body, {"Inference-Header-Content-Length": str(n - 5)}, "invalid_json"),
        "sizes add up to less than the body": (body + b"\0" * 8, h, "bad_binary_tensor"),
        "sizes add up to more than the body": (body[:-3], h, "bad_binary_tensor"),
        "no header with binary_data_size": (body[:n], {}, "bad_binary_tensor"),
        "bytes after JSON without binary inputs": (b'{"inputs": []}xyz', {"Inference-Header-Content-Length": "14"},
                                                   "bad_binary_tensor"),
        "wrong dtype size": (s_body, {"Inference-Header-Content-Length": str(s_n)}, "bad_binary_tensor"),
        "BOOL byte other than 0 or 1": (b_body, {"Inference-Header-Content-Length": str(b_n)}, "wrong_type"),
        "BYTES element past its tensor": (o_body, {"Inference-Header-Content-Length": str(o_n)}, "bad_binary_tensor"),
        "data and binary_data_size": (d_body, {"Inference-Header-Content-Length": str(d_n)}, "bad_binary_tensor"),
        "unknown datatype": (u_body, {"Inference-Header-Content-Length": str(u_n)}, "wrong_type"),
        "element count off the shape": (w_body, {"Inference-Header-Content-Length": str(w_n)}, "wrong_shape"),
        "unknown output": (out_body, {"Inference-Header-Content-Length": str(out_n)}, "unknown_output"),
        "binary_data_output not a bool": (flag_body, {"Inference-Header-Content-Length": str(flag_n)},
                                          "bad_binary_tensor"),
    }


def test_an_idempotency_key_binds_the_split_between_json_and_tensor_bytes(live):
    """The same bytes with another Inference-Header-Content-Length are another request: refused with
    422, never answered with the first one's stored answer."""
    body, n = binary_request(row())
    key = {"Idempotency-Key": "binary-split-1", "Content-Type": "application/octet-stream"}
    status, _, raw = post(live, "/v2/models/clf/infer", body, {**key, "Inference-Header-Content-Length": str(n)})
    assert status == 200, raw
    status, headers, raw = post(live, "/v2/models/clf/infer", body, {**key, "Inference-Header-Content-Length": str(n)})
    assert status == 200 and headers.get("idempotent-replay") == "true", raw
    status, headers, raw = post(live, "/v2/models/clf/infer", body,
                                {**key, "Inference-Header-Content-Length": str(n + 8)})
    assert status == 422 and "idempotent-replay" not in headers, raw
    assert b"idempotency_key_reused" in raw


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_binary_bodies_are_4xx_json(live, case):
    body, headers, error = _bad_cases()[case]
    status, _, raw = post(live, "/v2/models/clf/infer", body, headers)
    assert 400 <= status < 500, (status, raw)
    answer = json.loads(raw)
    assert answer["code"] == error and answer["message"] and answer["fix"], answer
    assert answer["error"] == f"{answer['message'].rstrip('.')}. Fix: {answer['fix']}"  # the protocol's field


def test_binary_tensors_on_invocations_are_415_and_no_request_was_a_500(live):
    body, n = binary_request(row())
    status, _, raw = post(live, "/invocations", body, {"Inference-Header-Content-Length": str(n),
                                                       "Content-Type": "application/octet-stream"})
    assert status == 415 and json.loads(raw)["error"] == "unsupported_media_type"
    metrics = request(live, "GET", "/metrics")[2].decode()
    assert 'status="500"' not in metrics


def test_route_level_404_and_405_on_v2_paths_are_in_the_protocols_shape(live):
    """No v2 route matched (an unknown path, a wrong method): the answer still carries the message in
    ``error`` for a v2 client, and the code in ``code``; other paths keep nbprod's own shape."""
    status, _, raw = request(live, "GET", "/v2/models/clf/nonsense")
    answer = json.loads(raw)
    assert status == 404 and answer["code"] == "not_found", answer
    assert answer["error"] == f"{answer['message'].rstrip('.')}. Fix: {answer['fix']}"
    status, headers, raw = request(live, "DELETE", "/v2/models/clf/infer")
    answer, allow = json.loads(raw), {k.lower(): v for k, v in headers.items()}.get("allow", "")
    assert status == 405 and answer["code"] == "method_not_allowed" and "POST" in allow, answer
    assert answer["error"].startswith("DELETE is not allowed")
    status, _, raw = request(live, "GET", "/nonsense")
    assert status == 404 and json.loads(raw)["error"] == "not_found"
