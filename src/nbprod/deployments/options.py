"""The options of a deploy call, checked before anything is resolved, written or started.

Two kinds: how traffic reaches the new version (``canary``, ``shadow``, ``split``, the latency
budget), flat arguments of :func:`~nbprod.deployments.api.deploy` because they are what a deploy
is about; and how the server process runs (:class:`ServerSettings`: port, workers, auth, OOD
mode), grouped because they are set when a server starts and rarely change afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError, DeploymentError

__all__ = ["ServerSettings", "check_traffic"]


@dataclass(frozen=True)
class ServerSettings:
    """How a deployment's server runs.

    ``port``: on 127.0.0.1 (default: a free one; a running deployment keeps its port);
    ``workers``: server processes (default 1 for a new deployment; a running one keeps its count,
    so a canary needs no ``workers``); ``auth``: False serves without a bearer token (local
    experiments only); ``ood``: ``"flag"`` (default) serves out-of-distribution rows and marks
    them, ``"reject"`` answers 400 — given to a running deployment, it changes with the traffic.
    """

    port: int | None = None
    workers: int | None = None
    auth: bool = True
    ood: str | None = None

    @classmethod
    def of(cls, value: Any) -> ServerSettings:
        """``value`` as checked ServerSettings: an instance, a mapping of its fields, or None (defaults)."""
        if value is None:
            value = cls()
        elif isinstance(value, Mapping):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(map(str, value)) - names)
            if unknown:
                raise DeploymentError(f"unknown server setting(s) {', '.join(map(repr, unknown))}",
                                      f"use {', '.join(sorted(names))}: server={{'workers': 2}}")
            value = cls(**value)
        elif not isinstance(value, cls):
            raise DeploymentError(f"server must be ServerSettings or a dict, got {type(value).__name__}",
                                  "pass e.g. server=ServerSettings(workers=2)")
        value._check()
        return value

    def _check(self) -> None:
        if self.workers is not None or self.port is not None:
            # the server's own checks, here before a server is started with them (uvicorn: only when named)
            from ..serving.server import check_port, check_workers

            try:
                if self.workers is not None:
                    check_workers(self.workers)
            except ConfigError as exc:
                raise DeploymentError(exc.problem, exc.fix) from None
            try:
                if self.port is not None:
                    check_port(self.port)
            except ConfigError as exc:
                raise DeploymentError(exc.problem, "pass e.g. port=8080, or leave it out for a free one") from None
        if self.ood is not None and self.ood not in ("flag", "reject"):
            raise DeploymentError(f"ood must be 'flag' or 'reject', got {self.ood!r}",
                                  "ood='flag' serves and marks outliers, ood='reject' answers 400")
        if not isinstance(self.auth, bool):
            raise DeploymentError(f"auth must be True or False, got {self.auth!r}",
                                  "auth=False serves without a bearer token (local experiments only)")


def check_traffic(canary: Any, shadow: Any, split: Any, budget_p95_ms: Any) -> None:
    """canary / shadow / split are alternatives; a canary is a percentage; the budget a positive number."""
    chosen = [x for x in (canary is not None, bool(shadow), split is not None) if x]
    if len(chosen) > 1:
        raise DeploymentError("canary, shadow and split are alternatives", "pass at most one of them")
    if canary is not None:
        try:
            if isinstance(canary, bool):
                raise TypeError("a bool is not a percentage")
            canary = float(canary)
        except (TypeError, ValueError):
            raise DeploymentError(f"canary must be a percentage, got {canary!r}", "e.g. canary=5") from None
        if not 0 < canary < 100:
            raise DeploymentError(f"canary must be between 0 and 100 (exclusive), got {canary:g}",
                                  "e.g. canary=5; use promote() to send it 100%")
    b = budget_p95_ms
    if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0):
        raise DeploymentError(f"budget_p95_ms must be a positive number, got {b!r}", "e.g. budget_p95_ms=50")

