"""Before a job's first cell: which kernel, which experiment, which parameters, where the copy goes.

Each check here runs before the MLflow run exists, so a refusal (an unknown parameter, a kernel
asked for that is not installed, an experiment that contradicts the notebook's own) leaves nothing
behind; what is only worth a warning (a kernelspec from another machine, parameters the notebook
ignores) becomes a note the job records.
"""

from __future__ import annotations

import keyword
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from ..config import settings
from ..errors import JobError
from .params import DEFAULT_KERNEL, declared, has_parameters_cell, notebook_language, usage, user_code_cells

__all__ = ["DEFAULT_KERNEL", "Kernel", "output_path", "choose_kernel", "check_names", "check_parameters",
           "notebook_experiment", "choose_experiment", "user"]




def output_path(notebook: Path) -> Path:
    from .._files import private_dir, private_file

    runs = private_dir(settings.home_path / "runs")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return private_file(runs / f"{notebook.stem}-{stamp}.ipynb")  # 0600: papermill keeps the mode it finds


class Kernel(NamedTuple):
    """The kernel a job runs on: its name, a note when it is not the notebook's own, its Python executable,
    and the notebook's language (the kernel's, when the notebook does not say: papermill needs one)."""

    name: str
    note: str | None
    executable: str
    language: str


def choose_kernel(requested: str | None, nb) -> Kernel:
    """``--kernel``, else the notebook's own kernel, else (not installed here, with a note) this environment's."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = requested or (nb.metadata.get("kernelspec") or {}).get("name") or DEFAULT_KERNEL
    ksm = KernelSpecManager()
    note = None
    try:
        spec = ksm.get_kernel_spec(name)
    except NoSuchKernel:
        if requested:
            raise JobError(f"no kernel called {requested!r} here", "list the kernels with `jupyter kernelspec list`, "
                           "or leave out --kernel to use the notebook's own (or this environment's Python)") from None
        note = (f"the notebook's kernel {name!r} is not installed here; "
                f"ran it on this environment's Python kernel ({DEFAULT_KERNEL})")
        name = DEFAULT_KERNEL
        spec = ksm.get_kernel_spec(name)
    argv0 = spec.argv[0] if spec.argv else sys.executable
    executable = sys.executable if argv0 in ("python", "python3", "{python}") else argv0
    return Kernel(name, note, executable, notebook_language(nb) or (spec.language or "python").lower())


def check_names(params: dict[str, Any], language: str) -> None:
    """Refuse a parameter name the injected cell cannot assign (``my-param``, ``class``): papermill writes it
    as is, and the job then failed in a cell the user never wrote, with a SyntaxError."""
    if language != "python":
        return
    bad = [k for k in params if not (isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k))]
    if bad:
        raise JobError(f"parameter name(s) {', '.join(map(repr, bad))} cannot be Python variables",
                       "use names of letters, digits and _ that are not Python keywords, e.g. -p learning_rate 0.1")


def check_parameters(source: Path, nb, params: dict[str, Any]) -> list[str]:
    """Refuse unknown names when the notebook declares its parameters; otherwise say which
    injected values the notebook ignores. Returns the notes to record."""
    if not params:
        return []
    if has_parameters_cell(nb):
        names = [p.name for p in declared(nb)]
        unknown = [k for k in params if k not in names]
        if unknown:
            raise JobError(f"{source} declares no parameter {', '.join(map(repr, unknown))}",
                           f"use the parameters it declares: {', '.join(names) or '(none)'} "
                           f"(see `nbprod inspect {source}`)")
        return []
    found = usage(nb, list(params))
    notes = []
    overwritten = [k for k, v in found.items() if v == "overwritten"]
    unread = [k for k, v in found.items() if v == "unread"]
    if overwritten:
        notes.append(f"{source} has no 'parameters' cell and overwrites {', '.join(overwritten)} before reading it: "
                     "the values given were injected at the top and then replaced "
                     "(tag the cell that sets them 'parameters')")
    if unread:
        notes.append(f"{source} never reads {', '.join(unread)}: the values given have no effect")
    return notes


def notebook_experiment(nb) -> str | None:
    """The experiment a notebook picks itself with ``mlflow.set_experiment("name")``, if literal.

    MLflow refuses to resume the job's run (``MLFLOW_RUN_ID``) from another experiment than the
    active one, so such a notebook would fail in its ``start_run()``: the job is recorded in that
    experiment instead."""
    import ast

    from .params import python_source

    for _, cell in user_code_cells(nb):
        try:
            tree = ast.parse(python_source(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and getattr(called, "attr", getattr(called, "id", "")) == "set_experiment":
                args = [*node.args[:1], *[k.value for k in node.keywords if k.arg == "experiment_name"]]
                if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                    return args[0].value
    return None


def choose_experiment(c, name: str | None) -> str:
    from ..registry.store import experiment_id, is_remote

    if not name:
        return experiment_id(c)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None if is_remote(settings.tracking_uri) else settings.artifact_root
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception as exc:  # created concurrently, or a name MLflow refuses
        found = c.get_experiment_by_name(name)
        if found is None:
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise JobError(f"cannot create the MLflow experiment {shown!r}: {str(getattr(exc, 'message', exc))[:300]}",
                           "pass another --experiment name (a shorter one, without control characters)") from None
        return found.experiment_id


def user() -> str:
    """Who runs the job: the JupyterHub login, else the OS login (as the audit log records it)."""
    import getpass

    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except Exception:  # no login name (some containers run with an unnamed uid)
        return "unknown"
