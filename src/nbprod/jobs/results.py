"""What jobs return: one job (:class:`JobResult`, the result card) and the jobs table (:class:`RunTable`).

Both display themselves: an HTML card or table in a notebook, readable text in a terminal,
``to_dict()`` for code; the table prints as JSON lines for scripts (``nbprod runs --json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _format
from .._display import Cell, Display, Facts, Lines, Table, View

__all__ = ["JobResult", "RunTable", "STATUSES"]

#: A job's outcome. MLflow knows FINISHED/FAILED/KILLED/RUNNING; nbprod says why a job failed.
STATUSES = ("RUNNING", "FINISHED", "FAILED", "TIMEOUT", "KERNEL_DIED", "KILLED")


def _params(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in parameters.items()) or "none"


#: Cell rows a job's text and card show; a longer notebook shows its slowest cells.
CELL_ROWS = 12


def _cell_rows(cells: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str, str]], int]:
    """(cell number, wall time, status, first line) per cell to show, and how many were left out."""
    shown = cells
    if len(cells) > CELL_ROWS:
        slowest = sorted(cells, key=lambda c: -(c.get("seconds") or 0.0))[:CELL_ROWS - 2]
        shown = [c for c in cells if any(c is s for s in slowest)]
    rows = []
    for c in shown:
        seconds = c.get("seconds")
        injected = bool(c.get("injected"))
        line = "(the parameters papermill injected)" if injected else str(c.get("source") or "")
        wall = f"{seconds:.3f} s" if isinstance(seconds, (int, float)) else "-"
        rows.append(("-" if injected else str(c.get("cell", "?")), wall, str(c.get("status") or ""), line))
    return rows, len(cells) - len(shown)


def _metrics(metrics: dict[str, float], limit: int | None = None) -> str:
    items = sorted(metrics.items())[:limit]
    return ", ".join(f"{k}={v:.6g}" for k, v in items)


@dataclass(repr=False)
class JobResult(Display):
    """One job: what ran, with what, how it ended, what it measured and produced."""

    notebook: Path
    output: Path | None
    parameters: dict[str, Any]
    seconds: float
    ok: bool = True
    kernel: str | None = None
    _nb: Any = field(default=None, repr=False)
    run_id: str | None = None
    status: str = "FINISHED"
    metrics: dict[str, float] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    start: datetime | None = None
    attempts: int = 1
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    experiment: str | None = None
    html: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    rerun_of: str | None = None

    def tagged_output(self, tag: str) -> str:
        """The text printed by the cells tagged ``tag`` (e.g. the quickstart's ``summary``)."""
        nb = self._nb
        if nb is None and self.output is not None and Path(self.output).is_file():
            import nbformat

            nb = self._nb = nbformat.read(str(self.output), as_version=4)
        lines: list[str] = []
        for cell in getattr(nb, "cells", []):
            if cell.cell_type != "code" or tag not in cell.metadata.get("tags", []):
                continue
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    lines.append(out.get("text", ""))
                elif out.get("output_type") in ("execute_result", "display_data"):
                    lines.append(out.get("data", {}).get("text/plain", ""))
        return "".join(lines).rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "notebook": str(self.notebook),
                "output": str(self.output) if self.output else None, "parameters": self.parameters,
                "seconds": round(self.seconds, 2), "ok": self.ok, "kernel": self.kernel,
                "start": self.start.isoformat() if self.start else None, "metrics": self.metrics,
                "models": self.models, "error": self.error, "attempts": self.attempts, "notes": self.notes,
                "python": self.environment.get("python"), "environment_digest": self.environment.get("digest"),
                "inputs": {k: v.get("sha256") for k, v in self.inputs.items()}, "git_commit": self.git_commit,
                "git_dirty": self.git_dirty, "experiment": self.experiment, "rerun_of": self.rerun_of,
                "cells": [{"cell": c.get("cell"), "seconds": c.get("seconds"), "status": c.get("status"),
                           "source": c.get("source")} for c in self.cells]}

    def _view(self) -> View:
        head = f"job {self.run_id[:8]} " if self.run_id else ""
        headline = (f"{head}{self.status}: {self.notebook} in {self.seconds:.1f} s "
                    f"(parameters: {_params(self.parameters)})")
        facts: list[tuple[str, Any]] = []
        if self.error:
            facts.append(("error", str(self.error.get("message"))))
        if self.metrics:
            facts.append(("metrics", _metrics(self.metrics)))
        if self.models:
            facts.append(("models", ", ".join(self.models)))
        if self.attempts > 1:
            facts.append(("attempts", str(self.attempts)))
        facts += [("note", n) for n in self.notes]
        facts.append(("executed copy", str(self.output) + (f"\nHTML: {self.html}" if self.html else "")))
        if self.run_id:  # what a user types next
            facts += [("rerun", f"nbprod rerun {self.run_id[:8]}"), ("compare", f"nbprod diff {self.run_id[:8]} OTHER")]
        parts: list[Any] = [Facts(facts)]
        if self.cells:
            rows, more = _cell_rows(self.cells)
            parts.append(Lines([], title="cell times (wall):"))
            rows_shown = [[n, t, st, Cell(src[:70], title=src if len(src) > 70 else None, html_text=src[:80])]
                          for n, t, st, src in rows]
            parts.append(Table(["cell", "wall time", "status", "first line"], rows_shown, limit=0))
            if more:
                parts.append(Lines([f"… and {more} faster cells (all of them: nbprod.get_run(id).cells)"]))
        tone = "ok" if self.status == "FINISHED" else None if self.status == "RUNNING" else "bad"
        return View(headline, parts, tone=tone)


@dataclass(repr=False)
class RunTable(Display):
    """``nbprod runs``: the jobs, newest first."""

    jobs: list[JobResult]
    as_json: bool = False
    ok = True

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self):
        return iter(self.jobs)

    def __getitem__(self, i: int) -> JobResult:
        return self.jobs[i]

    def to_dict(self) -> list[dict[str, Any]]:
        return [j.to_dict() for j in self.jobs]

    def _row(self, j: JobResult) -> list[str]:
        start = j.start.strftime("%Y-%m-%d %H:%M:%S") if j.start else "-"
        return [(j.run_id or "")[:8], j.status, start, f"{j.seconds:.1f} s", Path(j.notebook).name,
                _params(j.parameters) if j.parameters else "-", _metrics(j.metrics, 3) or "-",
                ", ".join(j.models) or "-"]

    _HEAD = ["id", "status", "start (UTC)", "duration", "notebook", "parameters", "metrics", "models"]

    def _view(self) -> View:
        if self.as_json:  # for scripts: one JSON object a line, no headline
            return View("", [Lines([json.dumps(j.to_dict(), default=str) for j in self.jobs], style="pre")])
        if not self.jobs:
            return View("no jobs yet: run one with `nbprod run NOTEBOOK.ipynb`")
        rows = [[Cell(_format.truncate(c, 40), title=c if len(c) > 40 else None) for c in self._row(j)]
                for j in self.jobs]
        return View(f"{_format.count(len(self.jobs))} job{'s' if len(self.jobs) != 1 else ''}, newest first",
                    [Table(self._HEAD, rows, all_in_text=True)])
