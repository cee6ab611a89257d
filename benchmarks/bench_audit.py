"""What the audit trail's guarantees cost: nbprod.audit.record vs a plain SQLAlchemy insert.

The peer is the obvious alternative, an unchained ``INSERT`` of the same row into the same SQLite
state DB (WAL mode, one transaction per row, like nbprod). nbprod adds the provenance look-up
(user, notebook, git), the write lock, the head read, the hash and the head update. Also timed:
``verify()`` over the whole log and ``history(model, limit)``.

    .venv/bin/python benchmarks/bench_audit.py [--rows 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()

    home = tempfile.mkdtemp(prefix="bench-audit-")
    # Record from inside a git repository, as a notebook in a project would: the git commit and
    # dirty flag are part of every row's cost.
    repo = os.path.join(home, "repo")
    os.makedirs(repo)
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", "-c", "user.email=b@example.com", "-c", "user.name=b", *cmd], cwd=repo, check=True)
    os.chdir(repo)
    os.environ["NBPROD_HOME"] = home
    os.environ.pop("NBPROD_DB_URL", None)
    import sqlalchemy as sa

    from nbprod import audit, state

    eng = state.engine()
    plain = sa.Table("plain_log", sa.MetaData(), *[sa.Column(c.name, c.type, primary_key=c.primary_key)
                                                  for c in state.audit_log.columns])
    plain.metadata.create_all(eng)

    def peer(i: int) -> None:
        with eng.begin() as conn:
            conn.execute(plain.insert().values(
                seq=i, timestamp=datetime.now(timezone.utc).isoformat(), user="bench", host="h", action="register",
                model="m", model_uri=f"models:/m/{i}", details=json.dumps({"i": i}), notebook=None,
                git_commit=None, git_dirty=None, prev_hash="", hash=""))

    def ours(i: int) -> None:
        audit.record("register", model_uri=f"models:/m/{i}", details={"i": i})

    results: dict[str, list[float]] = {"plain insert": [], "audit.record": [], "verify": [], "history": []}
    seq = 0
    for _ in range(opts.repeats):
        for label, fn in (("plain insert", peer), ("audit.record", ours)):
            start = time.perf_counter()
            for _ in range(opts.rows):
                seq += 1
                fn(seq)
            results[label].append((time.perf_counter() - start) / opts.rows)
        start = time.perf_counter()
        assert audit.verify().ok
        results["verify"].append(time.perf_counter() - start)
        start = time.perf_counter()
        audit.history("m", limit=20)
        results["history"].append(time.perf_counter() - start)

    med = {k: statistics.median(v) for k, v in results.items()}
    total = opts.rows * opts.repeats
    print(f"Python {sys.version.split()[0]}, SQLAlchemy {sa.__version__}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} cores; provenance from a git repository with one commit")
    print(f"plain insert   median {med['plain insert'] * 1e3:.3f} ms/row")
    print(f"audit.record   median {med['audit.record'] * 1e3:.3f} ms/row  "
          f"(ratio {med['audit.record'] / med['plain insert']:.2f}x the plain insert)")
    print(f"verify()       median {med['verify'] * 1e3:.1f} ms for up to {total} rows "
          f"(last run: {total} rows, {results['verify'][-1] * 1e6 / total:.1f} us/row)")
    print(f"history(m, 20) median {med['history'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
