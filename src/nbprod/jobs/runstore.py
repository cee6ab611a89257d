"""Where a job's MLflow run is written: in this process, or in a helper that imports MLflow meanwhile.

A fresh ``nbprod run`` process spends about two seconds of CPU importing MLflow (which pulls in
pandas, SQLAlchemy, pydantic, ...) and opening its store before it can create the job's run — CPU
that a bare papermill process never spends, and that sat on the job's critical path: the first
cell waits for the run's id. None of it depends on the notebook, so a process that has not
imported MLflow yet (a command line, a fresh worker) starts a helper process (:func:`main`)
as its very first step: the helper imports MLflow and opens the store on
the other core while this process imports papermill and the kernel boots, then creates the run
when asked (:meth:`HelperStore.open`) and, after the last cell, writes the outcome
(:meth:`HelperStore.close`). The job's process never imports MLflow. A process that already has
MLflow loaded (a notebook, a sweep, a benchmark) writes the run itself (:class:`LocalStore`).

Both do the same calls through the same functions (:func:`open_run`, :func:`close_run`) and hand
back the same thing: a plain snapshot of the closed run, from which :func:`records.job_from_run`
builds the job's result. When the helper cannot do its part (it failed to start, its store
refused), the job falls back to this process, which then raises exactly what it always raised.
The helper sits in its own session, so a Ctrl-C meant for the job reaches the job (which records
itself KILLED through the helper) and not the helper; if the job's process dies without closing
its run (SIGKILL), the helper sees its input end and closes the run as KILLED.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any, Callable

__all__ = ["start", "LocalStore", "HelperStore", "open_run", "close_run", "snapshot", "as_run", "watch", "main"]


def open_run(c, experiment: str | None, run_name: str, tags: dict[str, str]) -> dict[str, str]:
    """Create the job's run in ``experiment`` (the default one when ``None``): its ids."""
    from .prepare import choose_experiment

    exp_id = choose_experiment(c, experiment)
    run_id = c.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    return {"run_id": run_id, "experiment_id": exp_id}


def close_run(c, run_id: str, stage: str | None, params: dict[str, str], tags: dict[str, str],
              cells: list[dict[str, Any]], html: str | None, status: str) -> dict[str, Any]:
    """Log the job's outcome into its run and close it; the snapshot of the closed run.

    ``params`` are logged unless the notebook logged them itself; ``stage`` is a folder whose
    files become the run's ``job/`` artefacts; ``html``, the name of the rendering among them."""
    from mlflow.entities import Param, RunTag

    from .recording import cell_metrics, models_of
    from .records import TAG

    run = c.get_run(run_id)
    logged = run.data.params
    new_params = [Param(k, v) for k, v in params.items() if k not in logged]
    models = models_of(c, run_id)
    artifact_uri = run.info.artifact_uri.rstrip("/")
    if stage is not None:
        c.log_artifacts(run_id, stage, "job")
    tags = {**tags, TAG + "models": ",".join(models), TAG + "html": f"{artifact_uri}/job/{html}" if html else ""}
    metrics = cell_metrics(cells)
    c.log_batch(run_id, params=new_params, tags=[RunTag(k, v) for k, v in tags.items() if v != ""],
                metrics=metrics[:1000])
    for at in range(1000, len(metrics), 1000):  # MLflow takes at most 1,000 metrics per batch
        c.log_batch(run_id, metrics=metrics[at:at + 1000])
    c.set_terminated(run_id, {"FINISHED": "FINISHED", "KILLED": "KILLED"}.get(status, "FAILED"))
    return snapshot(c.get_run(run_id))


def snapshot(run) -> dict[str, Any]:
    """What :func:`records.job_from_run` reads of an MLflow run, as plain JSON-able data."""
    info = run.info
    return {"info": {"run_id": info.run_id, "experiment_id": info.experiment_id, "status": info.status,
                     "start_time": info.start_time, "end_time": info.end_time},
            "data": {"tags": dict(run.data.tags), "metrics": dict(run.data.metrics),
                     "params": dict(run.data.params)}}


def as_run(snap: dict[str, Any]) -> Any:
    """A :func:`snapshot` with the attributes of an MLflow run (``run.info.run_id``, ``run.data.tags``)."""
    return SimpleNamespace(info=SimpleNamespace(**snap["info"]), data=SimpleNamespace(**snap["data"]))


