"""Deployable bundles: layout, Dockerfile, Kubernetes/KServe manifests, and a venv built from them alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _registry_helpers import credit_frame, module_home, pipeline
from conftest import require

from nbprod.commands import parse
from nbprod.errors import ModelNotFoundError, PackagingError

pytestmark = pytest.mark.slow  # every test builds on a registered model and a bundle (~11 s)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """One registered ColumnTransformer pipeline in a module-wide home; returns (uri, X)."""
    from nbprod.registry import register

    with module_home(tmp_path_factory, "packaging") as home:
        X, y = credit_frame(seed=0)
        version = register(pipeline(X, y), "Credit_Risk", X, y, alias="challenger")
        yield version, X, home


@pytest.fixture(scope="module")
def bundle(registered, tmp_path_factory):
    from nbprod.packaging import package

    out = tmp_path_factory.mktemp("bundles") / "credit-risk"
    return package("Credit_Risk@challenger", out, canary_percent=10, image="registry.local/team/credit-risk:1",
                   replicas=3, cpu="250m", memory="512Mi")


def _load(bundle, rel: str) -> dict:
    return yaml.safe_load((bundle.path / rel).read_text())


def test_bundle_holds_everything(bundle, registered):
    version, _, _ = registered
    expected = {"Dockerfile", ".dockerignore", "requirements.txt", "README.md", "profile.json", "bundle.json",
                "k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml", "k8s/inferenceservice.yaml",
                "model/MLmodel", "model/nbprod/manifest.json", "model/nbprod/profile.json",
                "model/nbprod/lineage.json", f"wheels/{bundle.wheel}"}
    assert expected <= set(bundle.files)
    assert bundle.uri == version.uri and bundle.version == version.version
    assert bundle.wheel.startswith("nbprod-") and bundle.wheel.endswith("-py3-none-any.whl")
    assert json.loads((bundle.path / "profile.json").read_text()) == json.loads(
        (bundle.path / "model/nbprod/profile.json").read_text())
    meta = json.loads((bundle.path / "bundle.json").read_text())
    assert meta["uri"] == version.uri and meta["manifest_sha256"] == version.tags["nbprod.manifest_sha256"]
    assert "docker build" in str(bundle) and "<table>" in bundle._repr_html_()
    assert json.loads(json.dumps(bundle.to_dict()))["image"] == "registry.local/team/credit-risk:1"
    readme = (bundle.path / "README.md").read_text()
    for needle in ("docker build", "docker run", "kubectl apply", "canaryTrafficPercent: 10"):
        assert needle in readme
    assert not [p for p in bundle.path.parent.iterdir() if "nbprod-tmp" in p.name]


def test_model_in_bundle_verifies_against_its_manifest(bundle):
    from nbprod.registry import verify_manifest

    verify_manifest(bundle.path / "model")


def test_deployment_service_and_hpa(bundle):
    dep = _load(bundle, "k8s/deployment.yaml")
    assert dep["apiVersion"] == "apps/v1" and dep["kind"] == "Deployment"
    name = dep["metadata"]["name"]
    assert name == "credit-risk"  # a DNS-1123 label made from "Credit_Risk"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/team/credit-risk:1"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                      "limits": {"cpu": "250m", "memory": "512Mi"}}
    assert container["securityContext"]["runAsNonRoot"] is True
    (token,) = container["env"]
    assert token == {"name": "NBPROD_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": "credit-risk-token", "key": "token"}}}

    svc = _load(bundle, "k8s/service.yaml")
    assert svc["kind"] == "Service" and svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == 8080

    hpa = _load(bundle, "k8s/hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] >= 3
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70


def test_kserve_inference_service_with_canary(bundle):
    isvc = _load(bundle, "k8s/inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"] == "registry.local/team/credit-risk:1"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"]["limits"]["memory"] == "512Mi"


def _hadolint() -> str | None:
    return shutil.which("hadolint") or (str(p) if (p := Path(sys.executable).parent / "hadolint").exists() else None)


def test_dockerfile(bundle):
    text = (bundle.path / "Dockerfile").read_text()
    lint = _hadolint()
    if lint:
        out = subprocess.run([lint, "--failure-threshold", "warning", str(bundle.path / "Dockerfile")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    # parsed either way: join continuation lines, then look at each instruction
    instructions = [line.strip() for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    ops = [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in instructions]
    froms = [arg for op, arg in ops if op == "FROM"]
    assert froms == [f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"]
    users = [arg for op, arg in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(op == "EXPOSE" and arg == "8080" for op, arg in ops)
    (health,) = [arg for op, arg in ops if op == "HEALTHCHECK"]
    assert "urllib.request" in health and "/ping" in health and "curl" not in health
    (cmd,) = [arg for op, arg in ops if op == "CMD"]
    assert json.loads(cmd) == ["nbprod", "serve", "--model-dir", "/app/model", "--port", "8080", "--host", "0.0.0.0"]
    warm = [arg for op, arg in ops if op == "RUN" and "load_version('/app/model')" in arg]
    assert warm, "the image warms the server's verified start-up cache at build time"
    # and the warm-up runs: the command the image runs, on this bundle's model folder
    code = warm[0].split('python -c "', 1)[1].split('"', 1)[0].replace("/app/model", str(bundle.path / "model"))
    env = {**os.environ, "NBPROD_HOME": str(bundle.path.parent / "warm-home")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    # COPY keeps each file's mode and the server runs as USER: it must read what the image holds (the
    # registry's store keeps its files 0600, and such a bundle's server could not open its MLmodel)
    uid = int(users[-1].split(":")[0])
    shipped = [bundle.path / "requirements.txt", *(p for top in ("model", "wheels")
                                                    for p in (bundle.path / top, *(bundle.path / top).rglob("*")))]
    for path in shipped:
        assert path.stat().st_mode & (0o005 if path.is_dir() else 0o004), f"{path} is not readable by USER {uid}"
    order = [op + " " + arg.split()[0] for op, arg in ops if op in ("COPY", "RUN")]
    assert order.index("COPY requirements.txt") < order.index("COPY model/")  # dependency layer first
    ignored = [ln for ln in (bundle.path / ".dockerignore").read_text().splitlines() if not ln.startswith("#")]
    assert "k8s/" in ignored and not [ln for ln in ignored if ln.startswith(("model", "wheels", "requirements"))]


def test_requirements_are_pinned_and_name_the_wheel(bundle):
    lines = [ln for ln in (bundle.path / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[-1] == f"./wheels/{bundle.wheel}"
    pins = lines[:-1]
    assert all("==" in ln for ln in pins), [ln for ln in pins if "==" not in ln]
    names = {ln.split("==")[0].lower() for ln in pins}
    assert {"mlflow", "scikit-learn", "pandas", "starlette", "uvicorn"} <= names
    assert "nbprod" not in names and len(names) == len(pins)


def test_existing_bundle_needs_overwrite_and_failures_leave_it_intact(registered, tmp_path):
    from nbprod import audit
    from nbprod.packaging import package

    out = tmp_path / "b"
    first = package("Credit_Risk@challenger", out, canary_percent=5)
    assert "bundle.json" in first.files
    assert sorted(json.loads((out / "bundle.json").read_text())["files"]) == first.files  # what overwrite may replace
    with pytest.raises(PackagingError, match="not empty"):
        package("Credit_Risk@challenger", out)
    with pytest.raises(ModelNotFoundError):
        package("Credit_Risk@nosuchalias", out, overwrite=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == first.files
    before = len(audit.history("Credit_Risk"))
    bundle = package("Credit_Risk@challenger", out, overwrite=True)
    assert (out / "Dockerfile").is_file()
    assert "canaryTrafficPercent" not in _load(bundle, "k8s/inferenceservice.yaml")["spec"]["predictor"]
    rows = audit.history("Credit_Risk")
    assert len(rows) == before + 1 and rows[0].action == "package"
    assert rows[0].details["out_dir"] == str(out.resolve()) and audit.verify().ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or old dirs left behind


def test_a_bundle_path_that_cannot_be_written_is_a_packaging_error(registered, tmp_path):
    """A folder that cannot be made (here under a file; a read-only disk or /proc alike) raised the raw
    FileNotFoundError/NotADirectoryError with nbprod's temp folder in it: a traceback in the terminal."""
    from nbprod import audit
    from nbprod.packaging import package

    (tmp_path / "a-file").write_text("x")
    before = len(audit.history("Credit_Risk"))
    with pytest.raises(PackagingError, match=r"cannot write the bundle to .*a-file/b: (File exists|Not a directory)"):
        package("Credit_Risk@challenger", tmp_path / "a-file" / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and len(audit.history("Credit_Risk")) == before


def _exited_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_what_a_killed_package_left_is_cleared_by_the_next_one(registered, tmp_path):
    """A SIGKILLed ``nbprod package`` runs no clean-up: its half-built ``.b.nbprod-tmp-…`` folder stayed beside
    the user's files for good. The next package of the same path deletes a dead process's, never a live one's."""
    from nbprod.packaging import package

    dead, live = _exited_pid(), os.getpid()
    left = {name: tmp_path / name for name in (f".b.nbprod-tmp-{dead}-0a1b2c3d", f".b.nbprod-old-{dead}-0a1b2c3d",
                                               f".b.nbprod-tmp-{live}-0a1b2c3d", ".c.nbprod-tmp-1-0a1b2c3d")}
    for path in left.values():
        (path / "model").mkdir(parents=True)
    package("Credit_Risk@challenger", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", f".b.nbprod-tmp-{live}-0a1b2c3d",
                                                                 ".c.nbprod-tmp-1-0a1b2c3d"])


