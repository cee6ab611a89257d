"""The ``info`` verb (see nbprod.commands): which home, stores and versions are in force, and why."""

from __future__ import annotations

import argparse

from . import Command, Context

__all__ = ["COMMANDS"]


def _run(args: argparse.Namespace, ctx: Context):
    from .._info import info

    return info()


COMMANDS = [
    Command(
        name="info",
        help="show the nbprod home, the MLflow store and state DB in use, how each was chosen, and the versions",
        description="Where nbprod keeps its state and why: the home (found the way git finds .git: the nearest "
                    ".nbprod above the working directory, else the project root's), the MLflow tracking URI, the "
                    "state DB (passwords hidden), what MLflow's own API in this process talks to, the command that "
                    "opens MLflow's UI on the store, and the versions of nbprod, MLflow and Python.",
        run=_run,
        examples=["nbprod info", "%nbprod info"],
    ),
]
