"""The audit log: hash chain, tamper detection, concurrent writers, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import require

from nbprod import audit, state
from nbprod.commands import parse
from nbprod.errors import AuditChainBroken, AuditError

PG_BIN = Path("/usr/lib/postgresql")


def _pg_bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    versions = sorted(PG_BIN.glob("*/bin/initdb")) if PG_BIN.is_dir() else []
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A PostgreSQL server URL: NBPROD_TEST_PG_URL, else a throwaway cluster on a unix socket."""
    url = os.environ.get("NBPROD_TEST_PG_URL")
    if url:
        yield url
        return
    bindir = _pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        require(False, "no PostgreSQL: set NBPROD_TEST_PG_URL or install postgresql (initdb, pg_ctl)")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="nbprod-pg-"))  # not under pytest's 0700 tmp: postgres must reach it
    root.chmod(0o777)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 and shutil.which("runuser") else []
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off", "start")
    except (subprocess.CalledProcessError, OSError) as exc:
        require(False, f"could not start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, nbprod_home, monkeypatch):
    """The state DB URL of one test: a SQLite file in the test's home, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{nbprod_home / 'nbprod.db'}"
        monkeypatch.setenv("NBPROD_DB_URL", url)
        yield url
        state.dispose()
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg (v3) not installed: pip install 'nbprod[postgres]'")
    import sqlalchemy as sa

    server = request.getfixturevalue("pg_server")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"nbprod_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    except sa.exc.DBAPIError:  # no CREATEDB right on a given server: use its database, emptied
        name, url = None, server
        state.metadata.drop_all(sa.create_engine(server))
    monkeypatch.setenv("NBPROD_DB_URL", url)
    yield url
    state.dispose()
    if name:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _raw(sql: str, **params) -> None:
    import sqlalchemy as sa

    with state.engine().begin() as conn:
        conn.execute(sa.text(sql), params)


def _fill(n: int = 5) -> list[audit.AuditEntry]:
    return [audit.record("register", model_uri=f"models:/credit-risk/{i + 1}", details={"i": i}) for i in range(n)]


def test_record_fills_provenance_and_chains(db_url):
    first, second = _fill(2)
    assert first.seq == 1 and first.prev_hash == audit.GENESIS
    assert second.seq == 2 and second.prev_hash == first.hash
    assert first.user and first.timestamp.endswith("Z") and first.model == "credit-risk"
    assert first.details == {"i": 0}
    result = audit.verify()
    assert result.ok and result.n_rows == 2 and result.head == f"2:{second.hash}"
    assert "OK" in str(result) and "intact" in result._repr_html_()


def test_history_filters_by_model_and_limits(db_url):
    _fill(3)
    audit.record("alias", model_uri="models:/other@champion", details={"alias": "champion"})
    table = audit.history()
    assert [e.seq for e in table] == [4, 3, 2, 1]  # newest first
    only = audit.history("models:/credit-risk@champion", limit=2)
    assert only.model == "credit-risk" and [e.seq for e in only] == [3, 2]
    assert "credit-risk" in str(only) and "<table>" in only._repr_html_()
    frame = only.to_frame()
    assert list(frame["seq"]) == [3, 2] and str(frame["timestamp"].dt.tz) == "UTC"
    assert json.loads(json.dumps(only.to_dict()))["entries"][0]["action"] == "register"
    assert len(audit.history("nobody")) == 0


def test_edited_row_is_detected(db_url):
    _fill(4)
    _raw("UPDATE audit_log SET details = :d WHERE seq = 2", d='{"i":99}')
    result = audit.verify()
    assert not result.ok and result.bad_seq == 2 and "edited" in result.reason
    with pytest.raises(AuditChainBroken, match="#2"):
        result.raise_for_errors()


def test_edited_row_with_recomputed_hash_breaks_the_next_link(db_url):
    entries = _fill(4)
    row = entries[1].to_dict() | {"user": "mallory"}
    row["details"] = audit._canonical(row["details"])
    _raw("UPDATE audit_log SET \"user\" = 'mallory', hash = :h WHERE seq = 2", h=audit._hash(row))
    result = audit.verify()
    assert not result.ok and result.bad_seq == 3 and "prev_hash" in result.reason


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_deleted_row_is_detected_including_the_newest(db_url, seq):
    _fill(5)
    _raw("DELETE FROM audit_log WHERE seq = :s", s=seq)
    result = audit.verify()
    assert not result.ok and result.n_rows == 4
    assert result.bad_seq == seq, result.problems


def test_deleted_head_and_inserted_row_are_detected(db_url):
    entries = _fill(3)
    _raw("INSERT INTO audit_log (seq, timestamp, \"user\", action, details, prev_hash, hash) "
         "VALUES (4, '2020-01-01T00:00:00.000000Z', 'mallory', 'register', '{}', :p, :h)",
         p=entries[-1].hash, h="f" * 64)
    result = audit.verify()
    assert not result.ok and result.bad_seq == 4
    _raw("DELETE FROM audit_log WHERE seq = 4")
    assert audit.verify().ok
    _raw("DELETE FROM audit_head")
    assert not audit.verify().ok
    with pytest.raises(AuditChainBroken, match="head row is missing"):
        audit.record("register")


def test_anchor_catches_a_wholesale_rewrite(db_url):
    _fill(3)
    anchor = audit.verify().head
    _raw("DELETE FROM audit_log")
    _raw("DELETE FROM audit_head")
    _fill(3)  # a consistent, rewritten chain with other timestamps
    assert audit.verify().ok
    result = audit.verify(anchor=anchor)
    assert not result.ok and "anchor" in result.reason
    with pytest.raises(AuditError, match="anchor"):
        audit.verify(anchor="nonsense")


def test_record_joins_the_callers_transaction(db_url):
    _fill(1)
    with pytest.raises(RuntimeError):
        with state.write_transaction() as conn:
            audit.record("deploy", model_uri="models:/credit-risk/1", connection=conn)
            raise RuntimeError("the caller's own write failed")
    assert len(audit.history()) == 1 and audit.verify().ok  # rolled back together
    with state.write_transaction() as conn:
        audit.record("deploy", model_uri="models:/credit-risk/1", connection=conn)
        audit.record("promote", model_uri="models:/credit-risk/1", connection=conn)
    assert [e.action for e in audit.history()] == ["promote", "deploy", "register"] and audit.verify().ok


@pytest.mark.parametrize("details", [{"a": object()}, {"x": float("nan")}, ["not", "a", "dict"]])
def test_bad_details_raise_audit_error_and_write_nothing(db_url, details):
    with pytest.raises(AuditError, match="details"):
        audit.record("register", details=details)
    assert len(audit.history()) == 0


def test_bad_action_and_limit(nbprod_home):
    with pytest.raises(AuditError, match="action"):
        audit.record("  ")
    with pytest.raises(AuditError, match="limit"):
        audit.history(limit=0)


WRITER = textwrap.dedent("""
    import os, sys, time
    from nbprod import audit
    go = sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(int(sys.argv[3])):
        audit.record("register", model_uri=f"models:/m{sys.argv[1]}/{i + 1}", details={"writer": sys.argv[1], "i": i})
""")


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_keep_the_chain(db_url, tmp_path):
    n = 40
    go = tmp_path / "go"
    env = {**os.environ, "NBPROD_DB_URL": db_url}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(go), str(n)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    go.touch()  # on a fresh database: the children also race to create the tables and the head row
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    result = audit.verify()
    assert result.ok, result.problems
    assert result.n_rows == 2 * n
    entries = audit.history().entries
    assert sorted(e.seq for e in entries) == list(range(1, 2 * n + 1))
    for w in ("1", "2"):
        assert sorted(e.details["i"] for e in entries if e.details["writer"] == w) == list(range(n))


def test_audit_verb(nbprod_home):
    _fill(2)
    command, args = parse("nbprod", ["audit", "credit-risk", "--limit", "1"])
    table = command.run(args, None)
    assert len(table) == 1 and table[0].seq == 2
    command, args = parse("nbprod", ["audit", "--verify"])
    assert command.run(args, None).ok


def test_cli_verify_exits_1_on_a_broken_chain(nbprod_home):
    _fill(2)
    _raw("UPDATE audit_log SET action = 'delete' WHERE seq = 1")
    env = {**os.environ, "NBPROD_HOME": str(nbprod_home)}
    nbprod = Path(sys.executable).parent / "nbprod"
    out = subprocess.run([str(nbprod), "audit", "--verify"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BROKEN" in out.stdout and "#1" in out.stdout


def test_model_name_parses_every_uri_form():
    for uri in ("credit-risk", "models:/credit-risk/3", "models:/credit-risk@champion", "credit-risk@champion",
                "models:/credit-risk", "models:/credit-risk/latest"):
        assert audit.model_name(uri) == "credit-risk", uri
    assert audit.model_name(None) is None


def test_state_db_folder_that_cannot_be_created_is_a_config_error(nbprod_home, monkeypatch, capsys):
    from nbprod.cli import main
    from nbprod.config import settings
    from nbprod.errors import ConfigError

    monkeypatch.setenv("NBPROD_DB_URL", "sqlite:////proc/nope/x.db")
    settings.reset()
    for call in (audit.history, audit.verify, lambda: audit.record("register", model_uri="models:/m/1")):
        with pytest.raises(ConfigError) as err:
            call()
        assert "/proc/nope" in err.value.problem and "sqlite:////proc/nope/x.db" in err.value.problem
        assert "NBPROD_DB_URL" in err.value.fix
    assert main(["audit", "--verify"]) == 2
    captured = capsys.readouterr()
    assert "/proc/nope" in captured.err and "Fix:" in captured.err and "Traceback" not in captured.out + captured.err


def test_terminal_repr_is_the_readable_text(nbprod_home):
    _fill(2)
    table, result = audit.history(), audit.verify()
    assert repr(table) == str(table) and "AuditTable(" not in repr(table) and "credit-risk" in repr(table)
    assert repr(result) == str(result) and "OK" in repr(result)
