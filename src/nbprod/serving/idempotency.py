"""``Idempotency-Key``: a repeated request gets the stored answer, from every worker.

Why the state DB: a deployment runs several worker processes and the kernel spreads connections
over them, so a key remembered in one process's memory is unknown to the next. Keys live in the
``idempotency_keys`` table of nbprod's state DB (SQLite or PostgreSQL, as everything else), one row
per (deployment, key), bounded per deployment by ``spec.idempotency_keys`` rows and
``spec.idempotency_ttl_s`` seconds.

What a key binds to: a fingerprint (sha256) of the method, path, query, bearer credential and
body, and for a v2 binary request the ``Inference-Header-Content-Length`` that splits its body into
JSON and tensor bytes (the same bytes split elsewhere are another request). The same key with a
different request is refused with 422 (``idempotency_key_reused``) instead of answering the old
request.

Concurrency: the first request *claims* the key (a row without an answer yet) in one write
transaction; a concurrent request with that key in the same process waits on a per-key lock, one
in another process polls the row until the answer is stored (then replays it) or, past the
request timeout, gets 409 (``idempotency_key_in_flight``). A failed request releases its claim,
so a retry is computed again; a claim whose worker died expires after twice the timeout.

Only answers with status 200 are stored. The DB is touched only by requests that carry the
header, off the event loop. If the state DB cannot be opened at all, the store falls back to
this process's memory and reports ``idempotency_store_local`` through ``on_event``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String, Text, select
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from .. import state
from .._lazytable import LazyTable
from ..errors import ServingError

log = logging.getLogger("nbprod.serving")

__all__ = ["IdempotencyStore", "fingerprint", "idempotency_keys"]

MAX_KEY_LENGTH = 255
_POLL_S = 0.02
#: Headers a replay needs besides ``X-*``: a binary v2 answer's type and JSON length (v2binary).
_REPLAYED = ("content-type", "inference-header-content-length")


def fingerprint(method: str, path: str, query: str, authorization: str, body: bytes,
                header_length: str | None = None) -> str:
    """sha256 of everything that makes two requests the same request. ``header_length``: a v2 binary
    request's ``Inference-Header-Content-Length`` (where its JSON ends); it follows the credential's
    fixed-length hash after a ``;``, so a request without it keeps the fingerprint it always had
    and none can be mistaken for one with it."""
    h = hashlib.sha256()
    credential = hashlib.sha256(authorization.encode()).hexdigest()
    if header_length is not None:
        credential += ";" + header_length
    for part in (method.upper(), path, query, credential):
        h.update(part.encode() + b"\0")
    h.update(body)
    return h.hexdigest()


# --- the table ----------------------------------------------------------------------------------

def _columns() -> list:
    return [
        Column("scope", String(255), primary_key=True),  # the deployment name
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer),  # None while the first request is being answered
        Column("body", LargeBinary),
        Column("headers", Text),  # JSON
        Column("created_at", Float, nullable=False),  # unix time of the claim / the answer
        Index("ix_idempotency_keys_scope_created", "scope", "created_at"),
    ]


idempotency_keys: Any = LazyTable("idempotency_keys", _columns)


class _Row:
    def __init__(self, fingerprint: str, status: int | None, body: bytes | None, headers: dict | None) -> None:
        self.fingerprint, self.status, self.body, self.headers = fingerprint, status, body, headers


class _DbBackend:
    """Keys in the state DB, shared by every worker (and every server) using that DB."""

    def __init__(self) -> None:
        t = idempotency_keys.table()
        try:
            with state.write_transaction() as conn:  # serialised against other workers creating it
                t.create(conn, checkfirst=True)
        except DBAPIError:  # a CREATE race the lock could not cover: the table exists now
            t.create(state.engine(), checkfirst=True)

    def claim(self, scope: str, key: str, fp: str, now: float, stale_s: float, ttl_s: float) -> tuple[str, _Row | None]:
        """("claimed", None) when this request answers the key; else ("done" | "in_flight", the row)."""

        t = idempotency_keys.table()
        where = (t.c.scope == scope) & (t.c.key == key)
        with state.write_transaction() as conn:
            state.lock(conn, f"idempotency:{scope}:{key}")
            row = conn.execute(select(t.c.fingerprint, t.c.status, t.c.body, t.c.headers, t.c.created_at)
                               .where(where)).first()
            if row is None:
                conn.execute(t.insert().values(scope=scope, key=key, fingerprint=fp, status=None, created_at=now))
                return "claimed", None
            expired = now - row.created_at > (ttl_s if row.status is not None else stale_s)
            if expired:  # an old answer, or the claim of a worker that died
                conn.execute(t.update().where(where).values(fingerprint=fp, status=None, body=None, headers=None,
                                                            created_at=now))
                return "claimed", None
        found = _Row(row.fingerprint, row.status, row.body, json.loads(row.headers) if row.headers else None)
        return ("done" if row.status is not None else "in_flight"), found

    def complete(self, scope: str, key: str, fp: str, status: int, body: bytes, headers: dict, limit: int,
                 ttl_s: float) -> None:
        t = idempotency_keys.table()
        now = time.time()
        with state.write_transaction() as conn:
            conn.execute(t.update().where((t.c.scope == scope) & (t.c.key == key) & (t.c.fingerprint == fp))
                         .values(status=status, body=body, headers=json.dumps(headers), created_at=now))
            done = (t.c.scope == scope) & t.c.status.isnot(None)
            conn.execute(t.delete().where(done & (t.c.created_at < now - ttl_s)))
            cutoff = conn.execute(select(t.c.created_at).where(done).order_by(t.c.created_at.desc())
                                  .offset(limit).limit(1)).scalar()
            if cutoff is not None:
                conn.execute(t.delete().where(done & (t.c.created_at <= cutoff)))

    def release(self, scope: str, key: str, fp: str) -> None:
        t = idempotency_keys.table()
        with state.write_transaction() as conn:
            conn.execute(t.delete().where((t.c.scope == scope) & (t.c.key == key) & (t.c.fingerprint == fp)
                                          & t.c.status.is_(None)))


class _MemoryBackend:
    """This process only: the fallback when the state DB cannot be opened."""

    def __init__(self) -> None:
        self._rows: OrderedDict[tuple[str, str], tuple[_Row, float]] = OrderedDict()
        self._guard = threading.Lock()

    def claim(self, scope, key, fp, now, stale_s, ttl_s):
        with self._guard:
            found = self._rows.get((scope, key))
            if found is not None:
                row, at = found
                if now - at <= (ttl_s if row.status is not None else stale_s):
                    return ("done" if row.status is not None else "in_flight"), row
            self._rows[(scope, key)] = (_Row(fp, None, None, None), now)
            return "claimed", None

    def complete(self, scope, key, fp, status, body, headers, limit, ttl_s):
        with self._guard:
            self._rows[(scope, key)] = (_Row(fp, status, body, headers), time.time())
            self._rows.move_to_end((scope, key))
            while len(self._rows) > limit:
                self._rows.popitem(last=False)

    def release(self, scope, key, fp):
        with self._guard:
            found = self._rows.get((scope, key))
            if found is not None and found[0].fingerprint == fp and found[0].status is None:
                del self._rows[(scope, key)]


class IdempotencyStore:
    """The per-app front: per-key in-process locks over a shared backend."""

    def __init__(self, on_event: Callable[[str, dict], None] | None = None) -> None:
        self._backend: Any = None
        self._backend_pid: int | None = None
        self._init_lock = threading.Lock()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._on_event = on_event or (lambda kind, info: None)

    def _get_backend(self):
        with self._init_lock:
            if self._backend is None or self._backend_pid != os.getpid():
                try:
                    self._backend = _DbBackend()
                except Exception as exc:  # noqa: BLE001 - no state DB: keys are kept per process
                    self._backend = _MemoryBackend()
                    self._on_event("idempotency_store_local", {"error": f"{type(exc).__name__}: {exc}"[:300]})
                self._backend_pid = os.getpid()
            return self._backend

    async def _call(self, method: str, *args: Any) -> Any:
        def run():
            return getattr(self._get_backend(), method)(*args)

        try:
            return await asyncio.get_running_loop().run_in_executor(None, run)
        except Exception:  # noqa: BLE001 - a DB hiccup is a retryable 503, never a 500
            # the cause (driver, host, port) goes to the server log, never into the answer
            log.warning("the idempotency store (nbprod's state DB) failed", exc_info=True)
            raise ServingError("the idempotency store (nbprod's state DB) is unavailable",
                               "retry the request with the same Idempotency-Key in a moment", status=503,
                               code="store_unavailable") from None

    async def run(self, key: str, fp: str, spec: Any, compute: Callable[[], Awaitable[Response]]) -> Response:
        """Replay the stored answer of ``key``, or ``compute`` it once and store it (status 200)."""
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            what = "empty" if not key.strip() else f"{len(key)} characters long"
            raise ServingError(f"the Idempotency-Key header is {what}",
                               f"send a key of 1 to {MAX_KEY_LENGTH} characters, e.g. a UUID", status=400,
                               code="bad_idempotency_key")
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._run_locked(key, fp, spec, compute)
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _run_locked(self, key: str, fp: str, spec: Any, compute) -> Response:
        scope, timeout = spec.name, float(spec.timeout_s)
        ttl, stale = float(spec.idempotency_ttl_s), 2 * timeout + 5.0
        deadline = time.monotonic() + timeout + 1.0
        while True:
            outcome, row = await self._call("claim", scope, key, fp, time.time(), stale, ttl)
            if outcome == "claimed":
                break
            if row.fingerprint != fp:
                raise ServingError(f"Idempotency-Key {key!r} was already used for a different request "
                                   "(another body, endpoint or credential)",
                                   "use a new Idempotency-Key for every distinct request; resend the original request "
                                   "unchanged to get its stored answer", status=422, code="idempotency_key_reused")
            if outcome == "done":
                return Response(row.body, status_code=row.status, media_type="application/json",
                                headers={**(row.headers or {}), "Idempotent-Replay": "true"})
            if time.monotonic() > deadline:  # another worker is still answering it
                raise ServingError(f"a request with Idempotency-Key {key!r} is still being answered",
                                   "retry in a moment with the same key to get its answer", status=409,
                                   code="idempotency_key_in_flight")
            await asyncio.sleep(_POLL_S)
        try:
            response = await compute()
        except BaseException:
            await asyncio.shield(self._release_quietly(scope, key, fp))
            raise
        if response.status_code != 200:
            await self._release_quietly(scope, key, fp)
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-") or k.lower() in _REPLAYED}
        try:
            await self._call("complete", scope, key, fp, 200, bytes(response.body), headers,
                             int(spec.idempotency_keys), ttl)
        except ServingError:  # the answer is good; only its replay is lost
            await self._release_quietly(scope, key, fp)
        return response

    async def _release_quietly(self, scope: str, key: str, fp: str) -> None:
        try:
            await self._call("release", scope, key, fp)
        except ServingError:
            pass  # the claim then expires after twice the timeout
