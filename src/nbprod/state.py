"""nbprod's own state database: the audit log (and later deployments, predictions, feedback).

One SQL database through SQLAlchemy Core. By default a SQLite file ``$NBPROD_HOME/nbprod.db``;
any SQLAlchemy URL through ``NBPROD_DB_URL`` (``postgresql+psycopg://user@host/db`` to share the
state between machines). The tables live in one :data:`metadata`; adding a table is one
``Table(..., metadata, ...)`` definition below: :func:`engine` creates whatever is missing on
first use in each process.

Why the care with transactions:

- SQLite runs in WAL mode (readers never block the writer) with a ``busy_timeout``, so several
  processes — two notebooks, a server, a CLI — can write at once: a writer waits for the lock
  instead of failing with ``database is locked``.
- Python's ``sqlite3`` driver starts transactions lazily, which makes "read, then write based on
  what was read" racy between processes. nbprod takes over: a plain transaction is ``BEGIN``, and
  :func:`write_transaction` is ``BEGIN IMMEDIATE`` — it holds SQLite's write lock from its first
  statement, so a read-then-insert in it is serialised against every other writer. On PostgreSQL
  a write transaction is an ordinary one; code that must serialise takes an advisory lock
  (:func:`lock`).
- Creating the tables is serialised the same way, so two processes starting at once on a fresh
  database do not trip over each other's ``CREATE TABLE``.
- ``secure_delete = FAST``: Debian's SQLite is built to zero every deleted byte and write each freed
  page back (``SECURE_DELETE``), which doubled what a prediction log at its cap writes — every record
  written is a record pruned (issue 13: a prune's commit was 28 µs of a 100-row record's 70; FAST:
  48 µs). FAST still zeroes deleted content on the pages a delete writes anyway; a freed page keeps
  its old bytes until it is reused, as the log at its cap soon does, or cut off by :func:`reclaim`.

``import nbprod`` does not load this module (it imports SQLAlchemy).
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from ._files import private_file
from .config import settings
from .errors import ConfigError

__all__ = ["metadata", "audit_log", "audit_head", "engine", "connect", "write_transaction", "lock",
           "dispose", "reclaim", "BUSY_TIMEOUT_MS"]

BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before giving up."""

metadata = MetaData()

# --- tables -----------------------------------------------------------------------------------

audit_log = Table(
    "audit_log",
    metadata,
    # Position in the hash chain: 1, 2, 3, … with no gaps. Chosen by the writer under the write
    # lock (not an autoincrement), so a deleted row leaves a visible gap.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("timestamp", String(32), nullable=False),  # ISO 8601, UTC, microseconds: hash-stable text
    Column("user", String(255), nullable=False),
    Column("host", String(255)),
    Column("action", String(64), nullable=False),
    Column("model", String(255)),  # registered model name parsed from model_uri, for filtering
    Column("model_uri", String(1024)),
    Column("details", Text, nullable=False),  # canonical JSON: the exact text that was hashed
    Column("notebook", String(1024)),
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_model", "model"),
)

audit_head = Table(
    "audit_head",
    metadata,
    # One row (id=1): the last seq and hash of the chain. Deleting the newest audit rows leaves a
    # chain that is internally consistent; the head row is what makes that truncation visible.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# --- engines ----------------------------------------------------------------------------------

_engines: dict[tuple[str, int], Engine] = {}
_guard = threading.Lock()


def _is_sqlite(url) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_events(eng: Engine) -> None:
    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # nbprod emits BEGIN itself (see module docstring)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # takes effect on a new file only (see reclaim()); set only when it is not yet: on a file already
        # INCREMENTAL setting it again rewrites the header, so each new connection waited for every open
        # write transaction — 30 s and "database is locked" for one opened inside such a transaction
        if cursor.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA secure_delete = FAST")  # see the module docstring
        cursor.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("nbprod_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _make_engine(db_url: str) -> Engine:
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"the state DB URL {db_url!r} is not a SQLAlchemy URL",
                          "set NBPROD_DB_URL to e.g. sqlite:////path/nbprod.db or "
                          "postgresql+psycopg://user:password@host/dbname") from exc
    kwargs: dict = {}
    if _is_sqlite(url):
        if url.database and url.database != ":memory:":
            folder = Path(url.database).expanduser().parent
            try:
                private_file(Path(url.database).expanduser())  # 0600: the prediction log holds request inputs
            except OSError as exc:
                raise ConfigError(f"cannot create the folder {folder} of nbprod's state DB "
                                  f"{url.render_as_string(hide_password=True)}: {exc.strerror or exc}",
                                  "set NBPROD_DB_URL (or NBPROD_HOME) to a writable location, "
                                  "e.g. sqlite:////path/to/nbprod.db") from exc
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        eng = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        driver = url.drivername
        hint = ("pip install 'nbprod[postgres]' (psycopg v3) and use postgresql+psycopg://…"
                if url.get_backend_name() == "postgresql" else f"install the DB driver for {driver!r}")
        raise ConfigError(f"no database driver for the state DB URL scheme {driver!r}: {exc}", hint) from exc
    if _is_sqlite(url):
        _sqlite_events(eng)
    return eng


def _create_tables(eng: Engine) -> None:
    """Create the missing tables, serialised against other processes doing the same."""
    try:
        with eng.connect() as conn:
            conn.execution_options(nbprod_write=True)
            with conn.begin():
                if eng.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("nbprod.schema")})
                metadata.create_all(conn, checkfirst=True)
    except OperationalError as exc:
        raise ConfigError(f"cannot open nbprod's state DB at {_safe_url(eng)}: {exc.orig}",
                          "check NBPROD_DB_URL / NBPROD_HOME: the database must be reachable and writable") from exc
    except OSError as exc:  # e.g. a driver that opens files itself
        raise ConfigError(f"cannot open nbprod's state DB at {_safe_url(eng)}: {exc}",
                          "check NBPROD_DB_URL / NBPROD_HOME: the database must be reachable and writable") from exc
    except DBAPIError:
        # Another process won a CREATE race the lock could not cover (a dialect without advisory
        # locks): the tables exist now, so a second pass only checks.
        metadata.create_all(eng, checkfirst=True)


