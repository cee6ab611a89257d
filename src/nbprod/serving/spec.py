"""The deployment spec (which versions serve, with which weights and options) and where it lives.

A server serves one :class:`DeploymentSpec`. It comes from a :class:`SpecSource`:

- :class:`StaticSource`: one model directory or model URI, fixed for the life of the process
  (``nbprod serve --model-dir ./model``, ``nbprod serve --model credit-risk@champion``);
- :class:`DbSource`: a named deployment in nbprod's state DB (``nbprod serve --deployment credit``).
  Every worker polls the row's ``generation`` (one indexed SELECT every 200 ms); when it changes
  the worker loads the new spec, loads any new model versions in the background and swaps its
  routing table in one assignment. :func:`save_spec` bumps ``generation`` in the same transaction
  that writes the spec, so a change is all-or-nothing. Every spec a DbSource reads is also kept on
  disk (``$NBPROD_HOME/cache/specs/``, 0600): a worker that starts while the state DB is
  unreachable serves the last spec this host saw, logs it, and its poll picks up the DB when it
  is back — so a worker crash during a DB outage does not take the server down.

The spec never holds a bearer token, only its sha256 (``token_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, Integer, String, Text, select

from .. import state
from .._lazytable import LazyTable
from ..config import settings
from ..errors import DeploymentError

log = logging.getLogger("nbprod.serving")

__all__ = ["Route", "DeploymentSpec", "SpecSource", "StaticSource", "DbSource", "deployments",
           "load_spec", "save_spec", "write_spec", "read_generation", "hash_token", "source_from_env", "source_to_env",
           "remember_spec", "last_known_spec",
           "ROLES", "OOD_POLICIES"]

ROLES = ("stable", "canary", "shadow")
OOD_POLICIES = ("flag", "reject")


def hash_token(token: str) -> str:
    """sha256 hex of a bearer token: what specs and the state DB store instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Route:
    """One model version in a deployment. ``path`` is an optional local copy of its artefacts."""

    uri: str
    version: str = ""
    weight: float = 100.0
    role: str = "stable"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise DeploymentError(f"route role {self.role!r} is not one of {', '.join(ROLES)}",
                                  "use role 'stable', 'canary' or 'shadow'")
        try:
            self.weight = float(self.weight)
        except (TypeError, ValueError):
            raise DeploymentError(f"route weight {self.weight!r} is not a number",
                                  "use a weight between 0 and 100") from None
        if not 0 <= self.weight <= 100:
            raise DeploymentError(f"route weight {self.weight} is outside 0..100", "use a weight between 0 and 100")

    @property
    def source(self) -> str:
        return self.path if self.path and os.path.isdir(self.path) else self.uri

    @property
    def key(self) -> str:
        return f"{self.source}#{self.version}"


@dataclass
class DeploymentSpec:
    """What one server serves, and how."""

    name: str
    routes: list[Route]
    ood: str = "flag"
    token_sha256: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    timeout_s: float = 10.0
    max_batch_rows: int = 512
    max_wait_ms: float = 1.0
    idempotency_keys: int = 1024  # stored answers per deployment (state DB, shared by the workers)
    idempotency_ttl_s: float = 24 * 3600.0  # how long a stored answer is replayed
    body_timeout_s: float = 30.0  # reading a request body longer than this: 408
    fastpath: bool = True
    generation: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.routes = [r if isinstance(r, Route) else Route(**r) for r in self.routes]
        if self.ood not in OOD_POLICIES:
            raise DeploymentError(f"ood policy {self.ood!r} is not one of {', '.join(OOD_POLICIES)}",
                                  "use ood='flag' (serve and mark) or ood='reject' (answer 400)")
        if not any(r.role == "stable" for r in self.routes):
            raise DeploymentError(f"deployment {self.name!r} has no stable route",
                                  "give exactly one route role='stable' (the fallback for canaries)")
        if sum(r.weight for r in self.routes if r.role != "shadow") <= 0:
            raise DeploymentError(f"deployment {self.name!r} sends traffic nowhere (all weights are 0)",
                                  "give the stable route a weight > 0")
        for attr in ("max_body_bytes", "max_batch_rows", "idempotency_keys"):
            if int(getattr(self, attr)) <= 0:
                raise DeploymentError(f"{attr} must be positive", f"set {attr} to a positive integer")
        for attr in ("timeout_s", "idempotency_ttl_s", "body_timeout_s"):
            if float(getattr(self, attr)) <= 0:
                raise DeploymentError(f"{attr} must be positive", f"set {attr} to a number of seconds > 0")

    @property
    def stable(self) -> Route:
        return next(r for r in self.routes if r.role == "stable")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("generation")
        return d

    @classmethod
    def from_dict(cls, d: dict, generation: int = 0) -> "DeploymentSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "generation"}
        return cls(**known, generation=generation)

    @classmethod
    def single(cls, source: str, *, name: str | None = None, version: str = "", **options: Any) -> "DeploymentSpec":
        """A one-route spec for one model directory or URI."""
        route = Route(uri=source, version=version, weight=100, role="stable")
        return cls(name=name or _default_name(source), routes=[route], **options)


