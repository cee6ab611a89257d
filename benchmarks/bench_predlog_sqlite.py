"""Prediction log: what SQLite's settings do to the writer's insert + prune at the cap (issue 13), in process.

Each setting gets its own state-DB file (``page_size`` and ``auto_vacuum`` are fixed when a file is created),
filled to the cap with ``--per``-row (100) credit requests as the server hands them over
(``bench_predlog._credit_requests``). Then ``--writers`` processes (a server's workers, each with its own
connection) write the same pre-converted records into EVERY setting's file in turn — 2,000 rows a transaction
(a writer's flush), requests joined into blocks as the writer does (``logblocks.blocks``, ``_insert_records``),
the order of the files shuffled per transaction, a prune (``PredictionLog.prune``) every ``prune_every_rows``
rows — so the host's speed drift (20–30 % within minutes here) falls on every setting alike. Reported per
request and writer: the thread's CPU in the inserts and the prunes, and of that the CPU inside SQLite
(statements, commits, ``state.reclaim``: SQLAlchemy's cursor events), which is all a setting can change.
``base`` is nbprod's own settings (``nbprod.state``); ``base-again`` the same in another file: the spread of
identical settings. Connection settings are added after nbprod's own (``nbprod.state._sqlite_events`` wrapped).

``--wrk``: the same settings in a real server (``nbprod serve --model credit-risk/1 --workers 2``, httptools,
the log's cap ``--cap``), a fresh server and state-DB file per setting and round, the sides alternating; the log
filled to its cap by wrk first, then ``wrk -t2 -c16`` with ``--per``-row bodies: CPU µs per request of the
writer threads (named by a ``sitecustomize`` that also applies the connection settings, and records them as
each connection sees them) and of the rest of the server's process tree (/proc, per thread).

    .venv/bin/python benchmarks/bench_predlog_sqlite.py [--runs 3] [--requests 3000] [--cap 200000] [--writers 2]
        [--per 100] [--settings base,page16k,mmap,...] [--statements]
    .venv/bin/python benchmarks/bench_predlog_sqlite.py --wrk [--runs 3] [--seconds 8] [--settings base,...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MIB = 1024 * 1024
#: name -> (settings of a new file, connection settings)
SETTINGS: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "base-again": ({}, {}),
    "page8k": ({"page_size": 8192}, {}),
    "page16k": ({"page_size": 16384}, {}),
    "mmap": ({}, {"mmap_size": 256 * MIB}),
    "page16k+mmap": ({"page_size": 16384}, {"mmap_size": 256 * MIB}),
    "cache64m": ({}, {"cache_size": -64 * 1024}),
    "autocheckpoint250": ({}, {"wal_autocheckpoint": 250}),
    "autocheckpoint4000": ({}, {"wal_autocheckpoint": 4000}),
    "no-checkpoint": ({}, {"wal_autocheckpoint": 0}),  # the WAL only grows: what all checkpoints cost, not a choice
    "journal-limit": ({}, {"journal_size_limit": 4 * MIB}),
    "temp-memory": ({}, {"temp_store": "MEMORY"}),
    "auto_vacuum-none": ({"auto_vacuum": "NONE"}, {}),  # state.reclaim could not shrink the file any more
}


def _add_connection_settings(by_path: dict[str, dict]) -> None:
    from sqlalchemy import event

    from nbprod import state

    own = state._sqlite_events

    def events(eng) -> None:
        own(eng)
        pragmas = by_path.get(str(eng.url.database), {})

        @event.listens_for(eng, "connect")
        def _more(dbapi_connection, _record) -> None:
            for key, value in pragmas.items():
                dbapi_connection.execute(f"PRAGMA {key} = {value}")

    state._sqlite_events = events  # type: ignore[assignment]


def _create(path: Path, file_settings: dict) -> None:
    """A new state-DB file as nbprod creates it (auto_vacuum incremental, WAL), with ``file_settings`` first."""
    db = sqlite3.connect(path, isolation_level=None)
    for key, value in {**file_settings, "auto_vacuum": file_settings.get("auto_vacuum", "INCREMENTAL")}.items():
        db.execute(f"PRAGMA {key} = {value}")  # page_size first: auto_vacuum on an empty file fixes the page size
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE _new(a)")  # the file is written (and its page size fixed) by the first table
    db.execute("DROP TABLE _new")
    db.close()


def _transactions(requests: int, per: int, seed: int, prefix: str, cap: int) -> list[list[tuple]]:
    """The records of ``requests`` ``per``-row requests as a server's writer stores them: 2,000 rows (a
    ``batch_rows`` flush) a transaction, runs of requests joined into blocks (:mod:`nbprod.monitoring.logblocks`,
    at most ``min(MAX_ROWS, prune_every_rows)`` rows), request ids as a server makes them."""
    from bench_predlog import _credit_requests

    from nbprod.monitoring.logblocks import MAX_ROWS, blocks
    from nbprod.monitoring.logrecords import records_of
    from nbprod.monitoring.predlog import PredictionLog

    bound = min(MAX_ROWS, PredictionLog("bench", max_rows=cap).prune_every_rows)
    hooks = _credit_requests(requests * per, per, seed=seed, server=True)
    step = max(1, 2000 // per)
    out, after = [], ""
    for k in range(0, len(hooks), step):
        items = [("prediction", time.time(), {**r, "request_id": f"{prefix}{k + j:012x}"})
                 for j, r in enumerate(hooks[k:k + step])]
        items, after = blocks(items, after, bound)
        out.append(list(records_of("bench", items)))
    return out


def _file_settings(url: str) -> tuple:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0], conn.execute("PRAGMA auto_vacuum").fetchone()[0]


def fill_child(urls: list[str], cap: int, per: int) -> dict:
    from nbprod.monitoring.predlog import PredictionLog, _insert_records, ensure_tables

    transactions = _transactions(cap // per + 50, per, 1, "f" * 20, cap)
    for url in urls:
        ensure_tables(url)
        for recs in transactions:
            _insert_records(recs, url, 256)
        PredictionLog("bench", db_url=url, max_rows=cap).prune()
    return {}


def writer_child(urls: list[str], cap: int, per: int, requests: int, wid: int, go: Path) -> dict:
    from sqlalchemy import event

    from nbprod import state
    from nbprod.monitoring.logrecords import RECORD_COLUMNS
    from nbprod.monitoring.predlog import PredictionLog, _insert_records, ensure_tables

    transactions = _transactions(requests, per, 2 + wid, f"{wid + 1:020x}", cap)
    inside: dict[str, float] = defaultdict(float)  # url -> thread CPU inside SQLite
    statements: dict[tuple[str, str], float] = defaultdict(float)
    started: dict[str, tuple[float, str]] = {}
    for url in urls:
        eng = ensure_tables(url)

        def before(_conn, _cursor, statement, *_args, _url=url) -> None:
            started[_url] = (time.thread_time(), " ".join(statement.split())[:60])

        def after(*_args, _url=url) -> None:
            t, what = started[_url]
            inside[_url] += time.thread_time() - t
            statements[(_url, what)] += time.thread_time() - t

        def commit(dbapi_connection, _own=eng.dialect.do_commit, _url=url) -> None:
            t = time.thread_time()
            _own(dbapi_connection)
            inside[_url] += time.thread_time() - t
            statements[(_url, "COMMIT after " + started[_url][1][:20])] += time.thread_time() - t

        event.listen(eng, "before_cursor_execute", before)
        event.listen(eng, "after_cursor_execute", after)
        eng.dialect.do_commit = commit  # type: ignore[method-assign]
    own_reclaim = state.reclaim

    def reclaim(eng, keep: int = 0) -> None:
        t = time.thread_time()
        own_reclaim(eng, keep)
        inside[str(eng.url)] += time.thread_time() - t
        statements[(str(eng.url), "state.reclaim()")] += time.thread_time() - t

    state.reclaim = reclaim  # type: ignore[assignment]
    logs = {url: PredictionLog("bench", db_url=url, max_rows=cap) for url in urls}
    every = logs[urls[0]].prune_every_rows
    insert: dict[str, float] = defaultdict(float)
    prune: dict[str, float] = defaultdict(float)
    rng = random.Random(wid)
    order = list(urls)
    since = 0
    Path(f"{go}.{wid}").touch()
    while not go.exists():  # every writer starts at once
        time.sleep(0.001)
    for recs in transactions:
        since += sum(r[RECORD_COLUMNS.index("n_rows")] for r in recs)
        rng.shuffle(order)
        for url in order:
            t = time.thread_time()
            _insert_records(recs, url, 256)
            insert[url] += time.thread_time() - t
        if since >= every:
            since = 0
            rng.shuffle(order)
            for url in order:
                t = time.thread_time()
                logs[url].prune()
                prune[url] += time.thread_time() - t
    us = 1e6 / requests  # seconds in all -> µs per request
    return {url: {"insert": insert[url] * us, "prune": prune[url] * us, "total": (insert[url] + prune[url]) * us,
                  "sqlite": inside[url] * us,
                  "statements": {what: s * us for (u, what), s in statements.items() if u == url}} for url in urls}


_SITE = """
import json, os
_by = json.loads(os.environ["BENCH_SQLITE_PRAGMAS"])
import nbprod.state as _state
_own = _state._sqlite_events
def _events(eng):
    _own(eng)
    from sqlalchemy import event
    @event.listens_for(eng, "connect")
    def _more(dbapi_connection, _record):
        for key, value in _by.items():
            dbapi_connection.execute(f"PRAGMA {key} = {value}")
        seen = {key: dbapi_connection.execute(f"PRAGMA {key}").fetchone()[0] for key in _by}
        with open(os.environ["BENCH_SQLITE_SEEN"], "a") as fh:
            fh.write(json.dumps(seen) + "\\n")
