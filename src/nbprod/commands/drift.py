"""Verbs of the drift capability (see nbprod.commands)."""

from __future__ import annotations

from .batch import add_dask_argument, data_on

__all__ = ["COMMANDS"]


def _arguments(p) -> None:
    p.add_argument("reference",
                   help="training profile (variable or profile.json), model URI (credit@champion) or data file")
    p.add_argument("current", help="current data: a DataFrame variable or a .parquet/.csv/.json file")
    p.add_argument("--fail-on-drift", action="store_true",
                   help="exit 1 when the dataset drifted or a column's type changed (for CI gates)")
    p.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report (summaries only)")
    p.add_argument("--drift-share", type=float, default=0.5, help="share of drifted columns that means dataset drift")
    p.add_argument("--columns", help="comma-separated columns to test (default: every reference column)")
    p.add_argument("--prediction", help="the prediction column (prediction drift)")
    p.add_argument("--target", help="the label column (label drift)")
    add_dask_argument(p)


def _run(args, ctx):
    from ..driftstats import drift

    reference = ctx.lookup(args.reference)
    if reference is None:
        reference = args.reference
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    with data_on(args, ctx, args.current) as current:  # with --dask: the partitions' uniform sample, on Dask
        report = drift(reference, current, columns=columns, drift_share=args.drift_share,
                       prediction=args.prediction, target=args.target)
    report.fail_on_drift = bool(args.fail_on_drift)
    if args.html:
        report.to_html(args.html)
    return report


COMMANDS = [
    {"name": "drift", "help": "compare current data with a training profile, a model's profile or a reference frame",
     "arguments": _arguments, "run": _run,
     "examples": ["nbprod drift profile.json today.parquet --fail-on-drift --html drift.html",
                  "%nbprod drift credit@champion df_today"]},
]


def _as_commands(specs):
    from . import Command

    return [Command(**spec) for spec in specs]


COMMANDS = _as_commands(COMMANDS)
