"""The model registry on a real MLflow SQLite store: register, aliases, URIs, integrity, bad input.

Creating an MLflow store costs about a second, so tests that do not interfere share one home
(module scope); tests that need a pristine or broken store use the ``nbprod_home`` fixture.
"""

from __future__ import annotations

import json
import shutil

import pytest
from _registry_helpers import module_home, pipeline

from nbprod.errors import (
    ConfigError,
    IntegrityError,
    ModelNotFoundError,
    RegistrationError,
    RegistryError,
    TrackingServerError,
)


@pytest.fixture(scope="module")
def data():
    from nbprod.datasets import credit

    return credit(600, seed=1)


@pytest.fixture(scope="module")
def model(data):
    return pipeline(*data)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with module_home(tmp_path_factory, "registry") as h:
        yield h


@pytest.fixture(scope="module")
def registered(home, data, model):
    """credit-risk v1 (@champion) and v2 (@challenger)."""
    from nbprod import registry

    X, y = data
    v1 = registry.register(model, "credit-risk", X, y, metrics={"auc": 0.71}, params={"C": 1.0}, alias="champion",
                           description="first")
    v2 = registry.register(pipeline(X, y, C=0.1), "credit-risk", X, y, metrics={"auc": 0.72}, alias="challenger")
    return v1, v2


# --- URIs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, expected", [
    ("credit-risk@champion", ("credit-risk", None, "champion")),
    ("credit-risk/3", ("credit-risk", "3", None)),
    ("models:/credit-risk@champion", ("credit-risk", None, "champion")),
    ("models:/credit-risk/3", ("credit-risk", "3", None)),
    ("credit-risk", ("credit-risk", None, None)),
    ("models:/credit.risk_v2/latest", ("credit.risk_v2", None, None)),
])
def test_parse_model_uri_accepts_every_spelling(uri, expected):
    from nbprod.registry import parse_model_uri

    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize("bad", ["", "credit risk", "credit-risk/0", "credit-risk/abc", "a/b/c", "models:/x@1st", "x@"])
def test_parse_model_uri_rejects_garbage_with_a_fix(bad):
    from nbprod.registry import parse_model_uri

    with pytest.raises(ModelNotFoundError) as err:
        parse_model_uri(bad)
    assert err.value.fix


# --- register -------------------------------------------------------------------------------

def test_register_writes_a_complete_versioned_model(registered, data):
    v1, v2 = registered
    assert (v1.name, v1.version, v2.version) == ("credit-risk", "1", "2")
    assert v1.uri == "models:/credit-risk/1" and v1.aliases == ["champion"] and v2.aliases == ["challenger"]
    assert v1.metrics == {"auc": 0.71} and v1.run_id and v1.created_by and v1.created_at
    # The known trap: a ColumnTransformer pipeline still gets the safe format, with numpy.dtype trusted.
    assert v1.serialization_format == "skops"
    from nbprod.registry.versions import local_model_dir

    path = local_model_dir(v1)
    for rel in ("MLmodel", "model.skops", "requirements.txt", "conda.yaml", "python_env.yaml", "input_example.json",
                "nbprod/profile.json", "nbprod/lineage.json", "nbprod/manifest.json"):
        assert (path / rel).is_file(), rel
    lineage = json.loads((path / "nbprod/lineage.json").read_text())
    assert lineage["serialization_format"] == "skops" and "numpy.dtype" in lineage["skops_trusted_types"]
    assert lineage["metrics"] == {"auc": 0.71} and lineage["params"] == {"C": "1.0"}
    assert lineage["notebook_snapshot"] is None and lineage["notebook_snapshot_missing_reason"]
    manifest = json.loads((path / "nbprod/manifest.json").read_text())["files"]
    assert "nbprod/profile.json" in manifest and "model.skops" in manifest and "nbprod/manifest.json" not in manifest
    reqs = (path / "requirements.txt").read_text().split()
    assert any(r.startswith("mlflow==") for r in reqs) and any(r.startswith("scikit-learn==") for r in reqs)
    assert any(r.startswith("skops==") for r in reqs) and any(r.startswith("nbprod==") for r in reqs)
    assert v1.profile.n_rows == len(data[0])
    html, text = v1._repr_html_(), str(v1)
    assert "credit-risk" in html and "@champion" in html and "skops" in text and "first" in text
    assert v1.to_dict()["profile_rows"] == len(data[0])


