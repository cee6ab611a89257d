"""Verbs of the audit capability (see nbprod.commands): ``audit [model] [--verify] [--limit N]``."""

from __future__ import annotations

import argparse

from . import Command, Context

__all__ = ["COMMANDS"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?",
                   help="only this model's rows: a name or any model URI (credit-risk, models:/credit-risk/3)")
    p.add_argument("--verify", action="store_true",
                   help="check the whole hash chain and the registry instead; exits 1 when something is wrong")
    p.add_argument("--anchor",
                   help="with --verify: a '<seq>:<hash>' head kept from an earlier verify "
                        "that must still be in the chain")
    p.add_argument("--limit", type=int, help="show only the newest N rows")
    p.add_argument("--repair", action="store_true",
                   help="with --verify: roll back registrations whose process died before writing their audit row")


def _run(args: argparse.Namespace, ctx: Context):
    from .. import audit

    if args.verify:
        from ..registry import recovery

        result = audit.verify(anchor=args.anchor)
        problems, repaired = recovery.problems(), []
        if args.repair and problems:
            repaired = [x.describe() for x in recovery.repair()]
            problems = recovery.problems()
        return result.flag_registry(problems, repaired)
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
