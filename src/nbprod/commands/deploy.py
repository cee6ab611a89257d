"""Verbs of the deployments capability: deploy, promote, rollback, undeploy, status (see nbprod.commands)."""

from __future__ import annotations

import argparse

from . import Command, Context, UsageProblem


def _split(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        version, sep, weight = part.partition("=")
        if not sep or not version.strip():
            raise UsageProblem(f"--split {text!r}: {part!r} is not VERSION=WEIGHT", "use e.g. --split 3=50,4=50")
        try:
            out[version.strip()] = float(weight)
        except ValueError:
            raise UsageProblem(f"--split {text!r}: weight {weight!r} is not a number",
                               "use e.g. --split 3=50,4=50") from None
    return out


def _deploy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("uri", nargs="?", help="registered model version: credit-risk@challenger, credit-risk/3")
    p.add_argument("--name", help="deployment name (default: the model's name)")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--canary", type=float, metavar="PCT", help="give the new version PCT %% of the traffic")
    how.add_argument("--shadow", action="store_true",
                     help="send the new version a copy of traffic (answers logged, never returned)")
    how.add_argument("--split", type=_split, metavar="V=W,…", help="A/B split, e.g. 3=50,4=50")
    p.add_argument("--ood", choices=["flag", "reject"],
                   help="out-of-distribution rows: flag (default) or reject with 400")
    p.add_argument("--no-auth", action="store_true", help="no bearer token (local experiments only)")
    p.add_argument("--workers", type=int,
                   help="server worker processes (default 1; a running deployment keeps its count)")
    p.add_argument("--budget-p95-ms", type=float, metavar="MS",
                   help="latency gate: refuse the version if its single-row p95 exceeds MS")
    p.add_argument("--restore", action="store_true", help="restart every recorded deployment whose server died")
    alerts = p.add_mutually_exclusive_group()
    alerts.add_argument("--alert-rule", action="append", metavar="RULE",
                        help="alert rule the server checks in the background (repeatable), e.g. 'p95_ms > 100'; "
                             "recorded with the deployment (default: the recorded rules)")
    alerts.add_argument("--no-alerts", action="store_true",
                        help="remove the deployment's recorded alert rules and on-alert pipelines")
    p.add_argument("--on-alert", nargs=2, action="append", metavar=("RULE", "PIPELINE"),
                   help="retrain from an alert: when RULE fires, the server starts the pipeline file (once per "
                        "incident, never two at once, 1 h cooldown); repeatable; recorded with the deployment "
                        "(default: the recorded ones)")
    p.add_argument("--alert-webhook", metavar="URL",
                   help="Slack-compatible webhook for alerts, never stored (default: $NBPROD_ALERT_WEBHOOK)")
    p.add_argument("--alert-interval", metavar="SECONDS",
                   help="seconds between alert checks, at least 0.1 (default 60, or the recorded one)")
    p.add_argument("--alert-window", metavar="DURATION", help="monitor window the rules are checked on (default 1h)")


def _deploy(args: argparse.Namespace, ctx: Context):
    from ..deployments.api import AlertSettings, ServerSettings, deploy, restore

    if args.restore:
        if args.uri is not None:
            raise UsageProblem(f"--restore restarts recorded deployments; it takes no model URI (got {args.uri!r})",
                               "nbprod deploy --restore [--name NAME], or deploy the URI without --restore")
        if args.alert_rule or args.no_alerts or args.alert_interval or args.alert_window or args.on_alert:
            raise UsageProblem("--restore restarts deployments with their recorded alert rules, interval, window "
                               "and on-alert pipelines",
                               "leave those out (--alert-webhook is fine), or deploy a version with the new settings")
        return restore(args.name, alert_webhook=args.alert_webhook)
    if args.uri is None:
        raise UsageProblem("nothing to deploy", "pass a model URI (nbprod deploy credit-risk@champion) or --restore")
    if args.no_alerts and args.on_alert:
        raise UsageProblem("--no-alerts removes the recorded alert settings; --on-alert records new ones",
                           "pass one of them")
    given = (args.alert_rule, args.no_alerts, args.alert_webhook, args.alert_interval, args.alert_window)
    alerts = None if not any(given) else AlertSettings(
        rules=[] if args.no_alerts else args.alert_rule, webhook=args.alert_webhook,
        interval=args.alert_interval, window=args.alert_window)
    server = ServerSettings(port=args.port, workers=args.workers, auth=not args.no_auth, ood=args.ood)
    on_alert = {} if args.no_alerts else args.on_alert  # None: keep the recorded ones
    return deploy(args.uri, name=args.name, canary=args.canary, shadow=args.shadow, split=args.split,
                  budget_p95_ms=args.budget_p95_ms, server=server, alerts=alerts, on_alert=on_alert)


def _name_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="deployment name")


def _promote_arguments(p: argparse.ArgumentParser) -> None:
    _name_argument(p)
    p.add_argument("--version", help="which candidate to promote when there are several (A/B split)")


def _promote(args: argparse.Namespace, ctx: Context):
    from ..deployments.api import promote

    return promote(args.name, version=args.version)


def _rollback(args: argparse.Namespace, ctx: Context):
    from ..deployments.api import rollback

    return rollback(args.name)


def _undeploy_arguments(p: argparse.ArgumentParser) -> None:
    _name_argument(p)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to drain before SIGKILL (default 10)")


def _undeploy(args: argparse.Namespace, ctx: Context):
    from ..deployments.api import undeploy

    return undeploy(args.name, timeout=args.timeout)


def _status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="one deployment (default: all)")


def _status(args: argparse.Namespace, ctx: Context):
    from ..deployments.api import status

    table = status(args.name)
    if ctx.front_end == "magic":  # in a notebook: the same table, shown with Promote / Roll back / Set split
        from ..widgets import StatusPanel

        return StatusPanel(table, args.name)
    return table


COMMANDS = [
    Command(name="deploy",
            help="run a registered model version as a local REST deployment, or add it as canary/shadow/split",
            arguments=_deploy_arguments, run=_deploy,
            examples=["nbprod deploy credit-risk@champion --name credit",
                      "nbprod deploy credit-risk@challenger --name credit --canary 5 --budget-p95-ms 50",
                      "nbprod deploy credit-risk --name credit --split 3=50,4=50",
                      "nbprod deploy credit-risk@champion --name credit --alert-rule 'p95_ms > 100' "
                      "--alert-rule 'drift_share > 0.3' --alert-webhook URL --alert-interval 60",
                      "nbprod deploy credit-risk@champion --name credit --on-alert 'drift_share > 0.3' "
                      "notebooks/pipeline.yaml",
                      "nbprod deploy --restore"]),
    Command(name="promote", help="send 100% of a deployment's traffic to its canary and set @champion",
            arguments=_promote_arguments, run=_promote, examples=["nbprod promote credit"]),
    Command(name="rollback", help="return all of a deployment's traffic to the previous stable version",
            arguments=_name_argument, run=_rollback, examples=["nbprod rollback credit"]),
    Command(name="undeploy", help="drain a deployment (finish in-flight requests) and stop its server",
            arguments=_undeploy_arguments, run=_undeploy, examples=["nbprod undeploy credit"]),
    Command(name="status", help="list deployments with live health (a dead server shows as dead)",
            arguments=_status_arguments,
            run=_status, examples=["nbprod status", "nbprod status credit"]),
]