def test_overwrite_replaces_only_a_previous_bundle_as_nbprod_wrote_it(registered, tmp_path, monkeypatch):
    """--overwrite deletes a directory: never one it did not write, nor NBPROD_HOME, nor the working
    directory, and it follows no symlink."""
    from nbprod.packaging import package

    _, _, home = registered
    uri = "Credit_Risk@challenger"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(PackagingError, match="not an nbprod bundle"):
        package(uri, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"

    prev = package(uri, tmp_path / "prev").path
    (prev / "model" / "by-hand.txt").write_text("added later")
    with pytest.raises(PackagingError, match="did not write .*model/by-hand.txt"):
        package(uri, prev, overwrite=True)
    assert (prev / "model" / "by-hand.txt").is_file()
    (prev / "model" / "by-hand.txt").unlink()

    (prev / "escape").symlink_to(mine)  # a symlink inside: nothing behind it is touched
    with pytest.raises(PackagingError, match="symlinks"):
        package(uri, prev, overwrite=True)
    (prev / "escape").unlink()
    link = tmp_path / "link"  # the bundle path itself a symlink to a bundle: not followed
    link.symlink_to(prev)
    with pytest.raises(PackagingError, match="is a symlink"):
        package(uri, link, overwrite=True)
    assert link.is_symlink() and (prev / "bundle.json").is_file() and (mine / "notes.txt").is_file()

    monkeypatch.chdir(prev / "k8s")  # the working directory inside the bundle
    with pytest.raises(PackagingError, match="working directory"):
        package(uri, prev, overwrite=True)
    with pytest.raises(PackagingError, match="working directory"):
        package(uri, ".", overwrite=True)
    monkeypatch.chdir(tmp_path)

    # the parent of NBPROD_HOME, even dressed up as a bundle: the registry and state DB stay
    parent = home.parent
    (parent / "bundle.json").write_text(json.dumps({"files": ["bundle.json"]}))
    (parent / "unrelated.txt").write_text("keep")
    with pytest.raises(PackagingError, match="NBPROD_HOME"):
        package(uri, parent, overwrite=True)
    assert (home / "mlflow.db").is_file() and (home / "nbprod.db").is_file()
    assert (parent / "unrelated.txt").read_text() == "keep"
    with pytest.raises(PackagingError, match="NBPROD_HOME"):
        package(uri, home, overwrite=True)
    (parent / "bundle.json").unlink()
    (parent / "unrelated.txt").unlink()

    again = package(uri, prev, overwrite=True)  # a previous bundle as nbprod wrote it is replaced
    assert again.path == prev and (prev / "Dockerfile").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "mine", "prev"]


