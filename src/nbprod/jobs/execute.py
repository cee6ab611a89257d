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
import logging
import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from .._context import git_info
from ..config import settings
from ..errors import JobError, JobFailed
from . import environment, render, runstore
from .deferred import defer_iri_grammars
from .inputs import ALLOW_ENV, EXPECT_ENV, JOB_RUN_ENV
from .kernel import EarlyKernel, transport
from .params import merge, read_notebook
from .prepare import (
    DEFAULT_KERNEL,
    Kernel,
    check_names,
    check_parameters,
    choose_kernel,
    notebook_experiment,
    output_path,
    user,
)
from .progress import ENGINE, NotebookProgress, Watch, in_notebook, register_engine
from .recording import cell_error, finish, mark_unfinished
from .records import TAG
from .results import JobResult

__all__ = ["run", "JobResult", "JobFailed", "JobWarning", "DEFAULT_KERNEL"]

#: Seconds before the first retry after a dead kernel; doubled for each further one, at most 30.
BACKOFF = 1.0


class JobWarning(UserWarning):
    """Something about a job the user should know, which does not stop it."""


class _Terminated(BaseException):
    """SIGTERM arrived while the job ran (a scheduler, ``kill``): the job ends as KILLED, then the
    signal takes its usual course (never seen outside this module)."""


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
    defer_iri_grammars()
    source = Path(notebook)
    if not source.is_file():
        raise JobError(f"no notebook at {source}", "pass the path of an existing .ipynb file")
    if source.suffix != ".ipynb":
        raise JobError(f"{source} is not a notebook (.ipynb)", "pass a Jupyter notebook file")
    if retries < 0 or (timeout is not None and timeout <= 0):
        raise JobError("retries must be >= 0 and timeout > 0 seconds", "e.g. --retries 2 --timeout 600")
    shown = _record_as or source
    # MLflow's import and store (runstore.py), nbconvert for the HTML (render.py) and the kernel
    # (kernel.py) each load in their own process while this one imports papermill: each is started
    # as soon as what it needs is known, and stopped on every way out
    stores = {"NBPROD_HOME": settings.home, "NBPROD_DB_URL": settings.db_url,
              "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_REGISTRY_URI": settings.registry_uri}
    store = runstore.start(stores)
    warming = render.start()
    early: EarlyKernel | None = None
    try:
        nb = read_notebook(source)
        params = merge(parameters, parameters_file)
        chosen = choose_kernel(kernel, nb)
        kernel_name, kernel_note = chosen.name, chosen.note
        check_names(params, chosen.language)
        workdir = Path(cwd) if cwd else Path(shown).resolve().parent
        if not workdir.is_dir():
            workdir = source.resolve().parent
        base_env = {"NBPROD_NOTEBOOK": str(Path(shown).resolve()), **stores,
                    EXPECT_ENV: json.dumps(_expect_inputs or {}), ALLOW_ENV: "1" if allow_changed_inputs else "0"}
        early = EarlyKernel.start(kernel_name, workdir, base_env)
        notes = check_parameters(shown, nb, params)  # imports papermill: the kernel boots meanwhile
        if kernel_note:
            notes.insert(0, kernel_note)
        for note in notes:
            warnings.warn(note, JobWarning, stacklevel=2)
        own = notebook_experiment(nb)
        if own and experiment and own != experiment:
            raise JobError(f"{shown} calls mlflow.set_experiment({own!r}), "
                           f"but the job was asked to record in {experiment!r}",
                           f"leave out --experiment (the job is then recorded in {own!r}) or remove set_experiment")
        target = _target(output, source, shown)
        return _tracked(store, early, warming, source, shown, nb, params, notes, chosen, target,
                        workdir, base_env, own, experiment, progress, timeout, retries, _rerun_of)
    finally:
        if early is not None:
            early.stop()
        render.close(warming)
        store.stop()


class _SaidByNbprod(logging.Filter):
    """papermill's warnings that nbprod gives in its own words: which parameters the notebook never reads, or
    that it has no parameters cell (:func:`~.prepare.check_parameters`), and a cell's timeout (the job's error,
    "still running after the 2 s per-cell timeout"). Printed once, not twice."""

    SAID = ("Passed unknown parameter", "Input notebook does not contain a cell with tag 'parameters'",
            "Timeout waiting for execute reply")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.SAID)


def _without_repeats() -> None:
    papermill_log = logging.getLogger("papermill")
    if not any(isinstance(f, _SaidByNbprod) for f in papermill_log.filters):
        papermill_log.addFilter(_SaidByNbprod())


