"""The OpenAPI description: valid OpenAPI 3.1 (openapi-spec-validator), the same in the bundle as on
the bundle's own server, columns with the training profile's ranges and categories, and a document
that says what the server does (its examples are answered; a body it refuses fails its schema)."""

from __future__ import annotations

import json
import os

import pytest
from _registry_helpers import credit_frame, module_home, pipeline
from _servers import request, server

pytestmark = pytest.mark.slow  # a registered model, a bundle and real `nbprod serve` processes

validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is a test dependency")

TOKEN = "openapi-test-token"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    from nbprod.registry import register

    with module_home(tmp_path_factory, "openapi") as home:
        X, y = credit_frame(seed=1)
        version = register(pipeline(X, y), "Credit_Risk", X, y, alias="champion")
        yield version, X, home


@pytest.fixture(scope="module")
def bundle(registered, tmp_path_factory):
    from nbprod.packaging import package

    return package("Credit_Risk@champion", tmp_path_factory.mktemp("bundles") / "credit-risk")


@pytest.fixture(scope="module")
def document(bundle) -> dict:
    return json.loads((bundle.path / "openapi.json").read_text())


def _env(home) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_TOKEN")}
    env["NBPROD_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def live(bundle, registered):
    """The bundle's model served as its container serves it (--model-dir model, a token)."""
    with server(["--model-dir", str(bundle.path / "model"), "--token", TOKEN], _env(registered[2])) as port:
        yield port


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def get(port: int, path: str, token: str | None = TOKEN):
    status, headers, body = request(port, "GET", path, token=token)
    return status, {k.lower(): v for k, v in headers.items()}, body


def post(port: int, path: str, body: bytes, ctype: str = "application/json") -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": ctype, **auth()})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def schema_validator(doc: dict, name: str):
    """A JSON Schema 2020-12 validator for ``components/schemas/<name>`` of ``doc`` (refs resolved in it)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=registry)


def test_the_bundles_document_is_valid_openapi_and_lists_every_route(document):
    validator.validate(document)
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    assert {"/invocations", "/feedback", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
            "/v2/models/{name}/ready", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
            "/ping", "/health", "/version", "/metrics", "/openapi.json", "/docs"} <= paths
    forms = [s["$ref"].rsplit("/", 1)[1] for s in document["components"]["schemas"]["InvocationsRequest"]["oneOf"]]
    assert forms == ["DataframeSplit", "DataframeRecords", "Instances", "Inputs"]
    assert "text/csv" in document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert document["paths"]["/invocations"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/ping"]["get"]
    assert document["paths"]["/feedback"]["post"]["operationId"] == "feedback"


def test_columns_carry_types_ranges_and_categories_of_the_training_profile(document, bundle):
    from nbprod.data.ood import OodChecker
    from nbprod.data.profile import Profile

    checker = OodChecker.from_profile(Profile.from_json((bundle.path / "profile.json").read_text()))
    row = document["components"]["schemas"]["Row"]
    assert set(row["properties"]) == {"income", "age", "region"} and set(row["required"]) == {"income", "age",
                                                                                              "region"}
    for check in checker.ranges:
        col = row["properties"][check.name]
        assert col["type"] == ["number", "null"]
        assert col["x-nbprod-ood-range"] == {"minimum": check.lo, "maximum": check.hi}
        assert "minimum" not in col  # ood="flag": such rows are answered, so the schema does not forbid them
    (regions,) = checker.categories
    region = row["properties"]["region"]
    assert region["x-nbprod-categories"] == sorted(regions.seen) == ["east", "north", "south"]
    assert "flagged" in region["description"]


def test_the_server_serves_the_bundles_document_with_its_token(live, document):
    status, headers, body = get(live, "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == document  # nbprod package wrote what the bundle's server answers
    status, _, body = get(live, "/openapi.json", token=None)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"  # ranges and categories need the token


def test_the_documented_examples_are_answered(live, document):
    op = document["paths"]["/invocations"]["post"]
    example = op["requestBody"]["content"]["application/json"]["example"]
    schema_validator(document, "InvocationsRequest").validate(example)
    status, answer = post(live, "/invocations", json.dumps(example).encode())
    assert status == 200 and answer["ood"] == [[]], answer  # the example row is inside the training profile
    status, answer = post(live, "/invocations", op["requestBody"]["content"]["text/csv"]["example"].encode(),
                          "text/csv")
    assert status == 200 and answer["ood"] == [[]], answer
    v2 = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["example"]
    schema_validator(document, "InferenceRequest").validate(v2)
    status, answer = post(live, "/v2/models/model/infer", json.dumps(v2).encode())
    assert status == 200 and answer["outputs"][0]["shape"] == [1], answer


def test_every_request_form_the_schema_accepts_is_answered_and_what_it_refuses_is_400(live, document):
    check = schema_validator(document, "InvocationsRequest")
    row = {"income": 51.5, "age": 40.0, "region": "north"}
    good = [{"dataframe_split": {"columns": list(row), "data": [list(row.values())]}},
            {"dataframe_records": [row]},
            {"instances": [row]}, {"instances": [list(row.values())]},
            {"inputs": {k: [v] for k, v in row.items()}}, {"inputs": [row], "params": {}}]
    for body in good:
        assert check.is_valid(body), body
        status, answer = post(live, "/invocations", json.dumps(body).encode())
        assert status == 200, (body, answer)
    bad = [{"dataframe_records": [{"income": 51.5, "age": 40.0}]},  # a required column missing
           {"dataframe_records": [{**row, "age": "forty"}]},  # a wrong type
           {"dataframe_records": []},  # no rows
           {"dataframe_records": [row], "instances": [row]},  # two forms
           {"records": [row]}]  # no form
    for body in bad:
        assert not check.is_valid(body), body
        status, answer = post(live, "/invocations", json.dumps(body).encode())
        assert status == 400 and answer["fix"], (body, answer)


def test_under_ood_reject_the_document_states_the_bounds_the_server_enforces(bundle, registered):
    with server(["--model-dir", str(bundle.path / "model"), "--token", TOKEN, "--ood", "reject"],
                _env(registered[2])) as port:
        status, _, body = get(port, "/openapi.json")
        doc = json.loads(body)
        validator.validate(doc)
        props = doc["components"]["schemas"]["Row"]["properties"]
        income, region = props["income"], props["region"]
        assert "x-nbprod-ood-range" not in income and income["minimum"] < income["maximum"]
        assert region["enum"] == ["east", "north", "south", None]
        check = schema_validator(doc, "InvocationsRequest")
        inside = {"income": income["maximum"], "age": props["age"]["minimum"], "region": "east"}
        for body, status_expected in (({"dataframe_records": [inside]}, 200),
                                      ({"dataframe_records": [{**inside, "income": income["maximum"] + 1}]}, 400),
                                      ({"dataframe_records": [{**inside, "region": "west"}]}, 400)):
            assert check.is_valid(body) == (status_expected == 200), body
            status, answer = post(port, "/invocations", json.dumps(body).encode())
            assert status == status_expected, (body, answer)
            if status == 400:
                assert answer["error"] == "out_of_distribution"


def test_the_docs_page_is_self_contained(live):
    status, headers, body = get(live, "/docs", token=None)  # the page itself holds no model facts
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]  # nothing loads from elsewhere
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert "http://" not in page and "https://" not in page and " src=" not in page
    assert 'fetch("openapi.json"' in page


def test_a_server_without_a_profile_or_token_describes_its_signature(serving_models, nbprod_home, env):
    with server(["--model-dir", serving_models["clf"], "--no-auth"], env) as port:
        status, _, body = get(port, "/openapi.json", token=None)
        doc = json.loads(body)
    validator.validate(doc)
    assert status == 200 and "securitySchemes" not in doc["components"]
    props = doc["components"]["schemas"]["Row"]["properties"]
    assert props["visits"]["type"] == "integer" and props["city"]["type"] == ["string", "null"]
    assert not any("x-nbprod-ood-range" in p for p in props.values())
    assert all("security" not in op for item in doc["paths"].values() for op in item.values() if "responses" in op)


def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(live, tmp_path):
    """Schemathesis generates requests from the document (its examples, boundary values, random
    bodies) against the bundle's server: no 500, and every answer's status, content type, headers and
    body are as documented (a 405 names the allowed methods). Whether the server accepts every
    schema-valid body is not checked: a dataframe_split row's length, an Idempotency-Key reused for
    another body or the bytes of a binary tensor body are beyond what a schema can say."""
    import subprocess
    import sys
    from pathlib import Path

    st = Path(sys.executable).parent / "schemathesis"
    assert st.is_file(), "schemathesis is a test dependency: pip install 'nbprod[test]'"
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
              "response_headers_conformance,unsupported_method")
    run = subprocess.run([str(st), "--no-color", "run", f"http://127.0.0.1:{live}/openapi.json",
                          "-H", f"Authorization: Bearer {TOKEN}", "--checks", checks, "--max-examples", "10",
                          "--workers", "1", "--seed", "1", "--phases", "examples,coverage,fuzzing"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its .schemathesis/ cache
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_a_canary_with_another_signature_gets_its_own_row_schema(registered):
    """A canary whose model takes other columns answers its share of /invocations: the document says
    so (its own `Row_v<version>`, named in the description and in `x-nbprod-routes`) and stays valid;
    a v2 route's error is the protocol's `{"error": message}` with nbprod's code beside it, as documented."""
    from conftest import kill_recorded_servers

    import nbprod
    from nbprod.registry import register

    X, y = credit_frame(seed=3)
    narrow = X[["income", "age"]]
    register(pipeline(X, y), "Canary_Risk", X, y, alias="champion")
    v2 = register(pipeline(narrow, y), "Canary_Risk", narrow, y)
    try:
        token = nbprod.deploy("Canary_Risk@champion", name="canary-openapi").token  # the first deploy shows it
        dep = nbprod.deploy(v2.uri, name="canary-openapi", canary=10)
        port = int(dep.url.rstrip("/").rsplit(":", 1)[1])
        status, _, body = request(port, "GET", "/openapi.json", token=token)
        assert status == 200, body
        doc = json.loads(body)
        validator.validate(doc)
        schemas = doc["components"]["schemas"]
        assert set(schemas["Row"]["properties"]) == {"income", "age", "region"}  # the stable's
        assert set(schemas["Row_v2"]["properties"]) == {"income", "age"}
        routes = {r["version"]: r for r in doc["x-nbprod-routes"]}
        assert routes["1"]["role"] == "stable" and routes["1"]["schema"] == "#/components/schemas/Row"
        assert routes["2"]["role"] == "canary" and routes["2"]["schema"] == "#/components/schemas/Row_v2"
        assert "Row_v2" in doc["info"]["description"]
        assert "Row_v2" in doc["paths"]["/invocations"]["post"]["description"]

        status, _, body = request(port, "POST", "/v2/models/canary-openapi/infer", {"inputs": []}, token=token)
        answer = json.loads(body)
        assert 400 <= status < 500 and schema_validator(doc, "V2Error").is_valid(answer), answer
        assert answer["code"] and answer["message"] in answer["error"]
    finally:
        kill_recorded_servers()
