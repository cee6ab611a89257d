"""Run a notebook as a tracked job: ``nbprod run train.ipynb -p alpha 0.1``.

A job is one papermill execution on a real kernel *and* one MLflow run in nbprod's store. Before
the first cell, the run holds the notebook, its parameters, the kernel, the environment (digest
of the pinned package list) and the git commit; the kernel is pointed at that run
(``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``NBPROD_JOB_RUN_ID``), so what the notebook logs
itself — ``mlflow.start_run()``, ``log_metric``, ``log_model``, ``nbprod.register``,
``nbprod.track_input`` — lands in (or under) the job's run instead of a stray ``./mlruns``.
Afterwards the executed copy, its HTML rendering, per-cell wall times and the environment are
logged as artefacts and the run is closed with the job's outcome. Nothing ends as FINISHED
unless every cell ran: a failing cell, a dead kernel, a timeout and a kill each end as such, with
the partly executed copy logged and the error in its metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._context import git_info
from ..config import settings
from ..errors import JobError
from . import environment
from .inputs import ALLOW_ENV, EXPECT_ENV, JOB_RUN_ENV
from .params import declared, has_parameters_cell, merge, read_notebook, usage, user_code_cells
from .progress import ENGINE, NotebookProgress, Watch, first_line, in_notebook, register_engine
from .records import TAG
from .results import JobFailed, JobResult

__all__ = ["run", "JobResult", "JobFailed", "JobWarning", "DEFAULT_KERNEL"]

#: The kernel of a notebook whose kernelspec is missing or unknown here: this environment's Python
#: (``make install`` registers it; jupyter_client falls back to ``sys.executable`` without it).
DEFAULT_KERNEL = "python3"
#: Seconds before the first retry after a dead kernel; doubled for each further one, at most 30.
BACKOFF = 1.0


class JobWarning(UserWarning):
    """Something about a job the user should know, which does not stop it."""


class _Terminated(BaseException):
    """SIGTERM arrived while the job ran (a scheduler, ``kill``): the job ends as KILLED."""


def _output_path(notebook: Path) -> Path:
    runs = settings.home_path / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return runs / f"{notebook.stem}-{stamp}.ipynb"


def _choose_kernel(requested: str | None, nb) -> tuple[str, str | None, str]:
    """(kernel to run, a note when it is not the notebook's own, the kernel's python executable)."""
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
    return name, note, executable


def _check_parameters(source: Path, nb, params: dict[str, Any]) -> list[str]:
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


def _notebook_experiment(nb) -> str | None:
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


def _experiment(c, name: str | None) -> str:
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
    except Exception:  # created concurrently
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _cell_error(nb, index: int | None, ename: str, evalue: str) -> dict[str, Any]:
    """The error as the user sees their notebook: their own cell number (the injected cell not
    counted), its first line, the exception."""
    number, line = None, ""
    if nb is not None and index is not None and 0 <= index < len(nb.cells):
        target = nb.cells[index]
        for n, cell in user_code_cells(nb):
            if cell is target:
                number = n
        line = first_line(target.source)
    where = f"cell {number} (`{line}`)" if number else "a cell"
    return {"cell": number, "source": line, "ename": ename, "evalue": evalue,
            "message": f"{where} raised {ename}: {evalue}" if ename else f"{where}: {evalue}"}


def _mark_unfinished(nb, index: int | None) -> None:
    """papermill marks every cell 'completed' after a dead kernel or a timeout: put it right."""
    if nb is None:
        return
    nb.metadata.setdefault("papermill", {})["exception"] = True
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.setdefault("papermill", {})
        if index is not None and i == index:
            meta["status"], meta["exception"] = "failed", True
        elif index is not None and i > index:
            meta["status"], meta["exception"], meta["duration"] = "pending", None, None


def _cell_times(nb) -> list[dict[str, Any]]:
    out = []
    for i, cell in enumerate(getattr(nb, "cells", [])):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("papermill", {})
        out.append({"index": i, "injected": "injected-parameters" in cell.metadata.get("tags", []),
                    "source": first_line(cell.source)[:120], "seconds": meta.get("duration"),
                    "status": meta.get("status")})
    return out


_exporter: list[Any] = []


def _warm_html() -> None:
    """Import nbconvert and load its template while the kernel runs (the parent process mostly waits
    then): a fresh ``nbprod run`` process would otherwise spend that time after the last cell."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(template_name="classic")
        exporter.from_notebook_node(nbformat.v4.new_notebook())
        _exporter.append(exporter)
    except Exception:  # no nbconvert: no HTML rendering, the .ipynb is the record
        pass