def test_register_stores_the_training_outputs_monitoring_compares_against(registered, data, model):
    """nbprod/outputs.json: the profile of what the served model answers on the training rows
    (MLflow's default predict_fn, ``predict``) and of the labels — prediction/label drift's baseline."""
    import numpy as np

    from nbprod.data.profile import Profile
    from nbprod.registry.versions import local_model_dir

    X, y = data
    path = local_model_dir(registered[0]) / "nbprod" / "outputs.json"
    outputs = Profile.from_json(path.read_text())
    assert set(outputs.columns) == {"prediction", "label"} and outputs.n_rows == len(X)
    assert "nbprod/outputs.json" in json.loads((path.parent / "manifest.json").read_text())["files"]
    predicted = model.predict(X)
    assert outputs.columns["prediction"].count == len(X)
    assert outputs.columns["prediction"].mean == pytest.approx(float(np.mean(predicted)))
    assert outputs.columns["label"].mean == pytest.approx(float(np.mean(y)))


def test_versions_resolve_by_alias_number_and_latest(registered):
    from nbprod.registry import get_version

    assert get_version("credit-risk@champion").version == "1"
    assert get_version("models:/credit-risk@challenger").version == "2"
    assert get_version("models:/credit-risk/1").version == "1"
    assert get_version("credit-risk/2").aliases == ["challenger"]
    assert get_version("credit-risk").version >= "2"


def test_unknown_alias_version_and_model_name_what_exists(registered):
    from nbprod.registry import get_version

    with pytest.raises(ModelNotFoundError) as err:
        get_version("credit-risk@prod")
    assert "@champion" in err.value.fix and "@challenger" in err.value.fix
    with pytest.raises(ModelNotFoundError, match="no version 99"):
        get_version("credit-risk/99")
    with pytest.raises(ModelNotFoundError) as err:
        get_version("no-such-model@champion")
    assert "credit-risk" in err.value.fix


def test_models_table_lists_versions_aliases_and_metrics(registered):
    from nbprod.registry import models

    table = models()
    assert [(v.name, v.version) for v in table][:2] == [("credit-risk", "2"), ("credit-risk", "1")]
    text, html = str(table), table._repr_html_()
    assert "@champion" in text and "auc=0.7100" in text and "600 rows × 8 columns" in text
    assert "<table" in html and "@challenger" in html
    assert len(models("credit-risk")) == len(table)
    with pytest.raises(ModelNotFoundError):
        models("nope")


def test_alias_set_move_delete_each_audited(registered):
    from nbprod import audit
    from nbprod.registry import delete_alias, get_version, set_alias

    change = set_alias("credit-risk/1", "staging")
    assert (change.action, change.version, change.previous) == ("set", "1", None)
    change = set_alias("models:/credit-risk/2", "@staging")
    assert (change.action, change.version, change.previous) == ("move", "2", "1")
    assert "v1 → v2" in str(change)
    assert get_version("credit-risk@staging").version == "2"
    change = delete_alias("credit-risk", "staging")
    assert change.action == "delete" and change.previous == "2"
    with pytest.raises(ModelNotFoundError):
        get_version("credit-risk@staging")
    with pytest.raises(ModelNotFoundError):
        delete_alias("credit-risk", "staging")
    actions = [e.action for e in audit.history("credit-risk")]
    assert {"register", "alias.set", "alias.move", "alias.delete"} <= set(actions)
    assert audit.verify().ok