_state._sqlite_events = _events
import ctypes
import nbprod.monitoring.predlog as _predlog
_run = _predlog.PredictionLog._run
def _named_run(self):
    ctypes.CDLL(None).prctl(15, b"nbprod-predlog", 0, 0, 0)  # PR_SET_NAME: the thread's name in /proc
    return _run(self)
_predlog.PredictionLog._run = _named_run
"""


def _threads_cpu(pid: int) -> dict[tuple[int, int, str], float]:
    """CPU seconds of every thread of ``pid`` and its descendants: (process, thread, name) -> utime + stime."""
    pids, tick, out = [pid], os.sysconf("SC_CLK_TCK"), {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) in pids:
                pids.append(int(entry))
        except (OSError, ValueError):
            pass
    for p in pids:
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                stat = open(f"/proc/{p}/task/{t}/stat").read()
                fields = stat.rsplit(")", 1)[1].split()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                out[(p, int(t), name)] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return out


def _held(db: Path) -> int:
    """Rows the prediction log in ``db`` holds (0 before its writer made the table)."""
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT coalesce(sum(n_rows), 0) FROM prediction_records").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def wrk_settings(args, names: list[str]) -> None:
    """``--wrk``: see the module docstring."""
    from bench_predlog import start, stop
    from bench_serve import wrk

    with tempfile.TemporaryDirectory(prefix="bench-predlog-sqlite-wrk-") as tmp:
        root = Path(tmp)
        os.environ["NBPROD_HOME"] = str(root / "home")
        for var in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
            os.environ.pop(var, None)
        from _setup import pipeline

        from nbprod import registry
        from nbprod.datasets import credit

        X, y = credit(2000, 0)
        model = f"credit-risk/{registry.register(pipeline(X, y), 'credit-risk', X, y).version}"
        rows = X.dropna().head(1) if args.per == 1 else X.sample(args.per, random_state=args.per)
        body = root / "body.json"
        body.write_text(json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}))
        (root / "site").mkdir()
        (root / "site" / "sitecustomize.py").write_text(_SITE)
        print(f"wrk -t2 -c16 -d{args.seconds:g}s, {args.per}-row requests, `nbprod serve --model {model} --workers 2 "
              f"--no-auth`, httptools, the log at its cap of {args.cap:,} rows; load "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results: dict[str, list[dict]] = defaultdict(list)
        for run in range(args.runs):
            for name in names if run % 2 == 0 else names[::-1]:
                db, seen = root / f"{run}-{name}.db", root / f"{run}-{name}.seen"
                _create(db, SETTINGS[name][0])
                env = {"NBPROD_HTTP": "httptools", "NBPROD_DB_URL": f"sqlite:///{db}",
                       "NBPROD_PREDICTION_LOG_MAX_ROWS": str(args.cap),
                       "BENCH_SQLITE_PRAGMAS": json.dumps(SETTINGS[name][1]), "BENCH_SQLITE_SEEN": str(seen)}
                proc, port = start(model, root / "home", True, src=str(root / "site"), workers=2, env=env,
                                   flag="--model")
                try:
                    deadline = time.monotonic() + 180
                    while time.monotonic() < deadline:  # the log at its cap: every write is followed by prunes
                        if _held(db) >= args.cap:
                            break
                        wrk(port, body, {}, 2, root)
                    before = _threads_cpu(proc.pid)
                    r = wrk(port, body, {}, args.seconds, root)
                    after = _threads_cpu(proc.pid)
                finally:
                    stop(proc)
                per = 1e6 / max(1, r["requests"])
                writer = sum(v - before.get(k, 0.0) for k, v in after.items() if k[2] == "nbprod-predlog") * per
                rest = sum(v - before.get(k, 0.0) for k, v in after.items() if k[2] != "nbprod-predlog") * per
                with sqlite3.connect(db) as conn:
                    page = conn.execute("PRAGMA page_size").fetchone()[0]
                applied = sorted(set(seen.read_text().splitlines())) if seen.exists() else []
                results[name].append({"writer": writer, "rest": rest, "rps": r["rps"], "failed": r["failed"]})
                print(f"run {run + 1}, {name} (page_size {page}, connections saw {', '.join(applied) or '{}'}): "
                      f"writer threads {writer:.1f} µs/request, the rest {rest:.1f}, {r['rps']:,.0f} req/s, "
                      f"p99 {r['p99']:.2f} ms, {r['failed']} failed; load {os.getloadavg()[0]:.2f}", flush=True)
        med = statistics.median
        base = med(r["writer"] for r in results[names[0]])
        print(f"\n| settings | writer threads µs/request | vs {names[0]} | the rest µs/request | req/s |")
        print("| --- | --- | --- | --- | --- |")
        for name in names:
            rs = results[name]
            w = med(r["writer"] for r in rs)
            each = ", ".join(f"{r['writer']:.0f}" for r in rs)
            print(f"| {name} | {w:.1f} ({each}) | {w / base:.2f}× | "
                  f"{med(r['rest'] for r in rs):.1f} | {med(r['rps'] for r in rs):,.0f} |")
        print(f"load at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000, help="requests per writer and round")
    ap.add_argument("--cap", type=int, default=200_000, help="the log's row cap (NBPROD_PREDICTION_LOG_MAX_ROWS)")
    ap.add_argument("--per", type=int, default=100, help="rows per request")
    ap.add_argument("--writers", type=int, default=2, help="writer processes (a server's workers)")
    ap.add_argument("--settings", default="base,base-again,page8k,page16k,mmap,page16k+mmap,cache64m,"
                    "autocheckpoint4000,no-checkpoint", help=f"of {', '.join(SETTINGS)}")
    ap.add_argument("--statements", action="store_true", help="SQLite's CPU per statement too")
    ap.add_argument("--wrk", action="store_true", help="the settings in a real server under wrk (module docstring)")
    ap.add_argument("--seconds", type=float, default=8.0, help="--wrk: seconds of each measured wrk run")
    ap.add_argument("--child", choices=["fill", "write"], help=argparse.SUPPRESS)
    ap.add_argument("--urls", default="", help=argparse.SUPPRESS)
    ap.add_argument("--by-path", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--wid", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--go", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _add_connection_settings(json.loads(args.by_path))
        urls = args.urls.split(",")
        out = (fill_child(urls, args.cap, args.per) if args.child == "fill"
               else writer_child(urls, args.cap, args.per, args.requests, args.wid, Path(args.go)))
        print(json.dumps(out))
        return
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}: use {', '.join(SETTINGS)}")
    if args.wrk:
        wrk_settings(args, names)
        return
    print(f"SQLite {sqlite3.sqlite_version}; the log at its cap of {args.cap:,} rows, {args.per}-row credit requests "
          "in blocks, "
          f"{args.writers} writer processes x {args.requests} requests a round, 2,000 rows a transaction, settings "
          f"interleaved per transaction; load {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[str, list[dict]] = defaultdict(list)
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-predlog-sqlite-") as tmp:
            env = {**os.environ, "NBPROD_HOME": tmp, "PYTHONHASHSEED": "0"}
            env.pop("NBPROD_DB_URL", None)
            urls, by_path = [], {}
            for name in names:
                path = Path(tmp) / f"{name}.db"
                _create(path, SETTINGS[name][0])
                urls.append(f"sqlite:///{path}")
                by_path[str(path)] = SETTINGS[name][1]
            cmd = [sys.executable, __file__, "--urls", ",".join(urls), "--by-path", json.dumps(by_path),
                   "--cap", str(args.cap), "--per", str(args.per), "--requests", str(args.requests)]
            subprocess.run([*cmd, "--child", "fill"], env=env, check=True, capture_output=True, timeout=3600)
            if run == 0:
                pairs = zip(names, urls, strict=True)
                print("page_size, auto_vacuum of the files: " + ", ".join(f"{n} {_file_settings(u)}" for n, u in pairs))
            go = Path(tmp) / "go"
            procs = [subprocess.Popen([*cmd, "--child", "write", "--wid", str(w), "--go", str(go)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for w in range(args.writers)]
            ready = [Path(f"{go}.{w}") for w in range(args.writers)]
            while not all(r.exists() for r in ready) and all(p.poll() is None for p in procs):
                time.sleep(0.05)  # each writer has converted its records: they start together
            go.touch()
            outs = []
            for proc in procs:
                stdout, stderr = proc.communicate(timeout=3600)
                if proc.returncode:
                    raise RuntimeError(stderr[-3000:])
                outs.append(json.loads(stdout.strip().splitlines()[-1]))
            for name, url in zip(names, urls, strict=True):
                results[name].extend(o[url] for o in outs)
            pairs = zip(names, urls, strict=True)
            print(f"run {run + 1}, insert + prune (in SQLite) µs per request: " + ", ".join(
                f"{name} {statistics.mean(o[url]['total'] for o in outs):.1f} "
                f"({statistics.mean(o[url]['sqlite'] for o in outs):.1f})" for name, url in pairs)
                + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    med = statistics.median
    base_total, base_sqlite = (med(r[k] for r in results[names[0]]) for k in ("total", "sqlite"))
    print(f"\nmedians over {args.runs} rounds x {args.writers} writers, CPU µs per {args.per}-row request and "
          "writer:\n")
    print(f"| settings | insert | prune | insert + prune | vs {names[0]} | of which in SQLite | vs {names[0]} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        rs = results[name]
        total, inside = med(r["total"] for r in rs), med(r["sqlite"] for r in rs)
        print(f"| {name} | {med(r['insert'] for r in rs):.1f} | {med(r['prune'] for r in rs):.1f} | {total:.1f} | "
              f"{total / base_total:.2f}× | {inside:.1f} | {inside / base_sqlite:.2f}× |")
    if args.statements:
        keys = sorted({k for rs in results.values() for r in rs for k in r["statements"]},
                      key=lambda k: -med(r["statements"].get(k, 0.0) for r in results[names[0]]))
        print("\nSQLite's CPU per statement, µs per request (medians)\n")
        print("| statement | " + " | ".join(names) + " |")
        print("| --- |" + " --- |" * len(names))
        for key in keys[:12]:
            print(f"| `{key}` | " + " | ".join(f"{med(r['statements'].get(key, 0.0) for r in results[n]):.2f}"
                                             for n in names) + " |")
    print(f"load at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
