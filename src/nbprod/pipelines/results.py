"""What the pipeline verbs return: a :class:`Plan`, a :class:`PipelineRun`, the :class:`PipelineRuns` table.

Each displays through :mod:`nbprod._display` (readable text for the CLI, HTML in a notebook) and its
HTML shows a graph of the steps coloured by state — an inline SVG generated here (a ``Markup`` part),
so it shows in JupyterLab offline with nothing to load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from .._display import Display, Facts, Lines, Markup, Table, View

__all__ = ["Plan", "PipelineRun", "PipelineRuns", "svg"]

COLOURS = {"pending": "#9e9e9e", "running": "#1565c0", "done": "#2e7d32", "gate_failed": "#e65100",
           "failed": "#c62828", "skipped": "#bdbdbd", "planned": "#5c6bc0"}


def svg(steps: list[dict]) -> str:
    """Steps left to right, an arrow for each dependency, each box coloured by its state."""
    w, h, gap = 120, 44, 30
    pos = {s["name"]: i for i, s in enumerate(steps)}
    width = len(steps) * (w + gap) + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 70}" '
             f'font-family="sans-serif" font-size="12">',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>']
    for s in steps:
        i = pos[s["name"]]
        x = gap + i * (w + gap)
        for need in s.get("needs", []):
            if need in pos:
                j = pos[need]
                x0 = gap + j * (w + gap) + w
                if j == i - 1:
                    parts.append(f'<line x1="{x0}" y1="{20 + h / 2}" x2="{x - 2}" y2="{20 + h / 2}" stroke="#555" '
                                 'marker-end="url(#a)"/>')
                else:
                    mid = (x0 - w / 2 + x + w / 2) / 2
                    parts.append(f'<path d="M{x0 - w / 2},{20 + h} Q{mid},{20 + h + 40} {x + w / 2},{20 + h + 2}" '
                                 'fill="none" stroke="#999" marker-end="url(#a)"/>')
        colour = COLOURS.get(s.get("status", "pending"), "#9e9e9e")
        title = escape(f"{s['name']} ({s.get('kind')}): {s.get('status')}"
                       + (f" — {s['reason']}" if s.get("reason") else ""))
        parts.append(f'<g><title>{title}</title><rect x="{x}" y="20" width="{w}" height="{h}" rx="6" '
                     f'fill="{colour}"/><text x="{x + w / 2}" y="{20 + h / 2 - 3}" fill="white" '
                     f'text-anchor="middle">{escape(s["name"])}</text>'
                     f'<text x="{x + w / 2}" y="{20 + h / 2 + 12}" fill="white" text-anchor="middle" font-size="10">'
                     f'{escape(str(s.get("kind")))} · {escape(str(s.get("status")))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(repr=False)
class Plan(Display):
    """What ``nbprod pipeline run`` would do, in order; nothing has run."""

    pipeline: str
    path: str
    params: dict
    steps: list[dict]  # name, kind, needs, inputs, changes
    schedule: str | None = None
    ok: bool = True

    def _view(self) -> View:
        headline = (f"pipeline {self.pipeline} ({self.path}) — plan, nothing runs"
                    + (f"; schedule {self.schedule!r}" if self.schedule else ""))
        lines = []  # one block a step with its inputs: a table of them would be too wide to read
        for i, s in enumerate(self.steps, 1):
            lines.append(f"{i}. {s['name']} [{s['kind']}]" + (f" after {', '.join(s['needs'])}" if s["needs"] else ""))
            for k, v in s["inputs"].items():
                lines.append(f"     {k}: {_short(v)}")
            lines.append(f"     changes: {s['changes']}")
        graph = Markup(svg([{**s, "status": "planned"} for s in self.steps]))
        return View(headline, [graph, Lines(lines, style="pre")])

    def to_dict(self) -> dict:
        return {"pipeline": self.pipeline, "path": self.path, "params": self.params, "steps": self.steps,
                "schedule": self.schedule}


@dataclass(repr=False)
class PipelineRun(Display):
    """One run: its status (FINISHED, GATE_FAILED, FAILED, RUNNING, INTERRUPTED), each step's state and outputs."""

    run_id: str
    pipeline: str
    path: str
    status: str
    steps: list[dict]
    reason: str | None = None
    params: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"

    def outputs(self, step: str) -> dict:
        return next((s.get("outputs") or {}) for s in self.steps if s["name"] == step)

    def step(self, name: str) -> dict:
        return next(s for s in self.steps if s["name"] == name)

    @property
    def next_commands(self) -> list[str]:
        if self.ok:
            return []
        return [f"nbprod pipeline show {self.run_id}", f"nbprod pipeline resume {self.run_id}"]

    def _view(self) -> View:
        headline = f"pipeline {self.pipeline} run {self.run_id}: {self.status}" + (
            f" — {self.reason}" if self.reason else "")
        rows = [[s["name"], s.get("kind", ""), s.get("status", "pending"), s.get("reason") or ""] for s in self.steps]
        parts: list[Any] = [Markup(svg(self.steps)), Table(["step", "kind", "status", "reason"], rows, limit=0)]
        if not self.ok:
            parts.append(Facts([("inspect", self.next_commands[0]), ("resume", self.next_commands[1])], code=True))
        tone = "ok" if self.ok else "warn" if self.status in ("GATE_FAILED", "RUNNING") else "bad"
        return View(headline, parts, tone=tone)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "pipeline": self.pipeline, "path": self.path, "status": self.status,
                "reason": self.reason, "params": self.params, "steps": self.steps}


@dataclass(repr=False)
class PipelineRuns(Display):
    """Pipeline runs, newest first; ``--json`` prints one object per line."""

    runs: list[dict]
    as_json: bool = False

    def __len__(self) -> int:
        return len(self.runs)

    def _view(self) -> View:
        if self.as_json:  # for scripts: one JSON object a line, no headline (nothing when there are no runs)
            return View("", [Lines([json.dumps({"run_id": r["run_id"], "pipeline": r["pipeline"], "status": r["status"],
                                                "reason": r.get("reason"), "started_at": r["started_at"]})
                                    for r in self.runs], style="pre")])
        if not self.runs:
            return View("no pipeline runs yet")
        rows = [[r["run_id"], r["pipeline"], r["status"], r.get("reason") or ""] for r in self.runs]
        return View(f"{len(self.runs)} pipeline run{'s' if len(self.runs) != 1 else ''}, newest first",
                    [Table(["run", "pipeline", "status", "reason"], rows, all_in_text=True)])
