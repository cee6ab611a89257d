"""Notebook jobs: what ``nbprod run`` costs over bare papermill, and ``nbprod runs`` over 1,000 jobs.

Issue 14's goals: the overhead of ``nbprod run`` over ``papermill.execute_notebook`` on the same
small notebook, in the same run, under +0.5 s per job all-in (MLflow run, parameters, environment
capture from a cached digest — no ``pip freeze`` —, executed copy + HTML + source + cell times as
artefacts, models/metrics read back); ``nbprod runs`` over 1,000 recorded jobs under 0.5 s.

Both sides execute the same three-cell notebook on the same ``python3`` kernel, interleaved
(papermill, nbprod, papermill, nbprod, …) after one warm-up each, so kernel start-up and machine
load hit both alike. Also timed: the two command lines (``papermill in.ipynb out.ipynb`` and
``nbprod run``), each a fresh process, where nbprod's per-process costs (importing MLflow, the
first HTML rendering) count too. Then 1,000 job runs are recorded in the store and
``nbprod.runs()`` (the default 50 and all 1,000) and the ``nbprod runs`` command are timed.

    .venv/bin/python benchmarks/bench_jobs.py [--runs 7] [--jobs 1000] [--cli-runs 5]
    .venv/bin/python benchmarks/bench_jobs.py --runs 0 --jobs 0 --cli-runs 7   # the command lines only
    .venv/bin/python benchmarks/bench_jobs.py --runs 0 --jobs 0 --notebook notebooks/train.ipynb

The command lines run after one untimed warm-up each (file-system caches), interleaved
(papermill, nbprod, papermill, …); the load average is printed before and after, since on a
shared machine both sides slow down with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _notebook(path: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("total = sum(i * alpha for i in range(1000))"),
                             new_code_cell("print(total)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


_cpu: dict[str, list[float]] = {}


def _timed_cli(label: str, cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command line; its CPU seconds (user + system, with the kernel and any
    helper process it waited for) are kept under ``label``: less sensitive to a loaded machine."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = _time(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _cpu.setdefault(label, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def _record_jobs(n: int) -> None:
    """n finished jobs as ``nbprod run`` records them (tags, params, metrics), without kernels."""
    from mlflow.entities import Metric, Param, RunTag

    from nbprod.registry.store import client, experiment_id

    c = client()
    exp = experiment_id(c)
    now = int(time.time() * 1000)
    for i in range(n):
        rid = c.create_run(exp, run_name="train", tags={"nbprod.kind": "job", "nbprod.notebook": "/x/train.ipynb",
                                                          "nbprod.status": "FINISHED"}).info.run_id
        c.log_batch(rid, metrics=[Metric("roc_auc", 0.8 + i / 1e5, now, 0), Metric("accuracy", 0.7, now, 0)],
                    params=[Param("C", str(i)), Param("seed", "0")],
                    tags=[RunTag("nbprod.parameters", json.dumps({"C": i, "seed": 0})),
                          RunTag("nbprod.models", f"credit-risk/{i + 1}"), RunTag("nbprod.kernel", "python3")])
        c.set_terminated(rid, "FINISHED")


def _print_sides(peer: tuple[str, list[float]], ours: tuple[str, list[float]]) -> float:
    """Print each side's median and runs, then nbprod's overhead per job and ratio; the peer's median."""
    (peer_label, peer_runs), (our_label, our_runs) = peer, ours
    p, o = statistics.median(peer_runs), statistics.median(our_runs)
    for label, med, times in ((peer_label, p, peer_runs), (our_label, o, our_runs)):
        print(f"  {label:<29}{med:.3f} s   runs: {', '.join(f'{t:.2f}' for t in times)}")
    print(f"  {'overhead per job':<29}{o - p:+.3f} s   (goal < +0.5 s)   ratio {o / p:.2f}x")
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="in-process jobs per side (0: skip)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs recorded for `nbprod runs` (0: skip)")
    parser.add_argument("--cli-runs", type=int, default=None, help="fresh processes per side (default runs // 2, >= 3)")
    parser.add_argument("--notebook", help="the notebook for the command lines (default: the small one)")
    parser.add_argument("--baseline-src", help="also time `nbprod run` from this src/ folder (an older nbprod, "
                                               "e.g. `git archive OLD src | tar -x -C /tmp/old`), interleaved")
    args = parser.parse_args()
    load_before = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    os.environ["NBPROD_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import mlflow
    import papermill

    import nbprod
    from nbprod.jobs import run, runs

    nb = _notebook(work / "small.ipynb")
    out = work / "papermill-out.ipynb"

    def bare():
        papermill.execute_notebook(str(nb), str(out), parameters={"alpha": 2}, kernel_name="python3",
                                   progress_bar=False, cwd=str(work))

    def ours():
        run(nb, {"alpha": 2}, progress=False)

    pm: list[float] = []
    nj: list[float] = []
    if args.runs:
        bare(), ours()  # warm-up: kernel spec lookup, store migrations, HTML templates, environment digest
        for _ in range(args.runs):
            pm.append(_time(bare))
            nj.append(_time(ours))

    env = {**os.environ}
    cli_nb_path = Path(args.notebook).resolve() if args.notebook else nb
    cli_out = work / "papermill-cli-out.ipynb"
    papermill_cli = [str(Path(sys.executable).parent / "papermill"), str(cli_nb_path), str(cli_out),
                     "-k", "python3", "--no-progress-bar", "--cwd", str(cli_nb_path.parent)]
    nbprod_cli = [sys.executable, "-m", "nbprod.cli", "run", str(cli_nb_path), "--no-progress"]
    if not args.notebook:
        papermill_cli[3:3] = ["-p", "alpha", "2"]
        nbprod_cli += ["-p", "alpha", "2"]
    old_env = {**env, "PYTHONPATH": str(Path(args.baseline_src).resolve())} if args.baseline_src else None
    cli_pm: list[float] = []
    cli_nb: list[float] = []
    cli_old: list[float] = []
    cli_runs = args.cli_runs if args.cli_runs is not None else max(3, args.runs // 2)
    if cli_runs:
        for cmd, e in [(papermill_cli, env), (nbprod_cli, env)] + ([(nbprod_cli, old_env)] if old_env else []):
            subprocess.run(cmd, check=True, capture_output=True, env=e)  # warm-up, untimed
    for _ in range(cli_runs):
        cli_pm.append(_timed_cli("papermill", papermill_cli, env))
        cli_nb.append(_timed_cli("nbprod", nbprod_cli, env))
        if old_env:
            cli_old.append(_timed_cli("baseline", nbprod_cli, old_env))

    total, list50, list_all, cli_list = 0, [], [], []
    if args.jobs:
        _record_jobs(args.jobs)
        total = len(runs(limit=args.jobs + 100))
        list50 = [_time(lambda: runs()) for _ in range(7)]
        list_all = [_time(lambda: runs(limit=args.jobs + 100)) for _ in range(5)]
        cli_list = [_time(lambda: subprocess.run([sys.executable, "-m", "nbprod.cli", "runs"], check=True,
                                                 capture_output=True, env=env)) for _ in range(3)]

    load = os.getloadavg()
    print(f"nbprod {nbprod.__version__}, papermill {papermill.__version__}, mlflow {mlflow.__version__}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average (1/5/15 min) "
          f"{'/'.join(f'{x:.1f}' for x in load_before)} before, {'/'.join(f'{x:.1f}' for x in load)} after")
    if pm:
        print(f"in one process, median of {args.runs} (interleaved):")
        _print_sides(("papermill.execute_notebook", pm), ("nbprod.run", nj))
    if cli_pm:
        print(f"command lines on {cli_nb_path.name}, fresh process each, median of {len(cli_pm)} (interleaved):")
        cp = _print_sides(("papermill CLI", cli_pm), ("nbprod run", cli_nb))
        if cli_old:
            co = statistics.median(cli_old)
            print(f"  nbprod run from {args.baseline_src}: {co:.3f} s   runs: {', '.join(f'{t:.2f}' for t in cli_old)}"
                  f"   overhead {co - cp:+.3f} s   ratio {co / cp:.2f}x")
        cpu = {k: statistics.median(v) for k, v in _cpu.items()}
        print("  CPU seconds (user + system, process tree incl. kernel), median: "
              + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
              + f"   nbprod/papermill {cpu['nbprod'] / cpu['papermill']:.2f}x")
    if list50:
        print(f"nbprod runs with {total} jobs recorded:")
        print(f"  nbprod.runs() (50 newest)    {statistics.median(list50):.3f} s   (goal < 0.5 s)")
        print(f"  nbprod.runs(limit=all)       {statistics.median(list_all):.3f} s")
        print(f"  `nbprod runs` (fresh process) {statistics.median(cli_list):.3f} s")


if __name__ == "__main__":
    main()
