"""After a job's last cell (or its failure): the outcome written down.

The executed copy gets the outcome in its metadata (and, after a dead kernel or a timeout, cell
statuses that say which cell failed and which never ran); the copy, its HTML rendering, the
source notebook, per-cell wall times and the environment are logged as artefacts in one call; the
run gets its parameters, status, attempts, error, the model versions the job produced and each
cell's wall time as the metric ``nbprod.cell_seconds`` (step: the cell's number), and is
closed with an MLflow status that is never FINISHED for a job that did not finish.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import render
from .params import user_code_cells
from .progress import first_line
from .records import CELL_METRIC, TAG
from .results import JobResult

__all__ = ["cell_error", "mark_unfinished", "cell_times", "cell_metrics", "finish", "models_of"]


def cell_error(nb, index: int | None, ename: str, evalue: str) -> dict[str, Any]:
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


def mark_unfinished(nb, index: int | None) -> None:
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


def cell_times(nb) -> list[dict[str, Any]]:
    """Each code cell's wall time (papermill's ``duration``), numbered as the user counts cells."""
    out = []
    number = 0
    for i, cell in enumerate(getattr(nb, "cells", [])):
        if cell.cell_type != "code":
            continue
        injected = "injected-parameters" in cell.metadata.get("tags", [])
        if not injected:
            number += 1
        meta = cell.metadata.get("papermill", {})
        out.append({"cell": 0 if injected else number, "index": i, "injected": injected,
                    "source": first_line(cell.source)[:120], "seconds": meta.get("duration"),
                    "status": meta.get("status")})
    return out


def cell_metrics(cells: list[dict[str, Any]]) -> list[Any]:
    """:data:`CELL_METRIC`, one MLflow metric entry per cell that ran."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(CELL_METRIC, float(c["seconds"]), now, int(c["cell"])) for c in cells
            if isinstance(c.get("seconds"), (int, float))]


def finish(store, run_id: str, source: Path, shown: Path, target: Path, params: dict[str, Any], nb, status: str,
           error: dict[str, Any] | None, attempts: int, retry_log: list[str], env: dict[str, Any], start: float,
           kernel_name: str, notes: list[str], live, warming: Any,
           kernel_exit: Callable[[], None] | None = None) -> JobResult:
    """Write the executed copy with the outcome in its metadata, log the artefacts, close the run.

    ``store`` writes the run (:mod:`.runstore`: this process or its helper); ``kernel_exit`` waits
    for the job's kernel to end: it is called before the run is read back (what the notebook
    flushes at exit is in it by then), while the HTML may still be rendering."""
    import nbformat

    from .records import job_from_run
    from .runstore import as_run

    seconds = time.perf_counter() - start
    if nb is not None:
        nb.metadata["nbprod"] = {"run_id": run_id, "status": status, "error": error, "attempts": attempts}
        nb.metadata["kernelspec"] = {**(nb.metadata.get("kernelspec") or {}), "name": kernel_name}
        if error:
            nb.metadata.setdefault("papermill", {})["exception"] = True
        tmp_out = target.with_name(target.name + ".tmp")
        if target.exists() and not target.stat().st_mode & 0o077:  # a private copy (nbprod._files) stays private
            from .._files import private_file

            private_file(tmp_out)
        nbformat.write(nb, str(tmp_out))
        os.replace(tmp_out, target)
        render.begin(target, warming)  # a helper renders it while the kernel exits
    # what the notebook logged itself is read once its kernel has exited (it may flush at exit),
    # while the HTML rendering (render.py) may still be under way
    if kernel_exit is not None:
        kernel_exit()
    stage = Path(tempfile.mkdtemp(prefix="nbprod-job-"))
    html_name = None
    cells = cell_times(nb)
    tags = {TAG + "status": status, TAG + "attempts": str(attempts), TAG + "seconds": f"{seconds:.3f}",
            TAG + "retries": json.dumps(retry_log) if retry_log else "",
            TAG + "error": json.dumps(error) if error else "", TAG + "kernel": kernel_name}
    try:
        shutil.copyfile(source, stage / "source.ipynb")
        if target.is_file():
            shutil.copyfile(target, stage / "executed.ipynb")
        if nb is not None:
            body = render.render(nb, target, warming)
            if body is not None:
                (stage / "executed.html").write_text(body, encoding="utf-8")
                html_name = "executed.html"
        (stage / "cells.json").write_text(json.dumps(cells, indent=1), encoding="utf-8")
        (stage / "environment.json").write_text(json.dumps(env, indent=1), encoding="utf-8")
        snap = store.close(run_id, stage=str(stage), params={k: str(v)[:6000] for k, v in params.items()},
                           tags=tags, cells=cells, html=html_name, status=status)
    finally:
        render.close(warming)  # unused when the job left no copy
        shutil.rmtree(stage, ignore_errors=True)
    if live is not None:
        live.close(status)
    result = job_from_run(as_run(snap))
    result._nb = nb
    result.notebook = shown
    result.cells = cells
    result.environment = env
    return result


def models_of(c, run_id: str) -> list[str]:
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