def _default_name(source: str) -> str:
    """What a server of one model is called (its prediction log, its alerts): a model directory's name, or a
    registered URI's model name — ``credit-risk/3`` was called "3", so its predictions were logged apart from
    every other version's and ``nbprod monitor credit-risk`` found none of them."""
    s = source.rstrip("/")
    if s.startswith("models:/"):
        s = s[len("models:/"):]
    elif os.path.isdir(s):
        return Path(s).name or "model"
    name, _, _ = s.partition("@")
    head, _, version = name.rpartition("/")
    if head and version.isdigit():  # name/3
        name = head
    return name.replace("\\", "/").split("/")[-1] or "model"


# --- the deployments table ----------------------------------------------------------------------


def _deployment_columns() -> list:
    return [
        Column("name", String(255), primary_key=True),
        Column("spec", Text, nullable=False),  # DeploymentSpec.to_dict() as JSON
        Column("generation", Integer, nullable=False, default=1),  # +1 on every change
        Column("updated_at", Float, nullable=False),  # unix time
        Column("host", String(255)),  # filled by nbprod.deploy
        Column("port", Integer),
        Column("pid", Integer),
        Column("status", String(32)),
    ]


deployments: Any = LazyTable("deployments", _deployment_columns)
_created: set = set()


def _engine():
    eng = state.engine()
    key = (str(eng.url), os.getpid())
    if key not in _created:
        deployments.table().create(eng, checkfirst=True)
        _created.add(key)
    return eng


def load_spec(name: str) -> DeploymentSpec:
    """The stored spec of deployment ``name`` (with its ``generation``)."""
    t = deployments.table()
    with _engine().connect() as conn:
        row = conn.execute(select(t.c.spec, t.c.generation).where(t.c.name == name)).first()
    if row is None:
        raise DeploymentError(f"no deployment called {name!r} in the state DB",
                              "deploy it first (nbprod deploy MODEL --name NAME) or check NBPROD_HOME / NBPROD_DB_URL")
    return DeploymentSpec.from_dict(json.loads(row.spec), generation=int(row.generation))


def read_generation(name: str, conn: Any = None) -> int | None:
    """The current generation of ``name`` (None when the deployment is gone): one indexed SELECT."""
    t = deployments.table()
    stmt = select(t.c.generation).where(t.c.name == name)
    if conn is not None:
        return conn.execute(stmt).scalar()
    with _engine().connect() as c:
        return c.execute(stmt).scalar()


def save_spec(name: str, spec: DeploymentSpec, **columns: Any) -> int:
    """Write ``spec`` for ``name`` and bump its generation in one transaction; return the new one.

    Extra keyword arguments set the deploy engineer's columns (host, port, pid, status).
    """
    _engine()
    with state.write_transaction() as conn:
        return write_spec(conn, name, spec, **columns)


def write_spec(conn: Any, name: str, spec: DeploymentSpec, *, expected_generation: int | None = None,
               **columns: Any) -> int:
    """Inside the caller's write transaction: lock ``name``, write ``spec``, bump and return its
    generation. Callers that must write more in the same transaction (the deploy code's metadata
    and audit row) use this; everyone else calls :func:`save_spec`.

    ``expected_generation``: the generation the change was computed from; if another writer changed
    the deployment in between, nothing is written (no lost update) and DeploymentError says retry.
    """

    if spec.name != name:
        spec = DeploymentSpec.from_dict({**spec.to_dict(), "name": name})
    t = deployments.table()
    body = json.dumps(spec.to_dict(), sort_keys=True)
    state.lock(conn, f"deployment:{name}")
    current = conn.execute(select(t.c.generation).where(t.c.name == name)).scalar()
    if expected_generation is not None and current != expected_generation:
        raise DeploymentError(f"deployment {name!r} was changed by someone else meanwhile "
                              f"(generation {current}, expected {expected_generation})",
                              "look at nbprod status, then run the command again")
    now = time.time()
    if current is None:
        conn.execute(t.insert().values(name=name, spec=body, generation=1, updated_at=now, **columns))
        return 1
    conn.execute(t.update().where(t.c.name == name).values(spec=body, generation=current + 1,
                                                             updated_at=now, **columns))
    return current + 1


