"""How much `import nbprod` and `%load_ext nbprod` cost, next to the libraries nbprod wraps.

Goals (issue 2): `import nbprod` < 0.15 s beyond a bare interpreter start, `%load_ext nbprod`
< 0.3 s in a running IPython. Each figure is the median of fresh processes, so nothing is cached
in the interpreter (the OS file cache is warm, as it is for a user).

    .venv/bin/python benchmarks/bench_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

TIMED = """
import time, sys
t0 = time.perf_counter()
{stmt}
print(time.perf_counter() - t0)
"""

LOAD_EXT = """
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
import time
t0 = time.perf_counter()
ip.run_line_magic("load_ext", "nbprod")
print(time.perf_counter() - t0)
"""


def wall(code: str, runs: int) -> float:
    """Median wall time of a whole interpreter running ``code`` (start-up included)."""
    import time

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inner(code: str, runs: int) -> float:
    """Median of the time a fresh interpreter reports for ``code`` itself."""
    def once() -> float:
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        return float(done.stdout.split()[-1])

    out = [once() for _ in range(runs)]
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    bare = wall("pass", runs)
    rows = [("bare interpreter start", bare, None)]
    for stmt in ("import nbprod", "import mlflow", "import papermill", "import pandas"):
        total = wall(stmt, runs)
        rows.append((stmt, total, total - bare))
    load = inner(LOAD_EXT, runs)
    print(f"{'what':32} {'wall (s)':>9} {'beyond bare start (s)':>22}")
    for what, total, extra in rows:
        print(f"{what:32} {total:9.3f} {'' if extra is None else f'{extra:22.3f}'}")
    print(f"{'%load_ext nbprod (in IPython)':32} {load:9.3f}")
    nbprod_extra = rows[1][2]
    mlflow_extra = rows[2][2]
    print(f"\nimport nbprod costs {nbprod_extra:.3f} s (goal < 0.15 s); "
          f"import mlflow costs {mlflow_extra:.3f} s, {mlflow_extra / max(nbprod_extra, 1e-3):.0f}x more")
    print(f"%load_ext nbprod: {load:.3f} s (goal < 0.3 s)")


if __name__ == "__main__":
    main()
