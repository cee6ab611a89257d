"""Reading jobs back from MLflow: ``nbprod runs``, ``nbprod.get_run(id)``.

A job is an MLflow run tagged ``nbprod.kind=job``; everything nbprod shows about it is in the
run's tags, params, metrics and artefacts, so the MLflow UI and ``nbprod runs`` tell the same
story. A job id is its MLflow run id; a unique prefix of it is enough.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._pids import alive
from ..errors import JobError
from .inputs import recorded_inputs
from .results import JobResult, RunTable

__all__ = ["TAG", "CELL_METRIC", "runs", "get_run", "job_from_run", "job_filter", "artifact_text"]

TAG = "nbprod."
#: The metric holding a job's per-cell wall times: one value per cell, its step the user's cell
#: number (0: the injected parameters). MLflow's UI charts it against the step; ``get_run`` shows
#: them as a table (from the ``job/cells.json`` artefact, which also has each cell's first line).
CELL_METRIC = TAG + "cell_seconds"
KIND_FILTER = "tags.`nbprod.kind` = 'job'"


def job_filter() -> str:
    return KIND_FILTER


def _status(run, tags: dict[str, str]) -> str:
    status = tags.get(TAG + "status") or run.info.status
    if status == "RUNNING":
        # A job whose process was SIGKILLed never wrote its end: on this host, a dead pid says so.
        pid = tags.get(TAG + "pid")
        if tags.get(TAG + "host") == socket.gethostname() and pid and pid.isdigit() and not alive(int(pid)):
            return "KILLED"
    return status


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def job_from_run(run) -> JobResult:
    """A :class:`JobResult` from an MLflow run of a job."""
    tags = dict(run.data.tags)
    start = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc) if run.info.start_time else None
    if run.info.end_time and run.info.start_time:
        seconds = (run.info.end_time - run.info.start_time) / 1000
    else:
        seconds = float(tags.get(TAG + "seconds") or 0.0)
    status = _status(run, tags)
    models = [m for m in (tags.get(TAG + "models") or "").split(",") if m]
    output = tags.get(TAG + "output")
    dirty = tags.get(TAG + "git_dirty")
    return JobResult(
        notebook=Path(tags.get(TAG + "notebook") or tags.get("mlflow.source.name") or "?"),
        output=Path(output) if output else None,
        parameters=_json(tags.get(TAG + "parameters"), {}),
        seconds=seconds,
        ok=status == "FINISHED",
        kernel=tags.get(TAG + "kernel"),
        run_id=run.info.run_id,
        status=status,
        metrics={k: v for k, v in run.data.metrics.items() if not k.startswith(TAG)},  # the notebook's own
        models=models,
        error=_json(tags.get(TAG + "error"), None),
        start=start,
        attempts=int(tags.get(TAG + "attempts") or 1),
        notes=_json(tags.get(TAG + "notes"), []),
        environment={"python": tags.get(TAG + "python"), "digest": tags.get(TAG + "env_digest")},
        inputs=recorded_inputs(tags),
        git_commit=tags.get(TAG + "git_commit") or None,
        git_dirty=None if not dirty else dirty == "true",
        experiment=run.info.experiment_id,
        html=tags.get(TAG + "html"),
        rerun_of=tags.get(TAG + "rerun_of"),
    )


def _experiment_ids(c) -> list[str]:
    return [e.experiment_id for e in c.search_experiments()]


def runs(limit: int = 100, *, notebook: str | None = None, as_json: bool = False) -> RunTable:
    """The jobs in nbprod's MLflow store, newest first (``limit`` of them)."""
    from ..registry.store import client

    c = client()
    filters = [KIND_FILTER]
    name = Path(notebook).name if notebook else None
    if name:  # the tag is the notebook's absolute path: its file name follows a separator
        quote = '"' if "'" in name else "'"
        filters.append(f"tags.`nbprod.notebook` LIKE {quote}%{os.sep}{name.replace(quote, '%')}{quote}")
    found = c.search_runs(_experiment_ids(c), filter_string=" and ".join(filters),
                          order_by=["attributes.start_time DESC"], max_results=limit)
    jobs = [job_from_run(r) for r in found]
    if name:  # LIKE reads % and _ in a file name as wildcards
        jobs = [j for j in jobs if j.notebook.name == name]
    return RunTable(jobs, as_json=as_json)


#: The fewest characters of an id that name a job, as git abbreviates commits: `nbprod rerun 27` re-ran a job
#: whose id happened to start with 27 (a rerun executes the notebook again: deploys, registers, …).
MIN_PREFIX = 4


def resolve(run_id: str) -> str:
    """The full run id of the job ``run_id`` names (a unique prefix of :data:`MIN_PREFIX` or more is enough)."""
    from ..registry.store import client

    rid = (run_id or "").strip().lower()
    if not rid or any(ch not in "0123456789abcdef" for ch in rid):
        raise JobError(f"{run_id!r} is not a job id",
                       "pass a job id as `nbprod runs` shows it (hex, a prefix is enough)")
    if len(rid) < MIN_PREFIX:
        raise JobError(f"{run_id!r} is too short to name a job",
                       f"pass at least {MIN_PREFIX} characters of its id, as `nbprod runs` shows it")
    c = client()
    if len(rid) == 32:
        return rid
    matches: list[str] = []
    token = None
    while True:
        page = c.search_runs(_experiment_ids(c), filter_string=KIND_FILTER, max_results=1000, page_token=token)
        matches += [r.info.run_id for r in page if r.info.run_id.startswith(rid)]
        token = page.token
        if not token or len(matches) > 1:
            break
    if not matches:
        raise JobError(f"no job with id {run_id!r}", "list the jobs with `nbprod runs`")
    if len(matches) > 1:
        some = ", ".join(m[:12] for m in matches[:5])
        raise JobError(f"job id {run_id!r} is ambiguous: it starts {len(matches)} jobs ({some})",
                       "pass more characters of the id")
    return matches[0]


def get_run(run_id: str) -> JobResult:
    """One job by its id (a unique prefix is enough)."""
    from mlflow.exceptions import MlflowException

    from ..registry.store import client

    full = resolve(run_id)
    try:
        run = client().get_run(full)
    except MlflowException:
        raise JobError(f"no job with id {run_id!r}", "list the jobs with `nbprod runs`") from None
    if run.data.tags.get(TAG + "kind") != "job":
        raise JobError(f"run {full} is an MLflow run but not an nbprod job", "list the jobs with `nbprod runs`")
    job = job_from_run(run)
    job.cells = _cells(full)
    return job


def _cells(run_id: str) -> list[dict[str, Any]]:
    """The job's per-cell wall times, as recorded in its ``job/cells.json`` artefact."""
    cells = _json(artifact_text(run_id, "job/cells.json"), [])
    return cells if isinstance(cells, list) else []


def artifact_text(run_id: str, path: str) -> str | None:
    """The text of one artefact of the run (``None`` when the run has no such artefact)."""
    import shutil
    import tempfile

    from ..registry.store import client

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bar for one small file
    folder = tempfile.mkdtemp(prefix="nbprod-job-")
    try:
        return Path(client().download_artifacts(run_id, path, folder)).read_text(encoding="utf-8")
    except Exception:
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
