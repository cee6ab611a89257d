"""Verbs for notebook jobs: ``run`` and ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NbprodError
from . import Command, Context, UsageProblem


def _parameters(pairs: list[list[str]] | None) -> dict:
    import yaml

    params = {}
    for key, raw in pairs or []:
        try:
            params[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            params[key] = raw
    return params


def _run(args: argparse.Namespace, ctx: Context):
    from ..jobs import run

    return run(args.notebook, _parameters(args.parameters), output=args.output, kernel=args.kernel,
               progress=not args.no_progress)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file to execute")
    p.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter (value parsed as YAML: 0.1, true, [1, 2], text)")
    p.add_argument("-o", "--output", help="where to write the executed copy (default: $NBPROD_HOME/runs/)")
    p.add_argument("-k", "--kernel", help="kernel name (default: the notebook's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _demo(args: argparse.Namespace, ctx: Context):
    from ..jobs import run

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise UsageProblem(f"no quickstart notebook at {notebook}", "run `make demo` from the nbprod repository root, or pass --notebook")
    before = _running()
    try:
        result = run(notebook, progress=True)
    except NbprodError:
        _stop_started_since(before)
        raise
    return _DemoSummary(result)


def _running() -> dict[str, int | None]:
    """Deployments of this nbprod home not recorded as stopped, with their server's pid."""
    from ..deployments import store

    found = {name: store.read(name) for name in store.names()}
    return {name: rec[1]["pid"] for name, rec in found.items() if rec and rec[1]["status"] != "stopped"}


def _stop_started_since(before: dict[str, int | None]) -> None:
    """A demo that fails part-way never reaches its undeploy cell: stop the servers it started
    (detached, they would outlive it), and leave alone those that ran before it."""
    from ..deployments.api import undeploy

    for name, pid in _running().items():
        if name not in before or before[name] != pid:
            undeploy(name)


class _DemoSummary:
    """What ``make demo`` prints: where the executed notebook is and the quickstart's own summary."""

    ok = True

    def __init__(self, result) -> None:
        self.result = result

    def __str__(self) -> str:
        return f"{self.result}\n\n{self.result.tagged_output('summary')}"

    def _repr_html_(self) -> str:
        from html import escape

        return self.result._repr_html_() + f"<pre>{escape(self.result.tagged_output('summary'))}</pre>"


COMMANDS = [
    Command(
        name="run",
        help="execute a notebook as a reproducible job (papermill)",
        description="Execute a notebook on a real kernel with parameters; the executed copy lands in $NBPROD_HOME/runs/.",
        arguments=_arguments,
        run=_run,
        examples=["nbprod run train.ipynb -p alpha 0.1 -p name credit-risk"],
    ),
    Command(
        name="demo",
        help="run the end-to-end quickstart notebook and print what it did",
        arguments=lambda p: p.add_argument("--notebook", default="notebooks/quickstart.ipynb", help="the quickstart notebook"),
        run=_demo,
    ),
]