def _html(nb, warming: threading.Thread | None) -> str | None:
    if warming is not None:
        warming.join(timeout=120)
    if not _exporter:
        return None
    try:
        body, _ = _exporter[0].from_notebook_node(nb)
        return body
    except Exception:  # rendering is a convenience; the .ipynb is the record
        return None


class _KernelEnv:
    """Environment variables the kernel inherits, set for the job's duration and then restored."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.previous = {k: os.environ.get(k) for k in values}

    def __enter__(self):
        os.environ.update(self.values)
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self.previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _user() -> str:
    """Who runs the job: the JupyterHub login, else the OS login (as the audit log records it)."""
    import getpass

    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except Exception:  # no login name (some containers run with an unnamed uid)
        return "unknown"


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(notebook: str | Path, parameters: dict[str, Any] | None = None, *, parameters_file: str | Path | None = None,
        experiment: str | None = None, output: str | Path | None = None, kernel: str | None = None,
        cwd: str | Path | None = None, progress: bool | str = True, timeout: float | None = None, retries: int = 0,
        allow_changed_inputs: bool = False, _expect_inputs: dict[str, str] | None = None,
        _rerun_of: str | None = None, _record_as: Path | None = None) -> JobResult:
    """Execute ``notebook`` with ``parameters`` on a real kernel as a tracked job (one MLflow run).

    ``parameters_file`` is a YAML file of parameters (``parameters`` win over it); ``timeout`` is
    per cell, in seconds; ``retries`` re-runs the job after a dead kernel, with backoff. The
    notebook runs in its own folder (or ``cwd``), like in JupyterLab. Returns a :class:`JobResult`;
    a job that does not finish raises :class:`JobFailed` carrying its (recorded) result.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from ..registry.store import client

    register_engine()
    source = Path(notebook)
    if not source.is_file():
        raise JobError(f"no notebook at {source}", "pass the path of an existing .ipynb file")
    if source.suffix != ".ipynb":
        raise JobError(f"{source} is not a notebook (.ipynb)", "pass a Jupyter notebook file")
    if retries < 0 or (timeout is not None and timeout <= 0):
        raise JobError("retries must be >= 0 and timeout > 0 seconds", "e.g. --retries 2 --timeout 600")
    shown = _record_as or source
    nb = read_notebook(source)
    params = merge(parameters, parameters_file)
    notes = _check_parameters(shown, nb, params)
    kernel_name, kernel_note, executable = _choose_kernel(kernel, nb)
    if kernel_note:
        notes.insert(0, kernel_note)
    for note in notes:
        warnings.warn(note, JobWarning, stacklevel=2)
    target = Path(output) if output else _output_path(Path(shown))
    workdir = Path(cwd) if cwd else Path(shown).resolve().parent
    if not workdir.is_dir():
        workdir = source.resolve().parent

    own = _notebook_experiment(nb)
    if own and experiment and own != experiment:
        raise JobError(f"{shown} calls mlflow.set_experiment({own!r}), "
                       f"but the job was asked to record in {experiment!r}",
                       f"leave out --experiment (the job is then recorded in {own!r}) or remove set_experiment")
    c = client()
    exp_id = _experiment(c, experiment or own)
    env = environment.capture(executable)
    commit, dirty = git_info(str(Path(shown).resolve()))
    tags = {
        "mlflow.runName": Path(shown).stem, "mlflow.source.name": str(Path(shown).resolve()),
        "mlflow.source.type": "NOTEBOOK", "mlflow.user": _user(),
        TAG + "kind": "job", TAG + "notebook": str(Path(shown).resolve()), TAG + "status": "RUNNING",
        TAG + "parameters": json.dumps(params, default=str), TAG + "kernel": kernel_name,
        TAG + "python": env.get("python") or "", TAG + "platform": env.get("platform") or "",
        TAG + "env_digest": env["digest"], TAG + "pid": str(os.getpid()), TAG + "host": socket.gethostname(),
        TAG + "cwd": str(workdir.resolve()), TAG + "output": str(target.resolve()),
        TAG + "notes": json.dumps(notes), TAG + "timeout": str(timeout or ""),
    }
    if commit:
        tags.update({"mlflow.source.git.commit": commit, TAG + "git_commit": commit,
                     TAG + "git_dirty": str(bool(dirty)).lower() if dirty is not None else ""})
    if _rerun_of:
        tags[TAG + "rerun_of"] = _rerun_of
    run_id = c.create_run(exp_id, run_name=Path(shown).stem,
                          tags={k: v for k, v in tags.items() if v != ""}).info.run_id

    kernel_env = {
        "NBPROD_NOTEBOOK": str(Path(shown).resolve()), "NBPROD_HOME": settings.home, "NBPROD_DB_URL": settings.db_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_REGISTRY_URI": settings.registry_uri,
        "MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": exp_id, JOB_RUN_ENV: run_id,
        EXPECT_ENV: json.dumps(_expect_inputs or {}), ALLOW_ENV: "1" if allow_changed_inputs else "0",
    }
    live = None
    if progress == "widget" or (progress is True and in_notebook()):
        live = NotebookProgress(str(shown))
        bar: bool = False
    else:
        bar = bool(progress)

    warming = None
    if not _exporter:
        warming = threading.Thread(target=_warm_html, daemon=True, name="nbprod-html")
        warming.start()
    start = time.perf_counter()
    status, error, final_nb, attempts = "RUNNING", None, None, 0
    watch = Watch()
    retry_log: list[str] = []
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        with _KernelEnv(kernel_env):
            while True:
                attempts += 1
                watch = Watch(on_cell=live.cell if live else None)
                try:
                    final_nb = papermill.execute_notebook(
                        str(source), str(target), parameters=params, kernel_name=kernel_name, progress_bar=bar,
                        cwd=str(workdir), execution_timeout=timeout, engine_name=ENGINE, nbprod_watch=watch)
                    status = "FINISHED"
                    break
                except PapermillExecutionError as exc:
                    final_nb = watch.nb
                    # papermill has inserted its own error cells by now: find the failed cell itself
                    failed = next((i for i, cell in enumerate(final_nb.cells)
                                   if cell.metadata.get("papermill", {}).get("exception") is True), None)
                    status, error = "FAILED", _cell_error(final_nb, failed, exc.ename, exc.evalue)
                    break
                except DeadKernelError as exc:
                    final_nb = watch.nb
                    _mark_unfinished(final_nb, watch.current)
                    status = "KERNEL_DIED"
                    error = _cell_error(final_nb, watch.current, "DeadKernelError",
                                        "the kernel died (os._exit, out of memory, a crash in native code)")
                    retry_log.append(f"attempt {attempts}: {error['message']} ({exc})")
                    if attempts <= retries:
                        time.sleep(min(30.0, BACKOFF * 2 ** (attempts - 1)))
                        continue
                    break
                except CellTimeoutError:
                    final_nb = watch.nb
                    _mark_unfinished(final_nb, watch.current)
                    status = "TIMEOUT"
                    error = _cell_error(final_nb, watch.current, "CellTimeoutError",
                                        f"still running after the {timeout:g} s per-cell timeout")
                    break
                except Exception as exc:  # the kernel could not start, the notebook could not be written, …
                    final_nb = watch.nb
                    status = "FAILED"
                    error = {"cell": None, "source": "", "ename": type(exc).__name__, "evalue": str(exc),
                             "message": f"cannot run {shown}: {type(exc).__name__}: {exc}"}
                    break
    except (KeyboardInterrupt, _Terminated):
        final_nb = watch.nb
        _mark_unfinished(final_nb, watch.current)
        status = "KILLED"
        error = _cell_error(final_nb, watch.current, "KeyboardInterrupt", "the job was interrupted or terminated")
        _finish(c, run_id, source, shown, target, params, final_nb, status, error, attempts, retry_log, env, start,
                kernel_name, notes, live, warming)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_handler)
    result = _finish(c, run_id, source, shown, target, params, final_nb, status, error, attempts, retry_log, env,
                     start, kernel_name, notes, live, warming)
    if status != "FINISHED":
        raise JobFailed(f"{shown} {status.lower().replace('_', ' ')}: {error['message'] if error else ''}".rstrip(": "),
                        _fix(status, target, retries), result)
    return result


