"""What jobs return: one job (:class:`JobResult`, the result card) and the jobs table (:class:`RunTable`).

Both display themselves: an HTML card or table in a notebook, readable text in a terminal,
``to_dict()`` for code; the table prints as JSON lines for scripts (``nbprod runs --json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["JobResult", "RunTable", "STATUSES"]

#: A job's outcome. MLflow knows FINISHED/FAILED/KILLED/RUNNING; nbprod says why a job failed.
STATUSES = ("RUNNING", "FINISHED", "FAILED", "TIMEOUT", "KERNEL_DIED", "KILLED")
_COLOURS = {"FINISHED": "#2e7d32", "RUNNING": "#1565c0"}


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


@dataclass
class JobResult:
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

    def __repr__(self) -> str:  # a terminal shows the readable text, not the dataclass fields
        return str(self)

    def __str__(self) -> str:
        head = f"job {self.run_id[:8]} " if self.run_id else ""
        lines = [f"{head}{self.status}: {self.notebook} in {self.seconds:.1f} s "
                 f"(parameters: {_params(self.parameters)})"]
        if self.error:
            lines.append(f"error: {self.error.get('message')}")
        if self.metrics:
            lines.append(f"metrics: {_metrics(self.metrics)}")
        if self.models:
            lines.append(f"models: {', '.join(self.models)}")
        if self.attempts > 1:
            lines.append(f"attempts: {self.attempts}")
        lines += [f"note: {n}" for n in self.notes]
        if self.cells:
            rows, more = _cell_rows(self.cells)
            lines.append("cell times (wall):")
            lines += [f"  cell {n:>3}  {t:>10}  {st:<9}  {src[:70]}".rstrip() for n, t, st, src in rows]
            if more:
                lines.append(f"  … and {more} faster cells (all of them: nbprod.get_run(id).cells)")
        lines.append(f"executed copy: {self.output}")
        if self.run_id:
            lines.append(f"rerun: nbprod rerun {self.run_id[:8]}   compare: nbprod diff {self.run_id[:8]} OTHER")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.status, "#c62828")
        rows = [("parameters", f"<code>{escape(_params(self.parameters))}</code>")]
        if self.error:
            rows.append(("error", f"<code>{escape(str(self.error.get('message')))}</code>"))
        if self.metrics:
            shown = (f"{escape(k)} = <b>{v:.6g}</b>" for k, v in sorted(self.metrics.items()))
            rows.append(("metrics", "<br>".join(shown)))
        if self.models:
            rows.append(("models", escape(", ".join(self.models))))
        if self.attempts > 1:
            rows.append(("attempts", str(self.attempts)))
        rows += [("note", escape(n)) for n in self.notes]
        if self.cells:
            cell_rows, more = _cell_rows(self.cells)
            table = "".join(f"<tr><td>{escape(n)}</td><td style='text-align:right'>{escape(t)}</td>"
                            f"<td>{escape(st)}</td><td style='text-align:left'><code>{escape(src[:80])}</code>"
                            "</td></tr>" for n, t, st, src in cell_rows)
            tail = f"<div>… and {more} faster cells</div>" if more else ""
            rows.append(("cell times", f"<table class='nbprod-cells'><tr><th>cell</th><th>wall time</th>"
                                       f"<th>status</th><th>first line</th></tr>{table}</table>{tail}"))
        link = escape(str(self.output))
        rows.append(("executed copy", f"<a href='{link}' target='_blank'><code>{link}</code></a>"
                     + (f" · <a href='{escape(self.html)}' target='_blank'>HTML</a>" if self.html else "")))
        body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th>"
                       f"<td style='text-align:left'>{v}</td></tr>" for k, v in rows)
        rid = f" <code>{escape(self.run_id[:8])}</code>" if self.run_id else ""
        return (f"<div class='nbprod-job'><b>nbprod job</b>{rid} <span style='color:{colour};font-weight:bold'>"
                f"{escape(self.status)}</span> <code>{escape(str(self.notebook))}</code> — {self.seconds:.1f} s"
                f"<table>{body}</table></div>")


@dataclass
class RunTable:
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

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        if self.as_json:
            return "\n".join(json.dumps(j.to_dict(), default=str) for j in self.jobs)
        if not self.jobs:
            return "no jobs yet: run one with `nbprod run NOTEBOOK.ipynb`"
        rows = [self._HEAD] + [self._row(j) for j in self.jobs]
        widths = [min(40, max(len(r[i]) for r in rows)) for i in range(len(self._HEAD))]
        return "\n".join("  ".join(c[:40].ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        if not self.jobs:
            return f"<div>{escape(str(self))}</div>"
        head = "".join(f"<th>{escape(h)}</th>" for h in self._HEAD)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{escape(c)}</td>" for c in self._row(j)) + "</tr>"
                       for j in self.jobs)
        return f"<table class='nbprod-runs'><tr>{head}</tr>{body}</table>"
