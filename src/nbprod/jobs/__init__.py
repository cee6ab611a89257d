"""Notebook jobs: tracked, reproducible re-runs of training notebooks (papermill + MLflow).

Modules, one job each:

- :mod:`.execute` — ``run``: execute a notebook on a real kernel as one MLflow run (the kernel's
  environment, retries, timeouts, kills);
- :mod:`.prepare` — before the first cell: kernel, experiment, parameter checks, where the copy goes;
- :mod:`.recording` — after the last cell: the outcome in the copy's metadata, artefacts, the run closed;
- :mod:`.runstore` — where the run is written: this process, or (a fresh process) a helper that imports
  MLflow while papermill is imported and the kernel boots;
- :mod:`.kernel`, :mod:`.render` — the kernel started before the run exists, the HTML rendered in a helper;
- :mod:`.environment` — the pinned package list and its digest, cached;
- :mod:`.params` — declared parameters (``inspect``), parameter files, what a notebook does with them;
- :mod:`.inputs` — ``track_input``: content hashes of what a job read;
- :mod:`.progress` — per-cell hooks on papermill's engine, the live progress display;
- :mod:`.records` — ``runs`` and ``get_run``: jobs read back from MLflow;
- :mod:`.replay` — ``rerun``: the recorded notebook with the recorded parameters;
- :mod:`.compare` — ``diff``: two jobs side by side;
- :mod:`.lint` — ``check``: the reproducibility lint for hand-over;
- :mod:`.results` — what they return, displayed.
"""

from __future__ import annotations

from ..errors import InputChanged, JobFailed
from .compare import JobDiff, diff
from .execute import DEFAULT_KERNEL, JobWarning, run
from .inputs import track_input
from .lint import CheckReport, check
from .params import Parameters, inspect
from .records import get_run, runs
from .replay import Rerun, rerun
from .results import JobResult, RunTable

__all__ = ["run", "rerun", "runs", "get_run", "diff", "check", "inspect", "track_input", "JobDiff", "Rerun",
           "CheckReport", "JobResult", "JobFailed", "JobWarning",
           "RunTable", "Parameters", "InputChanged", "DEFAULT_KERNEL"]
