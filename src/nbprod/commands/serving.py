"""Verbs of the serving capability (see nbprod.commands)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from . import Command, Context, UsageProblem

if TYPE_CHECKING:
    from .results import ServeResult

TOKEN_ENV = "NBPROD_TOKEN"


def _arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model-dir", help="an MLflow model directory (the packaged bundle's ./model)")
    what.add_argument("--model", help="a registered model URI: credit-risk@champion, credit-risk/3, models:/…")
    what.add_argument("--deployment", help="a deployment recorded in the state DB (follows its traffic changes)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--token",
                   help=f"bearer token clients must send (default: ${TOKEN_ENV}, else one is generated and printed)")
    p.add_argument("--no-auth", action="store_true", help="serve without auth (local experiments only)")
    p.add_argument("--ood", choices=["flag", "reject"], default="flag",
                   help="out-of-distribution rows: flag them in the answer, or reject with 400")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (504 after)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="request body limit in MB (413 above)")
    p.add_argument("--no-fastpath", action="store_true", help="always predict through MLflow pyfunc")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.add_argument("--alert-rule", action="append", metavar="RULE",
                   help="alert rule the server checks in the background (repeatable), e.g. 'p95_ms > 100' "
                        "(default: $NBPROD_ALERT_RULES, rules separated by ';')")
    p.add_argument("--alert-webhook", metavar="URL",
                   help="Slack-compatible webhook for alerts (default: $NBPROD_ALERT_WEBHOOK)")
    p.add_argument("--alert-interval", metavar="SECONDS",
                   help="seconds between alert checks, at least 0.1 (default: $NBPROD_ALERT_INTERVAL, else 60)")
    p.add_argument("--on-alert", nargs=2, action="append", metavar=("RULE", "PIPELINE"),
                   help="retrain from an alert: when RULE fires, start the pipeline file (once per incident, "
                        "never two at once, 1 h cooldown: $NBPROD_ALERT_PIPELINE_COOLDOWN); repeatable")


def _run(args: argparse.Namespace, ctx: Context) -> ServeResult:
    from ..service import check_models, serve
    from ..serving.server import check_address, check_workers
    from ..serving.spec import DbSource, DeploymentSpec, StaticSource
    from .results import ServeResult

    check_workers(args.workers)  # arguments: said before any model is looked up, and before the token is shown
    check_address(args.host, args.port)

    source: DbSource | StaticSource
    if args.deployment:
        source, label = DbSource(args.deployment), f"deployment {args.deployment}"
    else:
        model = args.model_dir or args.model
        if model is None:
            if os.path.isfile(os.path.join("model", "MLmodel")):
                model = "model"  # run from the bundle directory
            else:
                raise UsageProblem("nothing to serve", "pass --model-dir DIR, --model NAME@ALIAS or --deployment NAME")
        spec = DeploymentSpec.single(model, ood=args.ood, timeout_s=args.timeout,
                                     max_body_bytes=int(args.max_body_mb * 1024 * 1024), fastpath=not args.no_fastpath)
        source, label = StaticSource(spec), model
        check_models(source)  # before the token is printed: a typo is the one thing shown (serve checks again)
    token = None
    if not args.no_auth:
        token = args.token or os.environ.get(TOKEN_ENV)
        if token is None and not args.deployment:
            import secrets

            token = secrets.token_urlsafe(24)
            print(f"nbprod serve: bearer token (shown once): {token}", file=sys.stderr, flush=True)
    url = f"http://{args.host}:{args.port}"
    if args.deployment:  # the state DB says where this deployment serves now (nbprod status / restore)
        from ..deployments.store import record_server

        record_server(args.deployment, args.host, args.port, os.getpid())
    print(f"nbprod serve: {label} on {url} ({args.workers} worker(s))", file=sys.stderr, flush=True)
    serve(source, host=args.host, port=args.port, workers=args.workers, token=token, auth=not args.no_auth,
          log_level=args.log_level, alert_rules=args.alert_rule, alert_webhook=args.alert_webhook,
          alert_interval=args.alert_interval, alert_pipelines=args.on_alert)
    return ServeResult(url, label)


COMMANDS = [
    Command(
        name="serve",
        help="serve a model or a deployment over HTTP (MLflow /invocations and Open Inference Protocol v2)",
        arguments=_arguments,
        run=_run,
        examples=[
            "nbprod serve --model-dir ./model --port 8080 --host 0.0.0.0",
            "nbprod serve --model credit-risk@champion --no-auth",
            "nbprod serve --deployment credit --workers 2",
            "nbprod serve --deployment credit --alert-rule 'p95_ms > 100' --alert-rule 'drift_share > 0.3' "
            "--alert-webhook URL",
            "nbprod serve --deployment credit --on-alert 'drift_share > 0.3' notebooks/pipeline.yaml "
            "--alert-webhook URL   # retraining from an alert",
        ],
    )
]
