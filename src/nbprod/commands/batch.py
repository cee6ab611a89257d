"""Verbs past one machine, on Dask (see nbprod.commands): ``score``, ``sweep``."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["COMMANDS", "add_dask_argument", "data_on"]

DASK_HELP = ("Dask scheduler to run on, e.g. tcp://scheduler:8786 (default: Dask's local scheduler, in this "
             "process); workers must see the model directory and the paths")


def add_dask_argument(p) -> None:
    """``--dask ADDRESS`` for verbs that take data (profile, validate, expect, drift)."""
    p.add_argument("--dask", metavar="ADDRESS",
                   help="read the data as a dask frame (a parquet file or directory) and work partition by "
                        "partition on this scheduler (tcp://host:8786, or 'local' for Dask's local scheduler)")


@contextlib.contextmanager
def data_on(args, ctx, token: str) -> Iterator[Any]:
    """The data ``token`` names: a frame as before; with ``--dask``, a notebook's dask frame or the
    parquet at that path as a dask frame, with the scheduler open while the verb runs."""
    address = getattr(args, "dask", None)
    if not address:
        yield ctx.frame(token)
        return
    from .._dask import session

    value = ctx.lookup(token)
    with session(address):
        if value is None:
            from pathlib import Path

            import dask.dataframe as dd

            from ..batch.parts import parquet_files

            parquet_files(Path(token))  # a clear error for a missing path or one without parquet parts
            value = dd.read_parquet(token)
        yield value


def _score_arguments(p) -> None:
    p.add_argument("model", help="registered model URI (credit@champion, models:/credit/3) or a model directory")
    p.add_argument("input", help="a parquet file or a directory of parquet parts (in a notebook: also a DataFrame)")
    p.add_argument("output", nargs="?",
                   help="a .parquet file, or a directory of parts (any other path); in a notebook, leave it out "
                        "to get the scored rows back")
    p.add_argument("--dask", metavar="ADDRESS", help=DASK_HELP)
    p.add_argument("--on-bad-rows", choices=["reject", "fail"], default="reject",
                   help="reject: write refused rows with their reason to the reject file and score the rest; "
                        "fail: stop at the first (default: reject)")
    p.add_argument("--rejects", metavar="PATH", help="reject file (default: <output>.rejects.parquet)")
    p.add_argument("--batch-rows", type=int, default=100_000, help="rows a worker holds at a time (default 100000)")
    p.add_argument("--no-probabilities", action="store_true", help="leave out the proba_<class> columns")
    p.add_argument("--no-log", action="store_true", help="do not feed the prediction log")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _score_run(args, ctx):
    from ..batch.score import score

    data = ctx.lookup(args.input)
    if data is None:
        data = args.input
    return score(args.model, data, args.output, dask=args.dask, on_bad_rows=args.on_bad_rows, rejects=args.rejects,
                 batch_rows=args.batch_rows, probabilities=not args.no_probabilities, log=not args.no_log,
                 progress=not args.no_progress, overwrite=args.overwrite)


def _sweep_arguments(p) -> None:
    p.add_argument("notebook", help="the training notebook (its parameters cell takes the grid's names)")
    p.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2",
                   help="a parameter and its values; repeat for more parameters (every combination runs)")
    p.add_argument("--dask", metavar="ADDRESS", help=DASK_HELP)
    p.add_argument("--metric", help="the metric to chart and rank (default: the first one the jobs log)")
    p.add_argument("--experiment", help="MLflow experiment of the jobs")
    p.add_argument("--timeout", type=float, help="per-cell timeout of each job, in seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sweep_run(args, ctx):
    from ..batch.sweep import parse_grid, sweep

    return sweep(args.notebook, parse_grid(args.grid), dask=args.dask, metric=args.metric,
                 experiment=args.experiment, timeout=args.timeout, progress=not args.no_progress)


COMMANDS = [
    {"name": "sweep", "help": "run a notebook over a grid of parameters as tracked jobs, in parallel (Dask)",
     "arguments": _sweep_arguments, "run": _sweep_run,
     "examples": ["nbprod sweep train.ipynb --grid alpha=0.1,0.3,1.0 --grid l1_ratio=0.2,0.5",
                  "nbprod sweep train.ipynb --grid C=0.1,1,10 --dask tcp://scheduler:8786 --metric roc_auc"]},
    {"name": "score", "help": "score a parquet file or directory with a registered model, in partitions (Dask)",
     "arguments": _score_arguments, "run": _score_run,
     "examples": ["nbprod score credit@champion input.parquet output.parquet",
                  "nbprod score credit@champion s3-mount/input/ scored/ --dask tcp://scheduler:8786",
                  "%nbprod score credit@champion df_today"]},
]


def _as_commands(specs):
    from . import Command

    return [Command(**spec) for spec in specs]


COMMANDS = _as_commands(COMMANDS)
