"""Which model version answers a request: weighted stable/canary/split routes plus shadows.

A :class:`RoutingTable` is immutable. The :class:`Router` builds a new one off the event loop
(loading any new model version in a thread) and then swaps ``router.table`` in a single reference
assignment, so a request sees either the old or the new table, never a mix, and no request waits
for a model to load.

Graceful degradation: a canary (or split) version that fails to load is left out of the new
table, so its share goes to the others; a canary that raises at predict time is answered by the
stable version. Both are counted in metrics and reported through ``on_event``. A *stable* version
that fails to load keeps the old table (at start-up: the server refuses to start).
"""

from __future__ import annotations

import asyncio
import bisect
import random
from dataclasses import dataclass, field
from typing import Callable

from .batching import MicroBatcher
from .loader import ModelStore, ServedVersion, load_version
from .spec import DeploymentSpec, Route

__all__ = ["RoutingTable", "Router", "Target"]


@dataclass
class Target:
    """A loaded version with its batcher."""

    served: ServedVersion
    batcher: MicroBatcher


@dataclass
class RoutingTable:
    spec: DeploymentSpec
    routes: list[tuple[Route, ServedVersion | None]]
    targets: dict[str, Target]  # route key -> target
    generation: int = 0
    _keys: list[str] = field(default_factory=list)
    _cum: list[float] = field(default_factory=list)
    _roles: list[str] = field(default_factory=list)
    _shadows: list[Target] = field(default_factory=list)
    _only: tuple[Target, str] | None = None

    def __post_init__(self) -> None:
        total = 0.0
        for route, served in self.routes:
            if route.role != "shadow" and served is not None and route.weight > 0:
                total += route.weight
                self._keys.append(route.key)
                self._cum.append(total)
                self._roles.append(route.role)
        if not self._keys:  # every weighted route failed or weighs 0: the stable takes it all
            self._keys = [self.spec.stable.key]
            self._cum = [1.0]
            self._roles = ["stable"]
        # what every request asks, worked out once per table (the table never changes)
        # (a table built by hand without a route's target still fails in pick(), not here)
        self._shadows = [self.targets[r.key] for r, s in self.routes
                         if r.role == "shadow" and s is not None and r.key in self.targets]
        if len(self._keys) == 1 and self._keys[0] in self.targets:
            self._only = (self.targets[self._keys[0]], self._roles[0])

    @property
    def stable(self) -> Target:
        return self.targets[self.spec.stable.key]

    def pick(self, rnd: Callable[[], float] = random.random) -> tuple[Target, str]:
        """A target by weight, and its role."""
        if self._only is not None:
            return self._only
        i = min(bisect.bisect_right(self._cum, rnd() * self._cum[-1]), len(self._keys) - 1)
        return self.targets[self._keys[i]], self._roles[i]

    def shadows(self) -> list[Target]:
        """The loaded shadow versions (the same list every call: do not change it)."""
        return self._shadows

    def by_version(self, version: str) -> Target | None:
        for r, s in self.routes:
            if s is not None and (s.version == version or r.version == version):
                return self.targets[r.key]
        return None

    def versions(self) -> list[ServedVersion]:
        return [s for _, s in self.routes if s is not None]


class Router:
    """Holds the current :class:`RoutingTable` and replaces it when the spec changes."""

    def __init__(self, *, on_event: Callable[[str, dict], None] | None = None,
                 on_batch: Callable[[str, int], None] | None = None, store: ModelStore | None = None) -> None:
        self.table: RoutingTable | None = None
        self.store = store  # resolves registered URIs and verifies registered directories (see loader)
        self.on_event = on_event or (lambda kind, info: None)
        self.on_batch = on_batch
        self._loaded: dict[str, Target] = {}

    def _target(self, route: Route, spec: DeploymentSpec) -> Target:
        t = self._loaded.get(route.key)
        if t is not None:
            return t
        served = load_version(route.source, route.version or None, fast=spec.fastpath, store=self.store)
        if route.version:
            served.version = route.version
        version = served.version
        hook = self.on_batch
        on_batch = (lambda rows: hook(version, rows)) if hook else None
        batcher = MicroBatcher(served.predict, max_rows=spec.max_batch_rows, max_wait_s=spec.max_wait_ms / 1000,
                               inline=served.plan is not None, on_batch=on_batch, direct=served.plan is not None)
        t = Target(served, batcher)
        self._loaded[route.key] = t
        return t

    def build(self, spec: DeploymentSpec) -> RoutingTable:
        """Load every version of ``spec`` (blocking) and return the table; raise if the stable fails."""
        routes: list[tuple[Route, ServedVersion | None]] = []
        targets: dict[str, Target] = {}
        for route in spec.routes:
            try:
                t = self._target(route, spec)
            except Exception as exc:  # noqa: BLE001 - reported, and fatal only for the stable
                if route.role == "stable":
                    raise
                self.on_event("version_load_failed", {"uri": route.uri, "version": route.version,
                                                      "role": route.role, "error": f"{type(exc).__name__}: {exc}"})
                routes.append((route, None))
                continue
            routes.append((route, t.served))
            targets[route.key] = t
        return RoutingTable(spec, routes, targets, spec.generation)

    @property
    def current(self) -> RoutingTable:
        """The installed table (typed without ``None``): the server installs one in start(), before any request."""
        table = self.table
        if table is None:
            raise RuntimeError("no routing table installed yet: the server has not started")
        return table

    def install(self, table: RoutingTable) -> None:
        """The atomic swap: one reference assignment. Versions no longer routed are released."""
        old = self.table
        self.table = table
        if old is not None:
            live = set(table.targets)
            for key in list(self._loaded):
                if key not in live:
                    t = self._loaded.pop(key)
                    t.batcher.close()

    async def apply(self, spec: DeploymentSpec) -> bool:
        """Build the table for ``spec`` in a thread, then swap. False (old table kept) on failure."""
        try:
            table = await asyncio.get_running_loop().run_in_executor(None, self.build, spec)
        except Exception as exc:  # noqa: BLE001 - keep serving the old table
            self.on_event("spec_rejected", {"generation": spec.generation, "error": f"{type(exc).__name__}: {exc}"})
            return False
        self.install(table)
        self.on_event("spec_applied", {"generation": spec.generation,
                                       "routes": [{"version": r.version, "weight": r.weight, "role": r.role}
                                                  for r in spec.routes]})
        return True