# --- sources ------------------------------------------------------------------------------------


class SpecSource(ABC):
    """Where a server's spec comes from. ``initial()`` once, then ``changed()`` on every poll."""

    poll_interval: float | None = None  # seconds; None = never changes

    @abstractmethod
    def initial(self) -> DeploymentSpec:
        """The spec to start serving."""

    def changed(self, generation: int) -> DeploymentSpec | None:
        """A newer spec than ``generation``, or None (cheap: called every ``poll_interval``)."""
        return None

    @abstractmethod
    def to_env(self) -> dict:
        """Environment variables from which a worker process rebuilds this source."""


class StaticSource(SpecSource):
    """A fixed spec: one model directory or URI, or a spec built in code."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec

    @classmethod
    def model(cls, source: str, **options: Any) -> "StaticSource":
        return cls(DeploymentSpec.single(source, **options))

    def initial(self) -> DeploymentSpec:
        return self.spec

    def to_env(self) -> dict:
        return {"kind": "static", "spec": self.spec.to_dict()}


class DbSource(SpecSource):
    """A named deployment in the state DB, polled every ``poll_interval`` seconds."""

    def __init__(self, name: str, poll_interval: float = 0.2) -> None:
        self.name = name
        self.poll_interval = poll_interval

    def initial(self) -> DeploymentSpec:
        """The stored spec; when the state DB cannot be reached, the last one this host read."""
        try:
            spec = load_spec(self.name)
        except DeploymentError:  # the DB answered: there is no such deployment
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable DB: serve what we know, retry in the poll
            known = last_known_spec(self.name)
            if known is None:
                raise
            log.warning("nbprod: the state DB is unreachable (%s); deployment %r starts with its last known spec "
                        "(generation %d) and keeps retrying", type(exc).__name__, self.name, known.generation)
            return known
        remember_spec(self.name, spec)
        return spec

    def changed(self, generation: int) -> DeploymentSpec | None:
        current = read_generation(self.name)
        if current is None or current == generation:
            return None
        spec = load_spec(self.name)
        remember_spec(self.name, spec)
        return spec

    def to_env(self) -> dict:
        return {"kind": "db", "name": self.name, "poll_interval": self.poll_interval}


def _spec_file(name: str):
    safe = name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", name) else hash_token(name)
    return Path(settings.home) / "cache" / "specs" / f"{safe}.json"


def remember_spec(name: str, spec: DeploymentSpec) -> None:
    """Keep ``spec`` (it holds a token's hash, never a token) as the last known spec of ``name``,
    atomically and readable by its owner only; a failure to write is logged, never raised."""
    path = _spec_file(name)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({"generation": spec.generation, "spec": spec.to_dict()})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("nbprod: cannot keep the last known spec of %r: %s", name, exc)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def last_known_spec(name: str) -> DeploymentSpec | None:
    """The spec :func:`remember_spec` kept for ``name``, or None."""
    try:
        d = json.loads(_spec_file(name).read_text(encoding="utf-8"))
        return DeploymentSpec.from_dict(d["spec"], generation=int(d["generation"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


ENV_VAR = "NBPROD_SERVE_SOURCE"


def source_to_env(source: SpecSource) -> str:
    return json.dumps(source.to_env())


def source_from_env(value: str | None = None) -> SpecSource:
    """Rebuild the source a parent process put in ``NBPROD_SERVE_SOURCE`` (uvicorn workers)."""
    raw = value if value is not None else os.environ.get(ENV_VAR)
    if not raw:
        raise DeploymentError(f"{ENV_VAR} is not set", "start the server with `nbprod serve`")
    d = json.loads(raw)
    if d["kind"] == "static":
        return StaticSource(DeploymentSpec.from_dict(d["spec"]))
    return DbSource(d["name"], float(d.get("poll_interval", 0.2)))
