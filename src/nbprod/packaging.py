"""A deployable bundle for one model version: Docker image recipe, pinned environment, Kubernetes.

``package("credit-risk@challenger", "build/credit-risk")`` writes a directory that needs nothing
else to become a running service — not the registry, not the project's source tree::

    build/credit-risk/
      Dockerfile          python:3.X-slim (the running Python), non-root, HEALTHCHECK, `nbprod serve`
      .dockerignore
      requirements.txt    every distribution pinned from this environment + the bundled nbprod wheel
      wheels/             nbprod-<version>-py3-none-any.whl
      model/              the version's MLflow model directory, sha256 manifest included
      profile.json        the training profile (a copy of model/nbprod/profile.json, for reading)
      bundle.json         what was packaged: URI, version, manifest digest, image, Python
      k8s/                deployment.yaml, service.yaml, hpa.yaml (autoscaling/v2),
                          inferenceservice.yaml (KServe v1beta1, canaryTrafficPercent when asked)
      README.md           how to build, run and deploy it

Why pin everything: the model was trained and checked in *this* environment; the image must
reproduce it, not whatever versions a resolver picks on the day of the build. The model's own
``requirements.txt`` comes first, then nbprod's whole dependency closure pinned to the installed
versions, then the bundled nbprod wheel.

The bundle is written into a temporary sibling directory and renamed into place only when
complete, in the same transaction as its ``package`` audit row: there is never a half bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import settings
from .errors import NbprodError, PackagingError

__all__ = ["package", "Bundle", "nbprod_wheel", "pinned_environment", "HEALTH_READY", "HEALTH_LIVE", "PING"]

HEALTH_READY = "/v2/health/ready"
HEALTH_LIVE = "/v2/health/live"
PING = "/ping"
APP_UID = 10001
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")


# --- result -----------------------------------------------------------------------------------

@dataclass
class Bundle:
    """A written bundle: where it is, what it holds, and how it will run."""

    path: Path
    uri: str
    name: str
    version: str
    image: str
    files: list[str] = field(default_factory=list)
    wheel: str | None = None
    canary_percent: int | None = None
    manifest_sha256: str | None = None
    python: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "uri": self.uri, "name": self.name, "version": self.version,
                "image": self.image, "files": list(self.files), "wheel": self.wheel,
                "canary_percent": self.canary_percent, "manifest_sha256": self.manifest_sha256,
                "python": self.python}

    def _summary(self) -> list[tuple[str, str]]:
        model_files = sum(1 for f in self.files if f.startswith("model/"))
        k8s = ", ".join(f.split("/", 1)[1] for f in self.files if f.startswith("k8s/"))
        return [
            ("model", f"{self.uri} ({model_files} files, manifest {str(self.manifest_sha256)[:12]})"),
            ("image", f"{self.image} (python:{self.python}-slim)"),
            ("kubernetes", k8s + (f"; KServe canary {self.canary_percent}%" if self.canary_percent is not None else "")),
            ("wheel", self.wheel or "–"),
            ("build", f"docker build -t {self.image} {self.path}"),
        ]

    def __repr__(self) -> str:  # a terminal shows the readable text, not the dataclass fields
        return str(self)

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self._summary())
        return "\n".join([f"bundle for {self.uri} in {self.path}"] +
                         [f"  {k.ljust(width)}  {v}" for k, v in self._summary()])

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
                       for k, v in self._summary())
        return (f"<div><b>nbprod bundle</b> <code>{escape(str(self.path))}</code>"
                f"<table>{rows}</table></div>")


# --- naming and validation --------------------------------------------------------------------

def _slug(name: str, max_len: int = 45) -> str:
    """A DNS-1035 label from a model name: lowercase, [a-z0-9-], starts with a letter."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "m-" + slug
    return slug[:max_len].rstrip("-")


