"""Verbs for notebook jobs: ``run``, ``rerun``, ``runs``, ``diff``, ``inspect``, ``check`` and ``demo``.

A notebook that fails is not a usage error: ``nbprod run`` exits 1 and prints the recorded
job (its status, the user's failing cell, the executed copy); 2 is kept for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import NbprodError
from . import Command, Context, UsageProblem
from ._shared import add_parameter_option, parse_parameters, positionals


def _progress(args: argparse.Namespace, ctx: Context):
    if args.no_progress:
        return False
    return "widget" if ctx.front_end == "magic" else True


def _job(call):
    """Run a job; its notes go to stderr once, a failed job is returned (exit 1), not raised."""
    from ..jobs import JobFailed, JobWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", JobWarning)
        try:
            result = call()
        except JobFailed as exc:
            result = exc.result
            print(f"nbprod: {exc.problem}\n  Fix: {exc.fix}", file=sys.stderr)
        finally:
            for w in caught:
                if issubclass(w.category, JobWarning):
                    print(f"nbprod: warning: {w.message}", file=sys.stderr)
    return result


def _run(args: argparse.Namespace, ctx: Context):
    from ..jobs import run

    return _job(lambda: run(args.notebook, parse_parameters(args.parameters), parameters_file=args.parameters_file,
                            experiment=args.experiment, output=args.output, kernel=args.kernel,
                            progress=_progress(args, ctx), timeout=args.timeout, retries=args.retries))


def _common(p: argparse.ArgumentParser) -> None:
    add_parameter_option(p)
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="per-cell time limit (default: none)")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="re-run the job up to N times when its kernel dies, with backoff (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file to execute")
    _common(p)
    p.add_argument("-f", "--parameters-file", metavar="FILE", help="YAML file of parameters (-p wins over it)")
    p.add_argument("-e", "--experiment", help="MLflow experiment to record the job in (default: nbprod)")
    p.add_argument("-o", "--output", help="where to write the executed copy (default: $NBPROD_HOME/runs/)")
    p.add_argument("-k", "--kernel", help="kernel name (default: the notebook's, or this Python if it is unknown here)")


def _rerun(args: argparse.Namespace, ctx: Context):
    from ..jobs import rerun

    return _job(lambda: rerun(args.run_id, parse_parameters(args.parameters),
                              allow_changed_inputs=args.allow_changed_inputs, progress=_progress(args, ctx),
                              timeout=args.timeout, retries=args.retries))


def _rerun_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", help="the job to re-run (its id, a unique prefix is enough)")
    _common(p)
    p.add_argument("--allow-changed-inputs", action="store_true",
                   help="run even when a tracked input no longer has the recorded hash")


def _runs(args: argparse.Namespace, ctx: Context):
    from ..jobs import runs

    return runs(limit=args.limit, notebook=args.notebook, as_json=args.json)


def _runs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="how many jobs, newest first (default 50)")
    p.add_argument("--notebook", help="only jobs of this notebook (file name)")
    p.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")


def _diff(args: argparse.Namespace, ctx: Context):
    from ..jobs import diff

    return diff(args.run_a, args.run_b)


def _inspect(args: argparse.Namespace, ctx: Context):
    from ..jobs import inspect

    return inspect(args.notebook)


def _check(args: argparse.Namespace, ctx: Context):
    from ..jobs import check

    return check(args.notebook)


def _demo(args: argparse.Namespace, ctx: Context):
    from ..jobs import run
    from .results import DemoSummary

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise UsageProblem(f"no quickstart notebook at {notebook}",
                           "run `make demo` from the nbprod repository root, or pass --notebook")
    before = _running()
    try:
        result = run(notebook, progress=True)
    except NbprodError:
        _stop_started_since(before)
        raise
    return DemoSummary(result)


def _running() -> dict[str, int | None]:
    """Deployments of this nbprod home not recorded as stopped, with their server's pid."""
    from ..deployments import store

    found = {name: store.read(name) for name in store.names()}
    return {name: rec[1]["pid"] for name, rec in found.items() if rec and rec[1]["status"] != "stopped"}


def _stop_started_since(before: dict[str, int | None]) -> None:
    """A demo that fails part-way never reaches its undeploy cell: stop the servers it started
    (detached, they would outlive it), and leave alone those that ran before it."""
    from ..deployments.api import undeploy

    for name, pid in _running().items():
        if name not in before or before[name] != pid:
            undeploy(name)


_NOTEBOOK = positionals(("notebook", "the .ipynb file"))


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notebook", default="notebooks/quickstart.ipynb", help="the quickstart notebook")


COMMANDS = [
    Command(
        name="run",
        help="execute a notebook as a tracked, reproducible job (papermill + MLflow)",
        description="Execute a notebook on a real kernel with parameters, as one MLflow run: parameters, the "
                    "notebook's own metrics and models, the executed copy (+ HTML), per-cell times, the environment, "
                    "git commit and tracked inputs. Exit status: 0 finished, 1 the notebook failed, 2 usage error.",
        arguments=_arguments,
        run=_run,
        examples=["nbprod run train.ipynb -p alpha 0.1 -p name credit-risk",
                  "nbprod run train.ipynb -f params.yaml --timeout 600 --retries 2 --experiment credit"],
    ),
    Command(
        name="rerun",
        help="re-run a recorded job (its notebook and parameters) and compare it with the original",
        arguments=_rerun_arguments,
        run=_rerun,
        examples=["nbprod rerun 3f2a9c -p alpha 0.2"],
    ),
    Command(
        name="runs",
        help="list the recorded notebook jobs (status, duration, parameters, metrics, models)",
        arguments=_runs_arguments,
        run=_runs,
        examples=["nbprod runs", "nbprod runs --json | jq .metrics"],
    ),
    Command(
        name="diff",
        help="compare two jobs: parameters, metrics, environment, inputs",
        arguments=positionals(("run_a", "the first job's id (a unique prefix is enough)"),
                              ("run_b", "the second job's id")),
        run=_diff,
        examples=["nbprod diff 3f2a9c 81bd07"],
    ),
    Command(
        name="inspect",
        help="list the parameters a notebook declares (its 'parameters' cell)",
        arguments=_NOTEBOOK,
        run=_inspect,
        examples=["nbprod inspect train.ipynb"],
    ),
    Command(
        name="check",
        help="lint a notebook for reproducibility before handing it over (exit 1 on findings)",
        arguments=_NOTEBOOK,
        run=_check,
        examples=["nbprod check train.ipynb"],
    ),
    Command(
        name="demo",
        help="run the end-to-end quickstart notebook and print what it did",
        arguments=_demo_arguments,
        run=_demo,
    ),
]
