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

Modules: ``api`` (the verb and its argument checks), ``results`` (:class:`Bundle`), ``wheel``
(the nbprod wheel), ``pins`` (the pinned requirements), ``templates`` (Dockerfile, Kubernetes and
KServe manifests, README), ``target`` (where a bundle may be written; what ``overwrite`` replaces).
"""

from __future__ import annotations

from .api import package
from .pins import pinned_environment
from .results import Bundle
from .templates import HEALTH_LIVE, HEALTH_READY, PING
from .wheel import nbprod_wheel

__all__ = ["package", "Bundle", "nbprod_wheel", "pinned_environment", "HEALTH_READY", "HEALTH_LIVE", "PING"]