def test_load_model_verifies_and_predicts(registered, data, model):
    import numpy as np

    from nbprod.registry import load_model

    X, _ = data
    loaded = load_model("credit-risk@champion")
    assert (loaded.name, loaded.version, loaded.uri) == ("credit-risk", "1", "models:/credit-risk/1")
    assert np.array_equal(np.asarray(loaded.predict(X.head(20))), model.predict(X.head(20)))
    assert loaded.raw_model is not None and hasattr(loaded.raw_model, "predict_proba")
    assert loaded.metadata["serialization_format"] == "skops" and loaded.metadata["verified"]
    assert loaded.signature is not None and loaded.profile.n_rows == len(X)
    assert loaded.pyfunc.metadata.flavors["sklearn"]["serialization_format"] == "skops"
    again = load_model(loaded.path)  # a local model directory works too
    assert again.name == "credit-risk" and again.uri is None


@pytest.mark.parametrize("user_set", [None, "false"])
def test_load_model_warns_nothing_and_leaves_the_environment_as_it_was(registered, monkeypatch, user_set):
    """MLflow 3.18 renamed the switch a pickled load needs and warns (into the notebook) at the old name;
    a verified load flips whichever switch the installed MLflow reads, for the load only."""
    import os
    import warnings

    from nbprod.registry import load_model

    names = ("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "MLFLOW_ALLOW_MODEL_CODE_EXECUTION")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    if user_set is not None:
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", user_set)
    before = {name: os.environ.get(name) for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("error" if user_set is None else "ignore", FutureWarning)
        loaded = load_model("credit-risk@champion")
    assert loaded.raw_model is not None
    assert {name: os.environ.get(name) for name in names} == before


def test_download_gives_the_full_directory(registered, tmp_path):
    from nbprod.registry import download, load_model

    path = download("credit-risk@challenger", tmp_path / "dl")
    assert (path / "MLmodel").is_file() and (path / "nbprod" / "manifest.json").is_file()
    assert load_model(path).metadata["verified"]


def test_load_profile(registered, data):
    from nbprod.registry import load_profile

    assert load_profile("credit-risk@challenger").n_rows == len(data[0])


# --- integrity ------------------------------------------------------------------------------

def _flip_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def test_one_flipped_byte_is_refused(registered, tmp_path):
    from nbprod.registry import download, load_model
    from nbprod.registry.versions import local_model_dir

    copy = download("credit-risk/1", tmp_path / "copy")
    _flip_byte(copy / "model.skops")
    with pytest.raises(IntegrityError, match="changed: model.skops"):
        load_model(copy)
    # The registered artefact itself: tamper, refuse, restore.
    stored = local_model_dir(registered[0]) / "model.skops"
    original = stored.read_bytes()
    try:
        _flip_byte(stored)
        with pytest.raises(IntegrityError):
            load_model("credit-risk@champion")
    finally:
        stored.write_bytes(original)
    assert load_model("credit-risk@champion").metadata["verified"]


def test_incomplete_extra_or_rewritten_manifest_is_refused(registered, tmp_path):
    from nbprod.registry import download, load_model
    from nbprod.registry.integrity import write_manifest
    from nbprod.registry.versions import local_model_dir

    copy = download("credit-risk/1", tmp_path / "a")
    (copy / "conda.yaml").unlink()
    with pytest.raises(IntegrityError, match="missing: conda.yaml"):
        load_model(copy)
    copy = download("credit-risk/1", tmp_path / "b")
    (copy / "sitecustomize.py").write_text("print('hi')")
    with pytest.raises(IntegrityError, match="not in the manifest"):
        load_model(copy)
    assert load_model(copy, verify=False).metadata["verified"] is False
    # Rewriting the manifest to match a changed file is caught by the digest kept in the registry.
    stored = local_model_dir(registered[1])
    backup = tmp_path / "backup"
    shutil.copytree(stored, backup)
    try:
        (stored / "input_example.json").write_text("{}")
        write_manifest(stored)
        load_model(stored)  # self-consistent on its own…
        with pytest.raises(IntegrityError, match="differs from the one recorded"):
            load_model("credit-risk/2")  # …but not what was registered
    finally:
        shutil.rmtree(stored)
        shutil.copytree(backup, stored)


# --- bad input: a clear error and nothing half-registered ------------------------------------

def _count(name="credit-risk"):
    from nbprod.registry.store import client

    return len(client().search_model_versions(f"name='{name}'"))


def test_bad_input_is_refused_before_anything_is_written(registered, data, model):
    from sklearn.linear_model import LogisticRegression

    from nbprod.registry import register

    X, y = data
    before = _count()
    with pytest.raises(RegistrationError, match="not fitted") as err:
        register(LogisticRegression(), "credit-risk", X, y)
    assert "fit" in err.value.fix
    with pytest.raises(RegistrationError, match="600 rows but y has 10"):
        register(model, "credit-risk", X, y[:10])
    with pytest.raises(RegistrationError, match="illegal model name") as err:
        register(model, "credit risk/1", X, y)
    assert "letters, digits" in err.value.fix
    with pytest.raises(RegistrationError, match="illegal alias"):
        register(model, "credit-risk", X, y, alias="1st")
    with pytest.raises(RegistrationError, match="cannot predict"):
        register(model, "credit-risk", X.drop(columns=["age"]), y)
    assert _count() == before


@pytest.mark.slow
def test_cloudpickle_fallback_for_types_skops_does_not_trust(nbprod_home, data):
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from nbprod.registry import load_model, register

    X, y = data
    num = X[["age", "debt_ratio", "late_payments"]]
    from sklearn.linear_model import LogisticRegression

    model = make_pipeline(FunctionTransformer(lambda a: np.log1p(np.abs(a))), LogisticRegression()).fit(num, y)
    version = register(model, "odd", num, y)
    assert version.serialization_format == "cloudpickle"
    loaded = load_model("odd")
    assert loaded.metadata["serialization_format"] == "cloudpickle"
    assert np.array_equal(np.asarray(loaded.predict(num.head())), model.predict(num.head()))


@pytest.mark.slow
def test_audit_failure_rolls_the_registration_back(nbprod_home, data, model, tmp_path):
    from nbprod.config import settings
    from nbprod.registry import register
    from nbprod.registry.store import client

    X, y = data
    register(model, "rollback", X, y, alias="champion")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state DB's folder should be")
    settings.set(db_url=f"sqlite:///{blocker}/nbprod.db")
    with pytest.raises(ConfigError) as err:
        register(model, "rollback", X, y, alias="champion")
    assert str(blocker) in err.value.problem and "NBPROD_DB_URL" in err.value.fix
    with pytest.raises(ConfigError):
        register(model, "rollback-new", X, y)
    settings.set(db_url="")
    c = client()
    assert [str(v.version) for v in c.search_model_versions("name='rollback'")] == ["1"]
    assert str(c.get_model_version_by_alias("rollback", "champion").version) == "1"
    assert [m.name for m in c.search_registered_models()] == ["rollback"]
    runs = c.search_runs([c.get_experiment_by_name("nbprod").experiment_id])
    assert len(runs) == 1  # the failed runs are deleted
    artifacts = nbprod_home / "artifacts"
    assert len([p for p in artifacts.iterdir() if p.is_dir()]) == 1


def test_unreachable_tracking_server_fails_fast(nbprod_home, data, model):
    import socket

    from nbprod.config import settings
    from nbprod.registry import get_version, register

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.set(tracking_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingServerError) as err:
        register(model, "x", *data)
    assert "mlflow server" in err.value.fix
    with pytest.raises(TrackingServerError):
        get_version("x@champion")
    assert isinstance(err.value, (RegistryError, ConnectionError))


# --- more bad input: typed errors, nothing half-written ---------------------------------------

def test_edited_profile_is_refused_like_an_edited_model(registered, data):
    from nbprod import validate
    from nbprod.registry import load_model, load_profile
    from nbprod.registry.versions import local_model_dir

    X, _ = data
    path = local_model_dir(registered[1]) / "nbprod" / "profile.json"
    original = path.read_text()
    try:
        edited = json.loads(original)
        edited["n_rows"] = 1
        path.write_text(json.dumps(edited))
        with pytest.raises(IntegrityError, match="changed: nbprod/profile.json") as err:
            load_profile("credit-risk@challenger")
        assert "re-register" in err.value.fix
        with pytest.raises(IntegrityError):
            validate(X, against="credit-risk@challenger")
        with pytest.raises(IntegrityError):
            load_model("credit-risk@challenger")
    finally:
        path.write_text(original)
    assert load_profile("credit-risk@challenger").n_rows == len(X)


def test_non_finite_metrics_are_refused_before_anything_is_built(registered, data, model):
    from nbprod import audit
    from nbprod.registry import register

    X, y = data
    before, rows = _count(), len(audit.history())
    for bad in (float("nan"), float("inf"), "-inf"):
        with pytest.raises(RegistrationError, match="not a finite number") as err:
            register(model, "credit-risk", X, y, metrics={"auc": bad})
        assert "finite" in err.value.fix
    assert _count() == before and len(audit.history()) == rows


def test_unreadable_model_file_is_named(registered, data, tmp_path):
    from nbprod.registry import register

    X, y = data
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all \x00\x01\x02")
    before = _count()
    with pytest.raises(RegistrationError) as err:
        register(str(garbage), "credit-risk", X, y)
    assert f"cannot read model file {garbage}" in err.value.problem and "cannot save" not in err.value.problem
    assert "joblib.dump" in err.value.fix
    assert _count() == before


@pytest.mark.parametrize("bad", ["..a", ".hidden", "..", "."])
def test_names_that_are_relative_paths_are_illegal(registered, data, model, bad):
    from nbprod.registry import register

    X, y = data
    with pytest.raises(RegistrationError, match="illegal model name") as err:
        register(model, bad, X, y)
    assert "not starting with '.'" in err.value.fix


@pytest.mark.parametrize("bad", [3, None, 2.5, ["credit-risk"]])
def test_load_model_of_a_non_uri_is_a_typed_error(registered, bad):
    from nbprod.registry import load_model

    with pytest.raises(ModelNotFoundError, match="needs a model URI") as err:
        load_model(bad)
    assert "credit-risk@champion" in err.value.fix


@pytest.mark.slow
def test_label_left_in_the_frame_is_not_a_feature(nbprod_home, data, model, tmp_path):
    """Without y, a column the model never reads (the label, usually) is not a serving input."""
    import joblib

    from nbprod.cli import main
    from nbprod.registry import get_version, load_model

    X, y = data
    frame = X.assign(default=y)
    frame.to_parquet(tmp_path / "train.parquet")
    joblib.dump(model, tmp_path / "model.pkl")
    with pytest.warns(UserWarning, match=r"does not use: \['default'\].*pass it as y"):
        args = ["register", str(tmp_path / "model.pkl"), "--name", "cr", "--data", str(tmp_path / "train.parquet")]
        assert main(args) == 0
    loaded = load_model("cr/1")
    assert loaded.signature.inputs.input_names() == list(X.columns)
    assert set(loaded.profile.columns) == set(X.columns)
    assert get_version("cr/1").to_dict()["profile_columns"] == len(X.columns)
    assert len(loaded.predict(X.head(3))) == 3  # serving needs no label column


def test_terminal_repr_is_the_readable_text(registered):
    from nbprod.registry import get_version, models

    version, table = get_version("credit-risk/1"), models()
    assert repr(version) == str(version) and "ModelVersion(" not in repr(version)
    assert repr(table) == str(table) and "ModelTable(" not in repr(table)


@pytest.mark.slow
def test_rollback_keeps_a_model_another_process_added_a_version_to(nbprod_home, data, model):
    """register's rollback deletes a registered model it created only while no other version exists."""
    from nbprod.registry import register
    from nbprod.registry.register import _rollback
    from nbprod.registry.store import client

    X, y = data
    register(model, "shared", X, y)  # "another process" registered v1 after this call created the model
    c = client()
    mv = c.create_model_version("shared", c.get_model_version("shared", "1").source)
    _rollback(c, "shared", str(mv.version), True, None, None, None)
    assert [str(v.version) for v in c.search_model_versions("name='shared'")] == ["1"]
    assert c.get_registered_model("shared").name == "shared"


@pytest.mark.slow
def test_package_of_a_version_whose_artefacts_are_gone(nbprod_home, data, model, tmp_path):
    from nbprod import audit
    from nbprod.packaging import package
    from nbprod.registry import load_model, load_profile, register
    from nbprod.registry.versions import local_model_dir

    X, y = data
    version = register(model, "gone", X, y)
    shutil.rmtree(local_model_dir(version))
    rows = len(audit.history())
    for call in (lambda: package("gone/1", tmp_path / "b"), lambda: load_model("gone/1"),
                 lambda: load_profile("gone/1")):
        with pytest.raises(IntegrityError, match="gone/1") as err:
            call()
        assert "re-register" in err.value.fix
    assert not (tmp_path / "b").exists() and len(audit.history()) == rows


def test_a_tracking_uri_that_is_not_mlflow_is_a_tracking_server_error(nbprod_home, data, model):
    import http.server
    import threading

    from nbprod.config import settings
    from nbprod.registry import register

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.set(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(TrackingServerError) as err:
            register(model, "x", *data)
        assert "MLflow tracking server" in err.value.problem and "MLFLOW_TRACKING_URI" in err.value.fix
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


RACER = """
import os, sys, time
import numpy as np, pandas as pd
from sklearn.linear_model import LinearRegression
from nbprod.registry import register
go, ready = sys.argv[1], sys.argv[2]
X = pd.DataFrame({"a": np.arange(20.0)})
y = pd.Series(2 * X["a"], name="y")
model = LinearRegression().fit(X, y)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
print(register(model, "race", X, y).version)
"""


@pytest.mark.slow
def test_two_processes_on_a_fresh_home_both_register(nbprod_home, tmp_path):
    """Both create the MLflow store (alembic migrations) at the same moment: neither may crash."""
    import os
    import subprocess
    import sys

    from nbprod.registry.store import client

    go = tmp_path / "go"
    env = {**os.environ, "NBPROD_HOME": str(nbprod_home)}
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(go), str(r)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    try:
        import time

        while not all(r.exists() for r in ready) and all(p.poll() is None for p in procs):
            time.sleep(0.01)  # both imported nbprod and MLflow: release them onto the fresh store together
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert sorted(out.split()[-1] for out, _ in outs) == ["1", "2"]
    assert sorted(str(v.version) for v in client().search_model_versions("name='race'")) == ["1", "2"]


def test_unreachable_state_db_leaves_the_alias_alone(registered, tmp_path):
    from nbprod.config import settings
    from nbprod.registry import delete_alias, get_version, set_alias

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state DB's folder should be")
    settings.set(db_url=f"sqlite:///{blocker}/nbprod.db")
    try:
        with pytest.raises(ConfigError, match="state DB"):
            set_alias("credit-risk/2", "champion")
        with pytest.raises(ConfigError, match="state DB"):
            delete_alias("credit-risk", "challenger")
    finally:
        settings.set(db_url="")
    assert get_version("credit-risk@champion").version == "1"
    assert get_version("credit-risk@challenger").version == "2"