def _target(output: str | Path | None, source: Path, shown: Path) -> Path:
    """Where the executed copy goes: ``output``, checked before a run is recorded, else a new file under
    the home's ``runs/``."""
    if not output:
        return output_path(Path(shown))
    target = Path(output)
    if target.resolve() in (source.resolve(), Path(shown).resolve()):
        raise JobError(f"the executed copy would overwrite the notebook itself ({target})",
                       "pass another --output path, or leave it out (the copy then goes under NBPROD_HOME/runs)")
    if target.is_dir():
        raise JobError(f"--output {target} is a folder", f"pass a file path, e.g. {target / source.name}")
    if not target.parent.is_dir():
        raise JobError(f"--output {target}: the folder {target.parent} does not exist",
                       "create it first, or pass a path in an existing folder")
    return target


def _tracked(store: runstore.LocalStore | runstore.HelperStore, early: EarlyKernel | None, warming: Any,
             source: Path, shown: Path, nb, params: dict[str, Any],
             notes: list[str], chosen: Kernel, target: Path, workdir: Path, base_env: dict[str, str],
             own: str | None, experiment: str | None, progress: bool | str, timeout: float | None,
             retries: int, _rerun_of: str | None) -> JobResult:
    """The job's MLflow run around papermill's execution (``store`` writes the run, ``early``: the
    kernel started ahead)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    register_engine()
    _without_repeats()
    kernel_name = chosen.name
    env = environment.capture(chosen.executable)
    commit, dirty = git_info(str(Path(shown).resolve()))
    tags = {
        "mlflow.runName": Path(shown).stem, "mlflow.source.name": str(Path(shown).resolve()),
        "mlflow.source.type": "NOTEBOOK", "mlflow.user": user(),
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
    # the early kernel's client connects (and waits for it to answer) while the run is being created
    opened = store.open(experiment or own, Path(shown).stem, {k: v for k, v in tags.items() if v != ""},
                        early.connect if early is not None else None)
    run_id, exp_id = opened["run_id"], opened["experiment_id"]

    run_env = {"MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": exp_id, JOB_RUN_ENV: run_id}
    kernel_env = {**base_env, **run_env}
    live = None
    if progress == "widget" or (progress is True and in_notebook()):
        live = NotebookProgress(str(shown))
        bar: bool = False
    else:
        bar = bool(progress)

    settle = early.settle if early is not None else None
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
                # the first attempt runs on the kernel started early, told its run now; a retry starts afresh
                kernel_kw = early.hand_over(run_env) if early is not None and attempts == 1 else transport()
                try:
                    final_nb = papermill.execute_notebook(
                        str(source), str(target), parameters=params, kernel_name=kernel_name,
                        language=chosen.language, progress_bar=bar,
                        cwd=str(workdir), execution_timeout=timeout, engine_name=ENGINE, nbprod_watch=watch,
                        **kernel_kw)
                    status = "FINISHED"
                    break
                except PapermillExecutionError as exc:
                    final_nb = watch.nb
                    # papermill has inserted its own error cells by now: find the failed cell itself
                    failed = next((i for i, cell in enumerate(final_nb.cells)
                                   if cell.metadata.get("papermill", {}).get("exception") is True), None)
                    status, error = "FAILED", cell_error(final_nb, failed, exc.ename, exc.evalue)
                    break
                except DeadKernelError as exc:
                    final_nb = watch.nb
                    mark_unfinished(final_nb, watch.current)
                    status = "KERNEL_DIED"
                    error = cell_error(final_nb, watch.current, "DeadKernelError",
                                        "the kernel died (os._exit, out of memory, a crash in native code)")
                    retry_log.append(f"attempt {attempts}: {error['message']} ({exc})")
                    if attempts <= retries:
                        time.sleep(min(30.0, BACKOFF * 2 ** (attempts - 1)))
                        continue
                    break
                except CellTimeoutError:
                    final_nb = watch.nb
                    mark_unfinished(final_nb, watch.current)
                    status = "TIMEOUT"
                    error = cell_error(final_nb, watch.current, "CellTimeoutError",
                                        f"still running after the {timeout:g} s per-cell timeout")
                    break
                except Exception as exc:  # the kernel could not start, the notebook could not be written, …
                    final_nb = watch.nb
                    status = "FAILED"
                    error = {"cell": None, "source": "", "ename": type(exc).__name__, "evalue": str(exc),
                             "message": f"cannot run {shown}: {type(exc).__name__}: {exc}"}
                    break
    except (KeyboardInterrupt, _Terminated) as stop:
        final_nb = watch.nb
        mark_unfinished(final_nb, watch.current)
        status = "KILLED"
        error = cell_error(final_nb, watch.current, "KeyboardInterrupt", "the job was interrupted or terminated")
        finish(store, run_id, source, shown, target, params, final_nb, status, error, attempts, retry_log, env, start,
                kernel_name, notes, live, warming, settle)
        if isinstance(stop, _Terminated) and main_thread:
            # recorded: now SIGTERM takes the course it had before the job (by default, the process ends)
            signal.signal(signal.SIGTERM, old_handler)
            os.kill(os.getpid(), signal.SIGTERM)
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_handler)
    result = finish(store, run_id, source, shown, target, params, final_nb, status, error, attempts, retry_log, env,
                     start, kernel_name, notes, live, warming, settle)
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


