"""``nbprod diff RUN_A RUN_B``: what differs between two jobs.

Parameters, metrics (absolute and relative change), the environment (Python, packages added,
removed or changed — from each job's pinned list) and the tracked inputs' hashes. ``rerun``
prints the same comparison against the job it re-ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._display import Display, Lines, Table, View
from .records import artifact_text, get_run
from .results import JobResult

__all__ = ["diff", "JobDiff"]


@dataclass(repr=False)
class JobDiff(Display):
    """Two jobs compared; each section lists only what differs (metrics list all, with changes)."""

    a: JobResult
    b: JobResult
    parameters: list[tuple[str, Any, Any]] = field(default_factory=list)
    metrics: list[tuple[str, float | None, float | None, float | None, float | None]] = field(default_factory=list)
    python: tuple[str | None, str | None] | None = None
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    inputs: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    ok = True

    @property
    def same_metrics(self) -> bool:
        return all(row[3] == 0 for row in self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.run_id, "b": self.b.run_id,
                "parameters": [{"name": n, "a": x, "b": y} for n, x, y in self.parameters],
                "metrics": [{"name": n, "a": x, "b": y, "change": d, "relative": r} for n, x, y, d, r in self.metrics],
                "python": list(self.python) if self.python else None,
                "packages": {"added": self.added, "removed": self.removed,
                             "changed": {k: list(v) for k, v in self.changed.items()}},
                "inputs": [{"name": n, "a": x, "b": y} for n, x, y in self.inputs]}

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        rows: list[tuple[str, str, str, str, str]] = []
        for name, x, y in self.parameters:
            rows.append(("parameter", name, repr(x) if x is not None else "-", repr(y) if y is not None else "-", ""))
        for name, x, y, d, r in self.metrics:
            relative = f" ({r:+.2%})" if r is not None else ""
            change = "same" if d == 0 else ("" if d is None else f"{d:+.6g}{relative}")
            rows.append(("metric", name, _num(x), _num(y), change))
        if self.python:
            rows.append(("python", "", str(self.python[0]), str(self.python[1]), ""))
        for name, v in sorted(self.added.items()):
            rows.append(("package", name, "-", v, "added"))
        for name, v in sorted(self.removed.items()):
            rows.append(("package", name, v, "-", "removed"))
        for name, (x, y) in sorted(self.changed.items()):
            rows.append(("package", name, x, y, "changed"))
        for name, x, y in self.inputs:
            rows.append(("input", name, (x or "-")[:16], (y or "-")[:16], "changed" if x and y else ""))
        return rows

    def _view(self) -> View:
        a, b = (self.a.run_id or "")[:8], (self.b.run_id or "")[:8]
        head = f"job {a} -> job {b}"
        rows = self._rows()
        if not rows:
            return View(f"{head}: same parameters, metrics, environment and inputs", tone="ok")
        parts: list[Any] = [Table(["", "name", a, b, "change"], rows, limit=0)]
        if not (self.parameters or self.python or self.added or self.removed or self.changed or self.inputs):
            parts.append(Lines(["same parameters, environment and inputs"], style="plain"))
        return View(head, parts)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _packages(job: JobResult) -> dict[str, Any] | None:
    text = artifact_text(job.run_id or "", "job/environment.json")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def compare(a: JobResult, b: JobResult) -> JobDiff:
    out = JobDiff(a, b)
    for name in sorted(set(a.parameters) | set(b.parameters)):
        x, y = a.parameters.get(name), b.parameters.get(name)
        if x != y:
            out.parameters.append((name, x, y))
    for name in sorted(set(a.metrics) | set(b.metrics)):
        x, y = a.metrics.get(name), b.metrics.get(name)
        d = None if x is None or y is None else y - x
        r = None if d is None or not x else d / abs(x)
        out.metrics.append((name, x, y, d, r))
    env_a, env_b = _packages(a), _packages(b)
    if env_a and env_b:
        if env_a.get("python") != env_b.get("python"):
            out.python = (env_a.get("python"), env_b.get("python"))
        pa, pb = env_a.get("packages", {}), env_b.get("packages", {})
        out.added = {k: v for k, v in pb.items() if k not in pa}
        out.removed = {k: v for k, v in pa.items() if k not in pb}
        out.changed = {k: (pa[k], pb[k]) for k in pa if k in pb and pa[k] != pb[k]}
    for name in sorted(set(a.inputs) | set(b.inputs)):
        x, y = a.inputs.get(name, {}).get("sha256"), b.inputs.get(name, {}).get("sha256")
        if x != y:
            out.inputs.append((name, x, y))
    return out


def diff(run_a: str, run_b: str) -> JobDiff:
    """Compare two jobs by id (unique prefixes accepted)."""
    return compare(get_run(run_a), get_run(run_b))
