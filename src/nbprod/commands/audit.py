"""Verbs of the audit capability (see nbprod.commands): ``audit [model] [--verify] [--limit N]``."""

from __future__ import annotations

import argparse

from . import Command, Context

__all__ = ["COMMANDS"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?",
                   help="only this model's rows: a name or any model URI (credit-risk, models:/credit-risk/3)")
    p.add_argument("--verify", action="store_true",
                   help="check the whole hash chain instead; exits 1 when it is broken")
    p.add_argument("--anchor",
                   help="with --verify: a '<seq>:<hash>' head kept from an earlier verify "
                        "that must still be in the chain")
    p.add_argument("--limit", type=int, help="show only the newest N rows")


def _run(args: argparse.Namespace, ctx: Context):
    from .. import audit

    if args.verify:
        return audit.verify(anchor=args.anchor)
    return audit.history(args.model, limit=args.limit)


COMMANDS = [
    Command(
        name="audit",
        help="show the audit trail of a model, or verify its hash chain",
        description="Who did what to which model, from which notebook and git commit: the append-only, "
                    "hash-chained audit log. --verify recomputes the chain and exits 1 when a row was "
                    "edited, inserted or deleted.",
        arguments=_arguments,
        run=_run,
        examples=["nbprod audit credit-risk --limit 20", "nbprod audit --verify", "%nbprod audit credit-risk"],
    ),
]
