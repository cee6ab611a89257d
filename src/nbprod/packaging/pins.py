"""The bundle's requirements: the model's own lines, then nbprod's dependency closure pinned.

Why pin everything: the model was trained and checked in *this* environment; the image must
reproduce it, not whatever versions a resolver picks on the day of the build.
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import PackagingError

__all__ = ["pinned_environment"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(root_dist: str) -> dict[str, str]:
    """``{normalised name: installed version}`` of ``root_dist``'s runtime dependencies, recursively."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset]] = [(root_dist, frozenset())]
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