@pytest.mark.parametrize("kwargs, match", [
    ({"canary_percent": 150}, "canary_percent"),
    ({"cpu": "lots"}, "CPU"),
    ({"memory": "1 GB"}, "memory"),
    ({"replicas": 0}, "replicas"),
    ({"image": "bad image!"}, "image"),
    ({"image": "Registry/Foo:1"}, "'Registry/Foo' has uppercase letters"),
    ({"image": "registry.local:5000/Team/credit-risk:V1"}, "'Team/credit-risk' has uppercase letters"),
])
def test_bad_arguments(registered, tmp_path, kwargs, match):
    from nbprod.packaging import package

    with pytest.raises(PackagingError, match=match):
        package("Credit_Risk@challenger", tmp_path / "b", **kwargs)
    assert not (tmp_path / "b").exists()


def test_package_verb(registered, tmp_path):
    command, args = parse("nbprod", ["package", "Credit_Risk@challenger", str(tmp_path / "b"), "--canary", "25",
                                     "--image", "cr:2"])
    bundle = command.run(args, None)
    isvc = yaml.safe_load((bundle.path / "k8s/inferenceservice.yaml").read_text())
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 25 and bundle.image == "cr:2"


def test_image_registry_host_and_tag_may_have_capitals(registered, tmp_path):
    from nbprod.packaging import package

    bundle = package("Credit_Risk@challenger", tmp_path / "b", image="Registry.Example.com:5000/team/credit-risk:V1")
    assert bundle.image == "Registry.Example.com:5000/team/credit-risk:V1"


