"""``pipeline``: plan, run, list, show and resume pipelines (``nbprod pipeline run pipeline.yaml``).

Exit status for cron and CI: 0 the pipeline finished, 1 a gate stopped it (the run is recorded,
production as it was), 2 an error (a bad file, a failing step, another runner holding it).
"""

from __future__ import annotations

import argparse
import sys

from . import Command, Context, UsageProblem
from ._shared import add_parameter_option, parse_parameters

ACTIONS = ("plan", "run", "runs", "show", "resume", "scheduler")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, help="plan FILE | run FILE | runs [NAME] | show RUN_ID | resume RUN_ID "
                                                   "| scheduler FILE…")
    p.add_argument("target", nargs="*", help="the pipeline file, a run id, or (runs) a pipeline name")
    add_parameter_option(p, "--param", dest="params",
                         help="override a parameter of the pipeline's params: (repeatable; value read as YAML)")
    p.add_argument("--json", action="store_true", help="runs: one JSON object per line (run_id, status, …)")
    p.add_argument("--once", action="store_true", help="scheduler: run what is due now, then exit")


def _one(args: argparse.Namespace, what: str) -> str:
    if len(args.target) != 1:
        raise UsageProblem(f"pipeline {args.action} takes one {what}", f"e.g. nbprod pipeline {args.action} "
                           + ("pipeline.yaml" if what == "file" else "RUN_ID"))
    return args.target[0]


def _progress(ctx: Context):
    if ctx.front_end != "magic":
        def line(run) -> None:
            current = next((s for s in run.steps if s["status"] == "running"), None)
            if current:
                print(f"nbprod: pipeline {run.pipeline}: {current['name']} ({current['kind']})…", file=sys.stderr)
        return line
    from IPython.display import HTML, display

    handle = display(HTML("<i>starting…</i>"), display_id=True)
    return lambda run: handle.update(HTML(run._repr_html_())) if handle is not None else None


def _pipeline(args: argparse.Namespace, ctx: Context):
    from .. import pipelines

    if args.action == "plan":
        return pipelines.plan(_one(args, "file"), parse_parameters(args.params))
    if args.action == "run":
        return pipelines.pipeline(_one(args, "file"), parse_parameters(args.params), progress=_progress(ctx))
    if args.action == "resume":
        return pipelines.resume(_one(args, "run id"), parse_parameters(args.params), progress=_progress(ctx))
    if args.action == "show":
        return pipelines.get_run(_one(args, "run id"))
    if args.action == "scheduler":
        from ..pipelines.scheduler import scheduler

        if not args.target:
            raise UsageProblem("pipeline scheduler needs pipeline files", "nbprod pipeline scheduler pipeline.yaml")
        return scheduler(args.target, once=args.once)
    if len(args.target) > 1:
        raise UsageProblem("pipeline runs takes at most one pipeline name", "nbprod pipeline runs [NAME] [--json]")
    return pipelines.runs(args.target[0] if args.target else None, as_json=args.json)


COMMANDS = [
    Command(name="pipeline", help="plan, run, list and resume pipelines of notebook steps and verbs, with gates",
            arguments=_arguments, run=_pipeline,
            examples=["nbprod pipeline plan notebooks/pipeline.yaml",
                      "nbprod pipeline run notebooks/pipeline.yaml -p C 0.5",
                      "nbprod pipeline runs --json",
                      "nbprod pipeline resume RUN_ID",
                      "nbprod pipeline scheduler notebooks/pipeline.yaml"]),
]
