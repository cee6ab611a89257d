"""What the bundle's text files say: the Dockerfile, the Kubernetes / KServe manifests, its README.

Pure functions from the bundle's settings to text or to manifest dicts (written as YAML): no I/O.
"""

from __future__ import annotations

from typing import Any

import yaml

from .._version import __version__

__all__ = ["HEALTH_READY", "HEALTH_LIVE", "PING", "APP_UID", "dockerfile", "DOCKERIGNORE", "manifests", "readme",
           "to_yaml"]

HEALTH_READY = "/v2/health/ready"
HEALTH_LIVE = "/v2/health/live"
PING = "/ping"
APP_UID = 10001


def dockerfile(python: str, wheel: str, port: int, uri: str) -> str:
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
RUN python -c "from nbprod.service import load_version; load_version('/app/model')" \
    && chown -R {APP_UID}:{APP_UID} /app/.nbprod

USER {APP_UID}:{APP_UID}
EXPOSE {port}

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{probe}"]

CMD ["nbprod", "serve", "--model-dir", "/app/model", "--port", "{port}", "--host", "0.0.0.0"]
"""


DOCKERIGNORE = """\
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


def manifests(*, slug: str, version: str, uri: str, digest: str | None, image: str, port: int, cpu: str,
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


def readme(*, uri: str, slug: str, image: str, port: int, python: str, canary_percent: int | None,
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

`openapi.json` in this directory is the OpenAPI 3.1 description the server answers at
`/openapi.json` (with the token): every endpoint, the request forms of `/invocations`, and the
columns with their types, training ranges and categories. `/docs` on the running server renders it
(a self-contained page: it works without internet access).

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


def to_yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
