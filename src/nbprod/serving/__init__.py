"""The model server: MLflow scoring protocol + Open Inference Protocol v2, canary/shadow routing.

Modules: ``app`` (Starlette app), ``codecs`` (request/response formats), ``router`` (weighted
routes, atomic swap), ``loader`` (a servable version + start-up cache), ``fastpath`` (compiled
scikit-learn predict), ``batching`` (adaptive micro-batching), ``metrics`` (Prometheus),
``spec`` (deployment spec, state-DB table, spec sources), ``server`` (uvicorn runner),
``connections`` (header timeout and connection cap).

Serving is the bottom of the request path: it imports no other capability. The registry, the
prediction log, ``/feedback`` and deployment events plug in through ``create_app``'s keywords;
:mod:`nbprod.service` wires them (``nbprod.serve``).

Importing this package is cheap; the submodules import numpy/starlette when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["create_app", "DeploymentSpec", "Route", "StaticSource", "DbSource", "ServingHooks",
           "load_spec", "save_spec", "hash_token"]

_WHERE = {"create_app": "app", "ServingHooks": "app", "DeploymentSpec": "spec",
          "Route": "spec", "StaticSource": "spec", "DbSource": "spec", "load_spec": "spec",
          "save_spec": "spec", "hash_token": "spec"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nbprod.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
