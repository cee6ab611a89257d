"""What a deployment's server reports back (nbprod.deployments.events), in-process on a real state DB."""

from __future__ import annotations

import json
import time
import warnings

from _serving_models import build

warnings.filterwarnings("ignore", message=".*httpx.*")

from starlette.testclient import TestClient  # noqa: E402


def test_a_canary_that_errors_at_predict_time_falls_back_and_is_audited(nbprod_home, tmp_path):
    from nbprod import audit
    from nbprod.deployments.events import serving_hooks
    from nbprod.serving.app import create_app
    from nbprod.serving.spec import DbSource, DeploymentSpec, Route, save_spec

    models = build(tmp_path)
    save_spec("credit", DeploymentSpec("credit", [Route(models["clf"], "1", 50, "stable"),
                                                  Route(models["broken"], "2", 50, "canary")]))
    one = {"dataframe_records": json.loads(models["df"].head(2).to_json(orient="records"))}
    app = create_app(DbSource("credit", poll_interval=None), auth=False, hooks=serving_hooks("credit"))
    with TestClient(app) as c:
        answers = [c.post("/invocations", json=one) for _ in range(20)]
    assert {(r.status_code, r.headers["X-Model-Version"]) for r in answers} == {(200, "1")}
    rows = []
    for _ in range(250):  # the server writes audit rows from a background thread
        rows = [e for e in audit.history() if e.action == "deploy.fallback"]
        if rows:
            break
        time.sleep(0.02)
    assert rows, "no deploy.fallback audit row"
    d = rows[0].details
    assert d["deployment"] == "credit" and d["kind"] == "canary_failed" and d["version"] == "2"
    assert "this canary is broken" in d["error"] and d["fallback_to"] == "stable"