class LocalStore:
    """The run written by this process (MLflow is, or will be, imported here).

    A watcher process (:func:`watch`) holds the open run's id: should this process die before it closes
    the run (SIGKILL, out of memory, a pipeline's runner killed mid-step), the watcher's input ends and
    it closes the run as KILLED, at that moment, as the helper does for :class:`HelperStore`. Without
    it such a run stayed RUNNING in MLflow for good, with no end time."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._c: Any = None
        self._env = env or {}
        self._watcher: subprocess.Popen[str] | None = None
        self._unclosed: str | None = None

    @property
    def c(self) -> Any:
        if self._c is None:
            from ..registry.store import client

            self._c = client()
        return self._c

    def open(self, experiment: str | None, run_name: str, tags: dict[str, str],
             meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
        opened = open_run(self.c, experiment, run_name, tags)  # the kernel goes on booting meanwhile
        self._unclosed = opened["run_id"]
        self._watch(opened["run_id"])
        if meanwhile is not None:
            meanwhile()
        return opened

    def close(self, run_id: str, **kw: Any) -> dict[str, Any]:
        closed = close_run(self.c, run_id, **kw)
        self._unclosed = None
        self.stop()
        return closed

    def _watch(self, run_id: str) -> None:
        try:
            self._watcher = subprocess.Popen(
                [sys.executable, "-c", "from nbprod.jobs.runstore import watch; watch()"], stdin=subprocess.PIPE,
                env={**os.environ, **self._env}, text=True, encoding="utf-8", start_new_session=True)
            assert self._watcher.stdin is not None
            self._watcher.stdin.write(run_id + "\n")
            self._watcher.stdin.flush()
        except OSError:  # no watcher: a SIGKILL leaves the run RUNNING (`nbprod runs` still says KILLED)
            self.stop()

    def stop(self) -> None:
        """End the watcher; never raises. A run opened and not closed (the job ended some other way) is
        closed as KILLED here, as the helper closes it for :class:`HelperStore`."""
        proc, self._watcher = self._watcher, None
        if proc is not None:
            proc.kill()
            proc.wait()
        unclosed, self._unclosed = self._unclosed, None
        if unclosed is not None:
            _killed(self.c, unclosed)


class HelperStore:
    """The run written by a helper process that imported MLflow beside the job (see the module's doc)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", "from nbprod.jobs.runstore import main; main()"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env={**os.environ, **env}, text=True, encoding="utf-8", start_new_session=True)
        self.env = env
        self.local: LocalStore | None = None  # after the helper failed: this process does the rest
        self.unclosed: str | None = None  # the run the helper opened and has not closed

    def _ask(self, request: dict[str, Any], meanwhile: Callable[[], None] | None = None) -> Any:
        """The helper's answer to ``request`` (``meanwhile`` runs while the helper works on it);
        ``None`` when it failed or is gone (then this process does the rest: :attr:`local`)."""
        proc = self.proc
        answer = None
        if proc is not None and proc.stdin is not None and proc.stdout is not None:
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                if meanwhile is not None:
                    meanwhile()
                    meanwhile = None
                line = proc.stdout.readline()
                answer = json.loads(line).get("result") if line.strip() else None
            except (OSError, ValueError):
                answer = None
        if answer is None:
            self.stop()
            self.local = LocalStore(self.env)
        return answer

    def open(self, experiment: str | None, run_name: str, tags: dict[str, str],
             meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
        """Create the job's run; ``meanwhile`` (the kernel's connection) runs while the helper does."""
        opened = self._ask({"op": "open", "experiment": experiment, "run_name": run_name, "tags": tags}, meanwhile)
        if opened is None or self.local is not None:
            # the store refused (a wrong URI, an experiment MLflow will not create, ...) or the helper is
            # gone: this process opens the run itself and raises what it always raised
            return (self.local or LocalStore(self.env)).open(experiment, run_name, tags)
        self.unclosed = opened["run_id"]
        return opened

    def close(self, run_id: str, **kw: Any) -> dict[str, Any]:
        self.unclosed = None  # whatever the answer: closed by the helper, or here
        closed = self._ask({"op": "close", "run_id": run_id, **kw}) if self.local is None else None
        return closed if closed is not None else (self.local or LocalStore(self.env)).close(run_id, **kw)

    def stop(self) -> None:
        """End the helper; never raises. With a run it opened and was not asked to close (the job
        ended some other way), its input ends and it closes the run as KILLED before it exits;
        otherwise (no run yet, or closed) there is nothing left for it to do and it is killed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if self.unclosed is None:
                proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def start(env: dict[str, str]) -> LocalStore | HelperStore:
    """The store for a job: a helper when this process has not imported MLflow, else this process.

    ``env`` holds the settings the helper must share with this process (home, store URIs)."""
    if "mlflow" in sys.modules:
        return LocalStore(env)
    try:
        return HelperStore(env)
    except OSError:
        return LocalStore(env)


def _serve() -> int:
    """The helper: MLflow and the store opened first, then one request a line until the input ends."""
    # the answers go to the job on the real stdout; anything else printing (MLflow, alembic) to stderr
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    from ..registry.store import client

    c = client()
    from mlflow.entities import Param, RunTag  # noqa: F401 - loaded now, not on the job's critical path

    opened: str | None = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "open":
                result: Any = open_run(c, **request)
                opened = result["run_id"]
            else:
                opened = None  # if this fails, the job's process closes the run itself
                result = close_run(c, **request)
            answer: dict[str, Any] = {"result": result}
        except Exception as exc:  # noqa: BLE001 - the job's process redoes it and raises it there
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    if opened is not None:
        # the job's process ended without closing its run (SIGKILL, a crash): it did not finish
        _killed(c, opened)
    return 0


def _killed(c, run_id: str) -> None:
    from mlflow.entities import RunTag

    from .records import TAG

    try:
        c.log_batch(run_id, tags=[RunTag(TAG + "status", "KILLED")])
        c.set_terminated(run_id, "KILLED")
    except Exception:  # noqa: BLE001 - `nbprod runs` still shows it KILLED (its process is gone)
        pass


def watch() -> None:
    """A :class:`LocalStore`'s watcher (``python -c "from nbprod.jobs.runstore import watch; watch()"``): one
    line, the open run's id, then nothing until its input ends. Killed once the run is closed, so an end
    of input means the job's process is gone with its run open: it did not finish."""
    from .._exit import exit_now

    run_id = sys.stdin.readline().strip()
    sys.stdin.read()
    if run_id:
        from ..registry.store import client

        _killed(client(), run_id)
    exit_now(0)


def main() -> None:
    """The helper process (``python -c "from nbprod.jobs.runstore import main; main()"``)."""
    from .._exit import exit_now

    # what the helper wrote is committed: the interpreter's teardown of MLflow's modules is skipped
    exit_now(_serve())
