"""Verbs of the packaging capability (see nbprod.commands): ``package <uri> <out_dir>``."""

from __future__ import annotations

import argparse

from . import Command, Context

__all__ = ["COMMANDS"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("uri", help="the model version: credit-risk@challenger, models:/credit-risk/3, …")
    p.add_argument("out_dir", help="the bundle directory to write (must not exist or be empty, unless --overwrite)")
    p.add_argument("--canary", type=int, metavar="N",
                   help="KServe canaryTrafficPercent: send N%% of traffic to this version")
    p.add_argument("--image", help="image name the Kubernetes manifests run (default <model>:<version>)")
    p.add_argument("--replicas", type=int, default=2, help="minimum replicas (default 2)")
    p.add_argument("--max-replicas", type=int, help="autoscaling maximum (default max(5 × replicas, 10))")
    p.add_argument("--cpu", default="500m", help="CPU request and limit per replica (default 500m)")
    p.add_argument("--memory", default="1Gi", help="memory request and limit per replica (default 1Gi)")
    p.add_argument("--port", type=int, default=8080, help="port the container serves on (default 8080)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous bundle (a folder with bundle.json and only the files nbprod wrote)")


def _run(args: argparse.Namespace, ctx: Context):
    from ..packaging import package

    return package(args.uri, args.out_dir, canary_percent=args.canary, image=args.image, replicas=args.replicas,
                   max_replicas=args.max_replicas, cpu=args.cpu, memory=args.memory, port=args.port,
                   overwrite=args.overwrite)


COMMANDS = [
    Command(
        name="package",
        help="write a deployable bundle for a model version: Dockerfile, pinned requirements, Kubernetes/KServe",
        description="Write a self-contained bundle for a model version: the model with its sha256 manifest, "
                    "a Dockerfile running `nbprod serve`, requirements.txt pinned from this environment plus an "
                    "nbprod wheel, k8s/ Deployment + Service + HPA and a KServe InferenceService, and a README.",
        arguments=_arguments,
        run=_run,
        examples=["nbprod package credit-risk@challenger build/credit-risk",
                  "nbprod package credit-risk@challenger build/credit-risk --canary 10 "
                  "--image ghcr.io/acme/credit-risk:3",
                  "%nbprod package credit-risk@champion build/credit-risk --overwrite"],
    ),
]