def _safe_url(eng: Engine) -> str:
    return eng.url.render_as_string(hide_password=True)


def engine(db_url: str | None = None) -> Engine:
    """The engine of the state DB (``settings.db_url`` by default), tables created, cached per process."""
    db_url = db_url or settings.db_url
    key = (db_url, os.getpid())  # a forked child must not reuse its parent's pooled connections
    eng = _engines.get(key)
    if eng is not None:
        return eng
    with _guard:
        eng = _engines.get(key)
        if eng is None:
            eng = _make_engine(db_url)
            _create_tables(eng)
            _engines[key] = eng
    return eng


def reclaim(eng: Engine, keep: int = 0) -> None:
    """Give the pages freed by large deletes back to the file system (SQLite; a no-op elsewhere).

    A state DB created by nbprod has ``auto_vacuum=INCREMENTAL``, so ``PRAGMA incremental_vacuum``
    shrinks the file (at the next WAL checkpoint). A file created before that setting existed is
    left as it is: README ("Monitoring") says how to convert it once. PostgreSQL's autovacuum
    reuses the space of deleted rows by itself. ``keep``: free pages left in the file for the writes
    about to come (a prediction log at its cap refills what it prunes: moving those pages to the end
    of the file and back cost its writer a fifth of a prune, issue 13).
    """
    if not _is_sqlite(eng.url):
        return
    raw = eng.raw_connection()
    try:
        pages = ""
        if keep > 0:
            free = raw.driver_connection.execute("PRAGMA freelist_count").fetchone()[0]  # type: ignore[union-attr]
            if free <= keep:
                return
            pages = f"({int(free - keep)})"
        # executescript steps the pragma to its end; execute() would free one page per call
        raw.driver_connection.executescript(  # type: ignore[union-attr]
            f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum{pages}; COMMIT;")
    finally:
        raw.close()


def dispose() -> None:
    """Close every cached engine of this process (tests, and before forking workers)."""
    with _guard:
        for (_url, pid), eng in list(_engines.items()):
            if pid == os.getpid():
                eng.dispose()
            del _engines[(_url, pid)]


@contextmanager
def connect(db_url: str | None = None) -> Iterator[Connection]:
    """A connection in a plain transaction (committed on success, rolled back on error)."""
    with engine(db_url).begin() as conn:
        yield conn


@contextmanager
def write_transaction(db_url: str | None = None) -> Iterator[Connection]:
    """A connection in a transaction that holds the write lock from its start (SQLite).

    Use it when a write depends on what was just read (the audit chain's previous hash), or to
    make your own write and its audit row one transaction::

        with state.write_transaction() as conn:
            conn.execute(deployments.insert().values(...))
            audit.record("deploy", model_uri=uri, connection=conn)
    """
    with engine(db_url).connect() as conn:
        conn.execution_options(nbprod_write=True)
        with conn.begin():
            yield conn


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def lock(conn: Connection, name: str) -> None:
    """Serialise writers on ``name`` until ``conn``'s transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do when ``conn`` comes
    from :func:`write_transaction` (the whole database is locked); otherwise the first write of
    the transaction takes the lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})
