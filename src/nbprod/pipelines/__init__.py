"""Pipelines: a YAML file of notebook steps and built-in verbs, run with gates, tracked, resumable.

Modules, one job each:

- :mod:`.spec` — read and check a pipeline file (unknown step, cycle, missing output, unknown verb:
  a :class:`~nbprod.errors.PipelineError` naming the line), before anything runs;
- :mod:`.verbs` — the built-in steps (validate, drift, evaluate, register, deploy, canary, promote,
  decommission, wait) and their gates;
- :mod:`.runner` — ``pipeline``, ``plan``, ``resume``, ``runs``: MLflow parent/child runs, audit rows;
- :mod:`.paths` — where relative paths point: the file's beside it, the caller's ``-p`` values at the
  caller's working directory, for every front end;
- :mod:`.store` — runs and the per-pipeline lock in the state DB;
- :mod:`.guard` — the detached process that rolls a canary back when its runner dies;
- :mod:`.cron` — five-field schedules (``schedule:``), no dependency;
- :mod:`.results` — what they return, displayed (text; an SVG graph of the steps in a notebook).
"""

from __future__ import annotations

from .results import PipelineRun, PipelineRuns, Plan
from .runner import get_run, pipeline, plan, resume, runs
from .spec import Pipeline, load

__all__ = ["pipeline", "plan", "resume", "runs", "get_run", "load", "Pipeline", "Plan", "PipelineRun", "PipelineRuns"]
