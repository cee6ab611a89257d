"""Verbs of the monitoring capability: ``monitor`` and ``feedback`` (see nbprod.commands)."""

from __future__ import annotations

import argparse
import json
import os

from . import Command, Context, UsageProblem

WEBHOOK_ENV = "NBPROD_ALERT_WEBHOOK"


def _monitor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("deployment", help="deployment name (or model name / URI served with nbprod serve)")
    p.add_argument("--window", default="1h", help="window length: 15m, 1h, 1d … (default 1h)")
    p.add_argument("--since", help="start: ISO time, Unix seconds, or 24h for 24 hours ago (default: 24 windows ago)")
    p.add_argument("--until", help="end (default: now)")
    p.add_argument("--reference", help="drift reference: a profile.json, a model URI or a data file "
                                       "(default: the serving version's training profile)")
    p.add_argument("--min-rows", type=int, default=30,
                   help="rows a window needs for drift and performance (default 30)")
    p.add_argument("--check", action="store_true",
                   help="evaluate the alert rules, post new alerts to the webhook, exit 1 while any rule fires")
    p.add_argument("--rules", metavar="FILE", help="alert rules file: one rule per line, e.g. p95_ms > 100")
    p.add_argument("--rule", action="append", default=[], metavar="RULE",
                   help="an alert rule (repeatable): 'drift_share > 0.3', 'error_rate > 1%%', 'roc_auc < 0.8'")
    p.add_argument("--webhook", help=f"Slack-compatible webhook URL for alerts (default: ${WEBHOOK_ENV})")
    p.add_argument("--on-alert", nargs=2, action="append", default=[], metavar=("RULE", "PIPELINE"),
                   help="with --check: when RULE fires, start the pipeline file with the alert's window as "
                        "parameters (once per incident, never two at once; repeatable)")
    p.add_argument("--include-gate", action="store_true",
                   help="count the latency gate's test requests too (left out by default: not production traffic)")
    p.add_argument("--interval", type=float, default=30.0,
                   help="notebook panel: seconds between live refreshes (0 = no live refresh)")


def _run_monitor(args: argparse.Namespace, ctx: Context):
    from ..monitoring.alerts import check_deployment, parse_rules

    rules = parse_rules(args.rule, path=args.rules) if (args.rule or args.rules) else []
    on_fire = None
    if args.on_alert:
        from ..pipelines.trigger import on_fire as retraining

        if not args.check:
            raise UsageProblem("--on-alert acts when a rule fires: it needs --check",
                               "add --check (cron: nbprod monitor NAME --check --on-alert RULE FILE)")
        rules = parse_rules([r.text for r in rules] + [rule for rule, _ in args.on_alert])
        on_fire = retraining(args.on_alert)
    if args.check and not rules:
        raise UsageProblem("--check needs alert rules", "add --rule 'p95_ms > 100' (repeatable) or --rules FILE")
    if args.min_rows < 1:
        raise UsageProblem("--min-rows must be at least 1", "use e.g. --min-rows 30")
    reference = args.reference
    if reference is not None and ctx.lookup(reference) is not None:
        reference = ctx.lookup(reference)
    options = dict(window=args.window, since=args.since, min_rows=args.min_rows)
    if reference is not None:
        options["reference"] = reference
    if args.include_gate:
        options["include_gate"] = True
    if ctx.front_end == "magic" and not args.check:
        from ..monitoring.widget import panel

        return panel(args.deployment, rules=[r.text for r in rules], interval=args.interval or None,
                     until=args.until, **options)
    if args.check:  # the same path as the server's background alert loop (nbprod.monitoring.loop)
        return check_deployment(args.deployment, rules, webhook=args.webhook or os.environ.get(WEBHOOK_ENV) or None,
                                until=args.until, on_fire=on_fire, **options)
    from ..monitoring.monitor import monitor

    return monitor(args.deployment, until=args.until, **options)


def _feedback_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="a data file (or notebook DataFrame) with prediction ids and labels")
    p.add_argument("--id-column", default="prediction_id", help="column of prediction ids (default prediction_id)")
    p.add_argument("--label-column", default="label", help="column of true labels (default label)")
    p.add_argument("--id", action="append", default=[], dest="ids", metavar="PREDICTION_ID",
                   help="one prediction id (repeatable, paired with --label)")
    p.add_argument("--label", action="append", default=[], dest="labels", metavar="LABEL",
                   help="its true label (JSON: 1, 0.5, \"yes\")")


def _label(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run_feedback(args: argparse.Namespace, ctx: Context):
    from ..monitoring.feedback import feedback

    if args.source is None and not args.ids:
        raise UsageProblem("no feedback given",
                           "pass a file with prediction_id and label columns, or --id ID --label L")
    if args.source is not None and args.ids:
        raise UsageProblem("give either a file or --id/--label pairs, not both", "use one of the two")
    if args.source is None:
        if len(args.ids) != len(args.labels):
            raise UsageProblem(f"{len(args.ids)} --id but {len(args.labels)} --label", "pair every --id with a --label")
        return feedback(args.ids, [_label(v) for v in args.labels])
    frame = ctx.frame(args.source)
    missing = [c for c in (args.id_column, args.label_column) if c not in frame.columns]
    if missing:
        columns = ", ".join(map(str, frame.columns))
        raise UsageProblem(f"{args.source} has no column(s) {', '.join(map(repr, missing))}",
                           f"name them with --id-column / --label-column (columns: {columns})")
    return feedback(frame[args.id_column].astype(str).tolist(), frame[args.label_column].tolist())


COMMANDS = [
    Command(
        name="monitor",
        help="drift, realised performance, latency and errors of a deployment over time windows; alerts with --check",
        arguments=_monitor_arguments,
        run=_run_monitor,
        examples=[
            "nbprod monitor credit --window 1h",
            "nbprod monitor credit --check --rule 'p95_ms > 100' --rule 'error_rate > 1%' --webhook $SLACK_URL",
            "nbprod monitor credit --check --rules alerts.txt   # cron / papermill: exit 1 while a rule fires",
            "nbprod monitor credit --check --on-alert 'drift_share > 0.3' notebooks/pipeline.yaml   # retrain",
            "%nbprod monitor credit          (in a notebook: the live panel)",
        ],
    ),
    Command(
        name="feedback",
        help="store ground truth for earlier predictions, joined by prediction id (unknown ids are reported)",
        arguments=_feedback_arguments,
        run=_run_feedback,
        examples=[
            "nbprod feedback labels.csv --id-column prediction_id --label-column default",
            "nbprod feedback --id 4f2c…-0 --label 1",
        ],
    ),
]
