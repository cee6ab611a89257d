"""``nbprod.sweep``: a grid of parameters, each combination a tracked notebook job, run in parallel on Dask.

Why each job is a task of its own: a job (:func:`nbprod.jobs.run`) starts its own kernel and its
own MLflow run, so combinations are independent and a Dask worker runs one at a time (a worker
per core, or a machine per worker on a real cluster). Without a cluster the jobs run in Dask's
local *process* scheduler, since MLflow keeps the active run per process. A job that fails is
reported in the table with its status and error; it never stops the sweep.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _dask, _format
from .._display import Display, Lines, Table, View, bundle_with_chart, show_with_chart
from ..errors import JobError

__all__ = ["sweep", "SweepResult", "parse_grid"]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["alpha=0.1,0.3", "l1_ratio=0.2,0.5"]`` → ``{"alpha": [0.1, 0.3], "l1_ratio": [0.2, 0.5]}``
    (values read as YAML scalars: numbers stay numbers)."""
    import yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise JobError(f"--grid {item!r} is not NAME=V1,V2,…", "e.g. --grid alpha=0.1,0.3,1.0")
        grid[name.strip()] = [yaml.safe_load(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _one(notebook: str, params: dict[str, Any], experiment: str | None, timeout: float | None) -> dict:
    """One combination as a tracked job; a failure is a row, not an exception."""
    from ..errors import NbprodError
    from ..jobs import JobFailed, run

    try:
        r = run(notebook, params, experiment=experiment, timeout=timeout, progress=False)
        return {"params": params, "run_id": r.run_id, "status": r.status, "metrics": dict(r.metrics),
                "seconds": r.seconds, "error": None}
    except JobFailed as exc:
        r = exc.result
        return {"params": params, "run_id": r.run_id, "status": r.status, "metrics": dict(r.metrics),
                "seconds": r.seconds, "error": exc.problem}
    except NbprodError as exc:
        return {"params": params, "run_id": None, "status": "FAILED", "metrics": {}, "seconds": 0.0,
                "error": exc.problem}


@dataclass(repr=False)
class SweepResult(Display):
    """Every combination's job: parameters, status, metrics; a table and a chart of ``metric``."""

    notebook: str
    grid: dict[str, list[Any]]
    rows: list[dict] = field(default_factory=list)
    metric: str | None = None
    ran_on: str = ""

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "FINISHED"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_frame(self):
        import pandas as pd

        records = [{**r["params"], "status": r["status"], **r["metrics"], "run_id": r["run_id"],
                    "seconds": round(r["seconds"], 1), "error": r["error"]} for r in self.rows]
        return pd.DataFrame.from_records(records)

    def best(self, metric: str | None = None, *, lower: bool = False) -> dict | None:
        m = metric or self.metric
        done = [r for r in self.rows if m in r["metrics"]]
        if not done:
            return None
        return (min if lower else max)(done, key=lambda r: r["metrics"][m])

    def chart(self):
        """``metric`` against the first parameter, a line per value of the second (Altair)."""
        import altair as alt

        frame = self.to_frame()
        if self.metric is None or self.metric not in frame.columns:
            return None
        names = list(self.grid)
        base = alt.Chart(frame.dropna(subset=[self.metric])).mark_line(point=True).encode(
            x=alt.X(f"{names[0]}:Q" if frame[names[0]].dtype.kind in "if" else f"{names[0]}:N"),
            y=alt.Y(f"{self.metric}:Q", scale=alt.Scale(zero=False)),
            tooltip=[*names, self.metric, "run_id"])
        if len(names) > 1:
            base = base.encode(color=alt.Color(f"{names[1]}:N"))
        return base.properties(title=f"{self.metric} by {', '.join(names)}", width=360, height=220)

    def _view(self) -> View:
        metrics = list(dict.fromkeys(m for r in self.rows for m in r["metrics"]))
        header = [*self.grid, "status", *metrics, "run_id", "seconds"]
        rows = [[*(str(r["params"].get(k)) for k in self.grid), r["status"],  # parameters as the grid gave them
                 *(r["metrics"].get(m) for m in metrics), r["run_id"], f"{r['seconds']:.1f}"] for r in self.rows]
        lines = [f"failed {r['params']}: {r['error']}" for r in self.failed]
        best = self.best()
        if best is not None:
            lines.append(f"best {self.metric}: {_format.number(best['metrics'][self.metric])} with {best['params']}")
        head = (f"sweep of {Path(self.notebook).name}: {_format.rows(len(self.rows), 'job')} on {self.ran_on}, "
                f"{_format.count(len(self.failed))} failed")
        return View(head, [Table(header, rows, more="more jobs (to_frame() has them all)", all_in_text=True),
                           Lines(lines, style="plain")], tone="bad" if self.failed else "ok")

    def _ipython_display_(self) -> None:
        """The table, then ``chart()`` as its own output, drawn as Vega-Lite 5 (``nbprod._charts``)."""
        show_with_chart(self, self.chart)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return bundle_with_chart(self, self.chart)


def sweep(notebook: str | Path, grid: dict[str, list[Any]], *, dask: Any = None, metric: str | None = None,
          experiment: str | None = None, timeout: float | None = None, progress: bool = True) -> SweepResult:
    """Run ``notebook`` once per combination of ``grid`` (``{"alpha": [0.1, 1.0], …}``) as tracked
    jobs, in parallel on Dask (``dask``: an address, a client, None for the local scheduler).
    ``metric``: the one to chart and rank (default: the first metric the jobs logged)."""
    import dask as dask_

    path = Path(notebook)
    if not path.is_file():
        raise JobError(f"no notebook at {path}", "pass the path of an existing .ipynb file")
    if not grid or any(not v for v in grid.values()):
        raise JobError("the grid is empty", "give each parameter at least one value, e.g. --grid alpha=0.1,1.0")
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    task = dask_.delayed(_one, pure=False)
    tasks = [task(str(path.resolve()), params, experiment, timeout) for params in combos]
    with _dask.connect(dask) as client:
        ran_on = _dask.describe(client) if client is not None else "local (Dask processes)"
        rows = _dask.run(tasks, client, desc=f"sweep {path.name}", progress=progress, local="processes")
    if metric is None:
        metric = next((m for r in rows for m in r["metrics"]), None)
    return SweepResult(str(path), grid, rows, metric, ran_on)