def test_package_verb_port(registered, tmp_path):
    command, args = parse("nbprod", ["package", "Credit_Risk@challenger", str(tmp_path / "b"), "--port", "9000"])
    bundle = command.run(args, None)
    assert "EXPOSE 9000" in (bundle.path / "Dockerfile").read_text()
    container = _load(bundle, "k8s/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 9000


_VENVS: dict[str, Path] = {}


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "NBPROD_", "MLFLOW_"))}
    env["NBPROD_HOME"] = str(tmp_path / "home")
    return env


def _bundle_venv(bundle, tmp_path: Path) -> Path:
    """A copy of the bundle outside the repo with a venv built from its requirements.txt alone
    (built once per test module; returns the venv's python)."""
    key = str(bundle.path)
    if key in _VENVS:
        return _VENVS[key]
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        require(False, "uv not available to build the venv (it comes with `make install`)")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    env = _clean_env(tmp_path)
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(copy / ".venv")], cwd=copy, env=env,
                   check=True, timeout=300)
    python = copy / ".venv" / "bin" / "python"
    out = subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "-r", "requirements.txt"],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    _VENVS[key] = python
    return python


@pytest.mark.slow
def test_bundle_installs_and_loads_in_a_fresh_venv(bundle, registered, tmp_path):
    """The bundle alone (no project tree, no registry) is enough to load and run the model."""
    _, X, _ = registered
    python = _bundle_venv(bundle, tmp_path)
    copy = python.parents[2]
    env = _clean_env(tmp_path)
    row = X.head(1).to_json(orient="split", index=False)
    dtypes = {c: str(t) for c, t in X.dtypes.items()}
    script = f"""
import json, sys, pandas as pd, nbprod
from pathlib import Path
from nbprod.registry import load_model
assert Path(nbprod.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), nbprod.__file__
model = load_model({str(copy / 'model')!r}, verify=True)
assert model.metadata["verified"]
frame = pd.read_json(__import__("io").StringIO({row!r}), orient="split").astype({dtypes!r})
print(json.dumps([int(v) for v in model.predict(frame)]))
"""
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) in ([0], [1])


def _dockerfile_cmd(bundle_dir: Path) -> list[str]:
    (line,) = [ln for ln in (bundle_dir / "Dockerfile").read_text().splitlines() if ln.startswith("CMD ")]
    return json.loads(line[len("CMD "):])


@pytest.mark.slow
def test_bundle_serves_predictions_with_its_own_command(bundle, registered, tmp_path):
    """The Dockerfile's own CMD, run from the bundle directory in the bundle's own venv, answers
    /invocations (no Docker here: same command, loopback instead of 0.0.0.0, a free port)."""
    import socket
    import time
    import urllib.error
    import urllib.request

    venv_python = _bundle_venv(bundle, tmp_path)
    copy = venv_python.parents[2]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = _dockerfile_cmd(copy)
    assert cmd[:2] == ["nbprod", "serve"]
    argv = [str(venv_python.parent / "nbprod"), *cmd[1:]]
    argv[argv.index("/app/model")] = "model"
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    argv[argv.index("8080")] = str(port)
    env = _clean_env(tmp_path)
    env["NBPROD_TOKEN"] = "bundle-test-token"
    server = subprocess.Popen(argv, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the bundle's server did not answer /ping in 120 s"
            time.sleep(0.2)
        body = (copy / "model" / "serving_input_example.json").read_bytes()
        request = urllib.request.Request(f"{base}/invocations", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(request, timeout=10)
        assert denied.value.code == 401  # no token, no prediction
        request.add_header("Authorization", "Bearer bundle-test-token")
        with urllib.request.urlopen(request, timeout=10) as r:
            answer = json.loads(r.read())
            assert r.headers["X-Model-Version"] == answer["model_version"]
        assert answer["predictions"] and set(answer["predictions"]) <= {0, 1}
        assert len(answer["prediction_ids"]) == len(answer["predictions"])
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=10)