def _fix(status: str, target: Path, retries: int) -> str:
    if status == "KERNEL_DIED":
        more = "" if retries else "; --retries N re-runs it after a crash"
        return f"the kernel process died (often out of memory): check the last cell in {target}{more}"
    if status == "TIMEOUT":
        return f"the cell ran longer than --timeout allows: raise --timeout, or see where it stalled in {target}"
    return f"open the executed copy {target} to see the failing cell and its traceback"


def _finish(c, run_id: str, source: Path, shown: Path, target: Path, params: dict[str, Any], nb, status: str,
            error: dict[str, Any] | None, attempts: int, retry_log: list[str], env: dict[str, Any], start: float,
            kernel_name: str, notes: list[str], live, warming: threading.Thread | None) -> JobResult:
    """Write the executed copy with the outcome in its metadata, log the artefacts, close the run."""
    import nbformat
    from mlflow.entities import Param, RunTag

    seconds = time.perf_counter() - start
    if nb is not None:
        nb.metadata["nbprod"] = {"run_id": run_id, "status": status, "error": error, "attempts": attempts}
        nb.metadata["kernelspec"] = {**(nb.metadata.get("kernelspec") or {}), "name": kernel_name}
        if error:
            nb.metadata.setdefault("papermill", {})["exception"] = True
        tmp_out = target.with_name(target.name + ".tmp")
        nbformat.write(nb, str(tmp_out))
        os.replace(tmp_out, target)
    stage = Path(tempfile.mkdtemp(prefix="nbprod-job-"))
    html_name = None
    try:
        shutil.copyfile(source, stage / "source.ipynb")
        if target.is_file():
            shutil.copyfile(target, stage / "executed.ipynb")
        if nb is not None:
            body = _html(nb, warming)
            if body is not None:
                (stage / "executed.html").write_text(body, encoding="utf-8")
                html_name = "executed.html"
        cells = _cell_times(nb)
        (stage / "cells.json").write_text(json.dumps(cells, indent=1), encoding="utf-8")
        (stage / "environment.json").write_text(json.dumps(env, indent=1), encoding="utf-8")
        c.log_artifacts(run_id, str(stage), "job")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    run = c.get_run(run_id)
    logged = run.data.params
    new_params = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
    models = _models(c, run_id)
    artifact_uri = run.info.artifact_uri.rstrip("/")
    tags = {TAG + "status": status, TAG + "attempts": str(attempts), TAG + "seconds": f"{seconds:.3f}",
            TAG + "models": ",".join(models), TAG + "retries": json.dumps(retry_log) if retry_log else "",
            TAG + "error": json.dumps(error) if error else "", TAG + "kernel": kernel_name,
            TAG + "html": f"{artifact_uri}/job/{html_name}" if html_name else ""}
    c.log_batch(run_id, params=new_params, tags=[RunTag(k, v) for k, v in tags.items() if v != ""])
    mlflow_status = {"FINISHED": "FINISHED", "KILLED": "KILLED"}.get(status, "FAILED")
    c.set_terminated(run_id, mlflow_status)
    if live is not None:
        live.close(status)
    from .records import job_from_run

    result = job_from_run(c.get_run(run_id))
    result._nb = nb
    result.notebook = shown
    result.cells = cells
    result.environment = env
    return result


def _models(c, run_id: str) -> list[str]:
    """The model versions this job produced: registered by ``nbprod.register`` inside it (tagged
    with the job's run) or by MLflow's own ``log_model(registered_model_name=...)`` in its run."""
    found: dict[tuple[str, str], None] = {}
    for query in (f"tags.`nbprod.job_run_id` = '{run_id}'", f"run_id = '{run_id}'"):
        try:
            for v in c.search_model_versions(query):
                found[(v.name, str(v.version))] = None
        except Exception:  # a registry that does not support the filter
            continue
    return [f"{name}/{version}" for name, version in sorted(found)]
