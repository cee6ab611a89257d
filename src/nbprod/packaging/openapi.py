"""The bundle's ``openapi.json``: the document the bundle's own server answers at ``GET /openapi.json``.

The bundle's container runs ``nbprod serve --model-dir /app/model`` (:mod:`.templates`), which serves
the model endpoints, ``POST /feedback`` and the docs routes with a bearer token (``NBPROD_TOKEN``).
The document is built by the server's own code (:func:`nbprod.serving.openapi.for_model_dir`) from
the bundle's model directory, with that same deployment (its default name and ``ood`` policy) and
the same extra route, so the file and the running server say the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..monitoring.http import feedback_route
from ..serving.openapi import for_model_dir
from ..serving.spec import DeploymentSpec

__all__ = ["CONTAINER_MODEL_DIR", "openapi_document", "write_openapi"]

#: Where the Dockerfile puts the model (``COPY model/ ./model/`` in ``WORKDIR /app``).
CONTAINER_MODEL_DIR = "/app/model"


def openapi_document(model_dir: Path, name: str, version: str) -> dict:
    """The OpenAPI document of the bundle's server for the model in ``model_dir``."""
    spec = DeploymentSpec.single(CONTAINER_MODEL_DIR)
    return for_model_dir(model_dir, spec, name=name, version=version, routes=[feedback_route()], auth=True)


def write_openapi(path: Path, model_dir: Path, name: str, version: str) -> None:
    """Write :func:`openapi_document` to ``path`` (inside the bundle's temporary directory)."""
    text = json.dumps(openapi_document(model_dir, name, version), indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