def _check_args(canary_percent, replicas, cpu, memory, port, max_replicas) -> None:
    if canary_percent is not None and (isinstance(canary_percent, bool) or not isinstance(canary_percent, int)
                                       or not 0 <= canary_percent <= 100):
        raise PackagingError(f"canary_percent must be an integer from 0 to 100, got {canary_percent!r}",
                             "pass e.g. canary_percent=10 to send 10% of traffic to this version")
    for label, value, low in (("replicas", replicas, 1), ("port", port, 1), ("max_replicas", max_replicas, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PackagingError(f"{label} must be a positive integer, got {value!r}", f"pass an integer {label}")
    if port > 65535:
        raise PackagingError(f"port {port} is not a TCP port", "pass a port from 1 to 65535 (default 8080)")
    if max_replicas < replicas:
        raise PackagingError(f"max_replicas ({max_replicas}) is below replicas ({replicas})",
                             "pass max_replicas >= replicas")
    if not isinstance(cpu, str) or not _CPU.match(cpu):
        raise PackagingError(f"cpu {cpu!r} is not a Kubernetes CPU quantity", "use e.g. '500m' or '2'")
    if not isinstance(memory, str) or not _MEMORY.match(memory):
        raise PackagingError(f"memory {memory!r} is not a Kubernetes memory quantity", "use e.g. '512Mi' or '1Gi'")


def _check_image(image) -> None:
    """A Docker image reference: ``[host[:port]/]path[:tag][@digest]``, the path in lowercase."""
    if not isinstance(image, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$", image):
        raise PackagingError(f"image {image!r} is not a valid image reference", "use e.g. registry.example.com/team/credit-risk:3")
    ref = image.split("@", 1)[0]
    first, slash, rest = ref.partition("/")
    # The first component is a registry host when it has a '.' or ':' or is localhost (may be mixed case).
    path = rest if slash and ("." in first or ":" in first or first == "localhost") else ref
    head, colon, tag = path.rpartition(":")
    repository = head if colon and "/" not in tag else path
    if repository != repository.lower():
        raise PackagingError(f"image {image!r}: the repository name {repository!r} has uppercase letters, "
                             "which Docker refuses",
                             f"use lowercase, e.g. image={image.replace(repository, repository.lower(), 1)!r}")


# --- the nbprod wheel -------------------------------------------------------------------------

def _source_root() -> Path | None:
    """The project root when nbprod runs from its source tree (editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        import tomllib

        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (ImportError, ValueError, OSError):
        name = "nbprod" if 'name = "nbprod"' in pyproject.read_text(encoding="utf-8") else None
    return root if name == "nbprod" else None


def _source_digest(root: Path) -> str:
    """A digest of everything that goes into the wheel, so an edited source tree gets a new wheel."""
    digest = hashlib.sha256()
    paths = [root / "pyproject.toml", *sorted((root / "src" / "nbprod").rglob("*"))]
    for p in paths:
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            digest.update(p.relative_to(root).as_posix().encode() + b"\0")
            digest.update(p.read_bytes())
    return digest.hexdigest()[:16]


def _build_from_source(root: Path, out: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if Path(uv).exists() or shutil.which("uv"):
        cmd = [uv, "build", "--wheel", "--out-dir", str(out), str(root)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(root)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackagingError(f"cannot build the nbprod wheel ({' '.join(cmd[:3])}…): {exc}",
                             "install uv or pip in this environment, or build it yourself: `uv build --wheel`") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise PackagingError(f"building the nbprod wheel from {root} failed:\n{tail}",
                             "run `uv build --wheel` in the project root to see the full error")


def _repack_installed(out: Path) -> None:
    """Rebuild a wheel from a regular (non-editable) installation, file for file, from its RECORD."""
    import base64
    import zipfile

    dist = metadata.distribution("nbprod")
    files = [f for f in (dist.files or []) if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info = f"nbprod-{dist.version}.dist-info"
    skip = {f"{info}/RECORD", f"{info}/INSTALLER", f"{info}/REQUESTED", f"{info}/direct_url.json"}
    if not any(str(f).startswith("nbprod/") for f in files):
        raise PackagingError("nbprod is installed without its source tree and without package files to copy",
                             "install nbprod from a wheel or run from a source checkout (`pip install -e .`)")
    target = out / f"nbprod-{dist.version}-py3-none-any.whl"
    record: list[str] = []
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            rel = str(f).replace(os.sep, "/")
            if rel in skip:
                continue
            data = Path(f.locate()).read_bytes()
            zf.writestr(rel, data)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={h},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    tmp.replace(target)


def _is_editable() -> bool:
    try:
        raw = metadata.distribution("nbprod").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return True  # running from a path on sys.path, not installed at all
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def nbprod_wheel() -> Path:
    """A wheel of the running nbprod, built once and cached under ``$NBPROD_HOME/wheels``.

    From the source tree when nbprod runs from one (keyed by a digest of the sources, so edits
    give a new wheel); otherwise repacked from the installed distribution.
    """
    root = _source_root()
    if root is not None:
        cache = settings.home_path / "wheels" / f"src-{_source_digest(root)}"
        build = _build_from_source
    elif not _is_editable():
        cache = settings.home_path / "wheels" / f"installed-{__version__}"
        build = lambda _root, out: _repack_installed(out)  # noqa: E731
    else:
        raise PackagingError("nbprod is installed in editable mode but its source tree is gone",
                             "reinstall nbprod (`pip install nbprod` or `pip install -e <checkout>`)")
    found = sorted(cache.glob("nbprod-*.whl"))
    if found:
        return found[-1]
    staging = cache.parent / f".{cache.name}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        build(root, staging)
        wheels = sorted(staging.glob("nbprod-*.whl"))
        if not wheels:
            raise PackagingError(f"the wheel build wrote no nbprod wheel into {staging}",
                                 "run `uv build --wheel` in the project root and check its output")
        try:
            staging.rename(cache)
        except OSError:  # another process cached the same wheel first: use theirs
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(cache.glob("nbprod-*.whl"))[-1]


# --- requirements -----------------------------------------------------------------------------

def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(root_dist: str) -> dict[str, str]:
    """``{normalised name: installed version}`` of ``root_dist``'s runtime dependencies, recursively."""
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}
    todo = [(root_dist, frozenset())]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (_norm(name), extras) in seen:
            continue
        seen.add((_norm(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if _norm(name) != _norm(root_dist):
            pins[_norm(dist.metadata["Name"])] = dist.version
        for raw in dist.requires or []:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return pins


def pinned_environment(model_requirements: list[str]) -> list[str]:
    """The model's requirement lines, then every other nbprod dependency pinned to what is installed."""
    from packaging.requirements import InvalidRequirement, Requirement

    lines: list[str] = []
    named: set[str] = set()
    for raw in model_requirements:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise PackagingError(f"the model's requirements.txt has an unreadable line {line!r}: {exc}",
                                 "re-register the model; nbprod writes pinned name==version lines") from exc
        if _norm(req.name) == "nbprod":
            continue  # the bundled wheel replaces it
        named.add(_norm(req.name))
        lines.append(line)
    closure = {n: v for n, v in _closure("nbprod").items() if n not in named}
    lines += [f"{n}=={v}" for n, v in sorted(closure.items())]
    return lines


# --- file contents ----------------------------------------------------------------------------

def _dockerfile(python: str, wheel: str, port: int, uri: str) -> str:
    probe = (f"import sys, urllib.request; "
             f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{PING}', timeout=4).status == 200 else 1)")
    return f"""\
# Model server for {uri}, written by nbprod {__version__}.
# Build:  docker build -t <image> .        Run:  docker run --rm -p {port}:{port} <image>
FROM python:{python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    NBPROD_HOME=/app/.nbprod

RUN groupadd --system --gid {APP_UID} nbprod \\
    && useradd --system --uid {APP_UID} --gid nbprod --home-dir /app --shell /usr/sbin/nologin nbprod

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the pinned requirements change.
COPY requirements.txt ./
COPY wheels/ ./wheels/
RUN pip install --no-cache-dir -r requirements.txt

# The model last. Loading it once here checks its sha256 manifest and fills the server's
# verified start-up cache, so a container is ready in about a second instead of a full load.
COPY model/ ./model/
RUN python -c "from nbprod.serving.loader import load_version; load_version('/app/model')" \
    && chown -R {APP_UID}:{APP_UID} /app/.nbprod

USER {APP_UID}:{APP_UID}
EXPOSE {port}

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{probe}"]

CMD ["nbprod", "serve", "--model-dir", "/app/model", "--port", "{port}", "--host", "0.0.0.0"]
"""


_DOCKERIGNORE = """\
# Only Dockerfile, requirements.txt, wheels/ and model/ go into the image.
**/__pycache__
**/*.pyc
.git
k8s/
README.md
bundle.json
profile.json
"""


def _labels(slug: str, version: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": slug, "app.kubernetes.io/version": str(version),
            "app.kubernetes.io/managed-by": "nbprod"}


def _container(name: str, image: str, port: int, cpu: str, memory: str, *, name_for_secret: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": HEALTH_READY, "port": port},
                           "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": HEALTH_LIVE, "port": port},
                          "initialDelaySeconds": 20, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
        # The server refuses unauthenticated predictions: its bearer token comes from a Secret.
        "env": [{"name": "NBPROD_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": f"{name_for_secret}-token", "key": "token"}}}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": APP_UID,
                            "capabilities": {"drop": ["ALL"]}},
    }


def _manifests(*, slug: str, version: str, uri: str, digest: str | None, image: str, port: int, cpu: str,
               memory: str, replicas: int, max_replicas: int, canary_percent: int | None) -> dict[str, dict]:
    labels = _labels(slug, version)
    selector = {"app.kubernetes.io/name": slug}
    annotations = {"nbprod.io/model-uri": uri, "nbprod.io/manifest-sha256": digest or ""}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": slug, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": APP_UID, "fsGroup": APP_UID},
                         "containers": [_container("model", image, port, cpu, memory, name_for_secret=slug)]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": slug, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]},
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": slug, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": slug},
            "minReplicas": replicas,
            "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource",
                         "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }
    predictor: dict[str, Any] = {"minReplicas": replicas, "maxReplicas": max_replicas}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    kserve_container = _container("kserve-container", image, port, cpu, memory, name_for_secret=slug)
    kserve_container["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    predictor["containers"] = [kserve_container]
    inference = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": slug, "labels": labels, "annotations": annotations},
        "spec": {"predictor": predictor},
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa,
            "inferenceservice.yaml": inference}


def _readme(*, uri: str, slug: str, image: str, port: int, python: str, canary_percent: int | None,
            wheel: str) -> str:
    canary = (f"The InferenceService sends **{canary_percent}%** of traffic to this version "
              f"(`canaryTrafficPercent: {canary_percent}`) when it updates an existing `{slug}` service; "
              f"the previous revision keeps the rest. Promote by setting it to 100 or removing the field."
              if canary_percent is not None else
              "To roll this version out as a canary, package it with `--canary N`: the InferenceService then "
              "carries `canaryTrafficPercent: N`.")
    return f"""\
# {slug}: model server for `{uri}`

Written by nbprod {__version__}. Everything needed to run the model is in this directory:
the model (`model/`, with its sha256 manifest), the pinned environment (`requirements.txt`,
`wheels/{wheel}`), a `Dockerfile` and Kubernetes manifests (`k8s/`). The training profile
(`profile.json`) drives the server's input checks and drift monitoring.

## Build

```bash
docker build -t {image} .
```

The image is `python:{python}-slim` (the Python the model was packaged with), runs as a
non-root user (uid {APP_UID}) and installs the pinned requirements in a layer of their own.

## Run

Predictions need a bearer token; choose one and give it to the container:

```bash
export NBPROD_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))")
docker run --rm -p {port}:{port} -e NBPROD_TOKEN {image}
curl -s localhost:{port}{PING}
curl -s localhost:{port}{HEALTH_READY}
curl -s -X POST localhost:{port}/invocations -H "Authorization: Bearer $NBPROD_TOKEN" \\
     -H 'Content-Type: application/json' -d @model/serving_input_example.json
```

The container runs `nbprod serve --model-dir /app/model --port {port} --host 0.0.0.0`, which
verifies the model's manifest before loading it. Docker's `HEALTHCHECK` polls `{PING}`; the health
endpoints and `/metrics` need no token.

Without Docker, in a fresh virtual environment (the same command, from this directory):

```bash
python -m venv .venv && .venv/bin/pip install -r requirements.txt
NBPROD_TOKEN=$NBPROD_TOKEN .venv/bin/nbprod serve --model-dir model --port {port}
```

## Deploy to Kubernetes

Push the image where your cluster can pull it (and change `image:` in `k8s/*.yaml` if you
tagged it differently), create the Secret holding the bearer token, then either a plain
Deployment + Service + HorizontalPodAutoscaler:

```bash
kubectl create secret generic {slug}-token --from-literal=token="$NBPROD_TOKEN"
kubectl apply -f k8s/deployment.yaml -f k8s/service.yaml -f k8s/hpa.yaml
kubectl rollout status deployment/{slug}
```

or, on a cluster with KServe:

```bash
kubectl apply -f k8s/inferenceservice.yaml
kubectl get inferenceservice {slug}
```

{canary}

Readiness and liveness probes hit `{HEALTH_READY}` and `{HEALTH_LIVE}` on port {port}.
"""


def _yaml(obj: dict) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


# --- the verb ---------------------------------------------------------------------------------

def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PackagingError(f"{out} exists and is not a directory", "pass a directory path for the bundle")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PackagingError(f"{out} already exists and is not empty",
                             "pass overwrite=True (--overwrite) to replace it, or choose another directory")


def package(uri: str, out_dir: str | os.PathLike, *, canary_percent: int | None = None, image: str | None = None,
            replicas: int = 2, max_replicas: int | None = None, cpu: str = "500m", memory: str = "1Gi",
            port: int = 8080, overwrite: bool = False) -> Bundle:
    """Write a self-contained, deployable bundle for the model version ``uri`` into ``out_dir``.

    ``image`` names the image the Kubernetes manifests run (default ``<model-slug>:<version>``);
    ``canary_percent`` adds KServe's ``canaryTrafficPercent``. Writes atomically; an existing
    non-empty ``out_dir`` is an error unless ``overwrite``. Appends a ``package`` audit row.
    """
    from . import audit, state
    from .registry import download, get_version, verify_manifest

    max_replicas = max(replicas * 5, 10) if max_replicas is None else max_replicas
    _check_args(canary_percent, replicas, cpu, memory, port, max_replicas)
    out = Path(out_dir).expanduser().resolve()
    _check_out_dir(out, overwrite)
    version = get_version(uri)
    slug = _slug(version.name)
    image = image or f"{slug}:{version.version}"
    _check_image(image)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    expected = version.tags.get("nbprod.manifest_sha256")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.nbprod-tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        downloaded = download(version.uri, tmp / ".download")
        if not (downloaded / "MLmodel").is_file():
            raise PackagingError(f"{version.uri} downloaded without an MLmodel file",
                                 "re-register the model with nbprod.register")
        downloaded.rename(tmp / "model")
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        model_dir = tmp / "model"
        verify_manifest(model_dir, expected_digest=expected)  # ship exactly what was registered
        digest = hashlib.sha256((model_dir / "nbprod" / "manifest.json").read_bytes()).hexdigest()

        wheel = nbprod_wheel()
        (tmp / "wheels").mkdir()
        shutil.copy2(wheel, tmp / "wheels" / wheel.name)
        model_reqs_path = model_dir / "requirements.txt"
        model_reqs = model_reqs_path.read_text(encoding="utf-8").splitlines() if model_reqs_path.is_file() else []
        reqs = pinned_environment(model_reqs)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (tmp / "requirements.txt").write_text(
            f"# Pinned by nbprod {__version__} for {version.uri} on {stamp} (Python {python}).\n"
            f"# Install with: pip install -r requirements.txt  (from this directory)\n"
            + "\n".join(reqs) + f"\n./wheels/{wheel.name}\n", encoding="utf-8")

        profile = model_dir / "nbprod" / "profile.json"
        if profile.is_file():
            shutil.copy2(profile, tmp / "profile.json")
        (tmp / "Dockerfile").write_text(_dockerfile(python, wheel.name, port, version.uri), encoding="utf-8")
        (tmp / ".dockerignore").write_text(_DOCKERIGNORE, encoding="utf-8")
        (tmp / "k8s").mkdir()
        for fname, obj in _manifests(slug=slug, version=version.version, uri=version.uri, digest=digest,
                                     image=image, port=port, cpu=cpu, memory=memory, replicas=replicas,
                                     max_replicas=max_replicas, canary_percent=canary_percent).items():
            (tmp / "k8s" / fname).write_text(_yaml(obj), encoding="utf-8")
        (tmp / "README.md").write_text(_readme(uri=version.uri, slug=slug, image=image, port=port, python=python,
                                               canary_percent=canary_percent, wheel=wheel.name), encoding="utf-8")
        bundle = Bundle(path=out, uri=version.uri, name=version.name, version=str(version.version), image=image,
                        wheel=wheel.name, canary_percent=canary_percent, manifest_sha256=digest, python=python)
        (tmp / "bundle.json").write_text(json.dumps({**bundle.to_dict(), "created_at": stamp,
                                                     "nbprod_version": __version__, "port": port},
                                                    indent=2) + "\n", encoding="utf-8")
        bundle.files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())

        # The audit row and the rename commit together: no bundle without its row, nor the reverse.
        with state.write_transaction() as conn:
            audit.record("package", model_uri=version.uri, connection=conn,
                         details={"out_dir": str(out), "image": image, "canary_percent": canary_percent,
                                  "manifest_sha256": digest, "wheel": wheel.name})
            _swap_into_place(tmp, out)
    except NbprodError:
        raise
    except OSError as exc:
        raise PackagingError(f"cannot write the bundle to {out}: {exc}",
                             "check that the directory is writable and has free space") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return bundle


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.nbprod-old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
