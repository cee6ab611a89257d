"""The routes of a deployment's spec: which registered versions get which share of traffic.

A route names the registered version and its local artefacts, so the server loads the directory
through its verified start-up cache without importing MLflow (the URI is the fallback).
"""

from __future__ import annotations

from ..errors import DeploymentError
from ..registry import get_version
from ..registry.versions import local_model_dir
from ..serving.spec import Route

__all__ = ["resolve", "route", "warm", "split_routes", "as_dicts"]


def as_dicts(spec) -> list[dict]:
    return [{"version": r.version, "role": r.role, "weight": r.weight, "uri": r.uri} for r in spec.routes]


def resolve(uri: str):
    return get_version(uri)


def route(mv, weight: float, role: str):
    """A route that names the registered version and its local artefacts: the server then loads the
    directory through its start-up cache without importing MLflow (the URI is the fallback)."""
    try:
        path = str(local_model_dir(mv))
    except Exception:  # noqa: BLE001 - a remote store without a cached copy: the server downloads it
        path = None
    return Route(uri=mv.uri, version=str(mv.version), weight=weight, role=role, path=path)


def warm(route) -> None:
    """Load a version once here, before any worker needs it: this checks its manifest, compiles its
    fast path and fills the server's verified start-up cache, so every worker then switches to it
    from the cache in well under a second instead of each doing a full load while serving."""
    # service, not serving: it has the registry's model store (serving alone refuses a registered URI);
    # here, not at the top: it loads the server stack (starlette, uvicorn), which only a deploy's warm-up needs
    from ..service import load_version

    try:
        load_version(route.source, route.version)
    except Exception:  # noqa: BLE001 - a broken version is the server's to refuse and report
        pass


def split_routes(model: str, split: dict, stable_version: str | None) -> list:
    if not isinstance(split, dict) or len(split) < 2:
        raise DeploymentError(f"split must map at least two versions to weights, got {split!r}",
                              "pass split={'3': 50, '4': 50} (--split 3=50,4=50)")
    try:
        weights = {str(k): float(v) for k, v in split.items()}
    except (TypeError, ValueError):
        raise DeploymentError(f"split weights must be numbers, got {split!r}",
                              "pass split={'3': 50, '4': 50}") from None
    if any(not 0 <= w <= 100 for w in weights.values()) or abs(sum(weights.values()) - 100) > 1e-6:
        raise DeploymentError(f"split weights {weights} must each be 0..100 and add up to 100",
                              "e.g. split={'3': 50, '4': 50} or {'3': 90, '4': 10}")
    mvs = []
    for key, w in weights.items():
        uri = f"{model}/{key}" if key.isdigit() else (f"{model}{key}" if key.startswith("@") else key)
        mvs.append((resolve(uri), w))
    versions = [str(mv.version) for mv, _ in mvs]
    if len(set(versions)) != len(versions):
        raise DeploymentError(f"split names version(s) twice: {versions}", "name each version once")
    stable = stable_version if stable_version in versions else max(mvs, key=lambda x: x[1])[0].version
    return [route(mv, w, "stable" if str(mv.version) == str(stable) else "canary") for mv, w in mvs]
