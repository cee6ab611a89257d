"""Deployments: detached servers on this machine, canary / shadow / split, promote, rollback, latency gate.

Modules: ``api`` (the verbs), ``options`` (a call's checks, :class:`ServerSettings`), ``alerting``
(:class:`AlertSettings`: recorded, merged, handed to the server), ``routes`` (the versions and
weights of a spec), ``store`` (state-DB rows beside the serving spec), ``process`` (start, probe,
stop server processes), ``events`` (runs inside the server: worker acknowledgements and
canary-fallback audit rows), ``gate`` (the latency gate), ``results``.
Importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["deploy", "promote", "rollback", "set_split", "undeploy", "status", "restore", "Deployment",
           "DeploymentStatus", "StatusTable", "AlertSettings", "ServerSettings"]

_WHERE = {"deploy": "api", "promote": "api", "rollback": "api", "set_split": "api", "undeploy": "api",
          "status": "api", "restore": "api", "AlertSettings": "alerting", "ServerSettings": "options",
          "Deployment": "results", "DeploymentStatus": "results", "StatusTable": "results"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nbprod.deployments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
