"""``nbprod rerun RUN_ID``: the recorded notebook, with the recorded parameters, compared.

The notebook comes from the job's ``job/source.ipynb`` artefact, not from whatever the file
holds now; it runs in the recorded working folder so its relative paths still resolve. Tracked
inputs must still hash the same: a file input is checked before the kernel starts, a frame
input when the notebook computes it (``track_input`` raises in the kernel); either way the
error names the input and both hashes, and ``allow_changed_inputs=True`` runs regardless.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._display import Display, Lines, View
from ..errors import InputChanged, JobError, JobFailed
from .compare import JobDiff, compare
from .execute import run
from .inputs import file_hash
from .records import artifact_text, get_run
from .results import JobResult

__all__ = ["rerun", "Rerun"]

@dataclass(repr=False)
class Rerun(Display):
    """A re-run job and its comparison with the original."""

    result: JobResult
    diff: JobDiff

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def run_id(self) -> str | None:
        return self.result.run_id

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.result.to_dict(), "diff": self.diff.to_dict()}

    def _view(self) -> View:
        a, b = (self.diff.a.run_id or "")[:8], (self.result.run_id or "")[:8]
        same = "the same metrics" if self.diff.same_metrics else "metrics that differ"
        return View(f"job {b} re-ran job {a}: {self.result.status}, {same}",
                    [self.result, Lines([], title="compared with the original:"), self.diff],
                    tone="ok" if self.ok and self.diff.same_metrics else "warn")


def _check_file_inputs(original: JobResult) -> None:
    for name, info in original.inputs.items():
        path = info.get("path")
        if info.get("kind") != "file" or not path:
            continue
        if not Path(path).is_file():
            raise InputChanged(f"input {name!r} ({path}) is gone; the recorded job read sha256 {info['sha256']}",
                               "restore the file, or re-run with --allow-changed-inputs")
        now = file_hash(Path(path))
        if now != info.get("sha256"):
            raise InputChanged(
                f"input {name!r} ({path}) changed since job {original.run_id and original.run_id[:8]}: it was sha256 "
                f"{info['sha256']}, it is now {now}",
                "re-run with --allow-changed-inputs to run on the new data, or restore the old data")

def rerun(run_id: str, parameters: dict[str, Any] | None = None, *, allow_changed_inputs: bool = False,
          progress: bool | str = True, timeout: float | None = None, retries: int = 0) -> Rerun:
    """Re-run job ``run_id`` (a unique prefix is enough) with its recorded notebook and parameters
    (``parameters`` override them) and compare the new job with it."""
    original = get_run(run_id)
    if not allow_changed_inputs:
        _check_file_inputs(original)
    text = artifact_text(original.run_id or "", "job/source.ipynb")
    if text is None:
        again = _run_command(original)
        if original.status == "KILLED":  # SIGKILLed: it never reached its end, where the notebook is recorded
            raise JobError(f"job {run_id} was killed before it ended, so its notebook was not recorded",
                           f"run the notebook again from its file: {again}")
        raise JobError(f"job {run_id} has no recorded notebook (job/source.ipynb): an older nbprod recorded it",
                       f"run the notebook again from its file: {again}")
    params = {**original.parameters, **(parameters or {})}
    expected = {name: str(info["sha256"]) for name, info in original.inputs.items() if info.get("sha256")}

    cwd = None
    tags_cwd = _recorded_cwd(original)
    if tags_cwd and Path(tags_cwd).is_dir():
        cwd = tags_cwd
    folder = Path(tempfile.mkdtemp(prefix="nbprod-rerun-"))
    source = folder / Path(original.notebook).name
    source.write_text(text, encoding="utf-8")
    try:
        result = run(source, params, kernel=original.kernel if _installed(original.kernel) else None,
                     cwd=cwd, progress=progress, timeout=timeout, retries=retries,
                     allow_changed_inputs=allow_changed_inputs, _expect_inputs=expected,
                     _rerun_of=original.run_id, _record_as=original.notebook)
    except JobFailed as exc:
        exc.result.rerun_of = original.run_id
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Rerun(result, compare(original, result))

def _run_command(job: JobResult) -> str:
    """The ``nbprod run`` command line of ``job``'s notebook and parameters."""
    words = ["nbprod", "run", str(job.notebook)]
    for name, value in job.parameters.items():
        words += ["-p", name, value if isinstance(value, str) else json.dumps(value)]
    return shlex.join(words)


def _recorded_cwd(job: JobResult) -> str | None:
    from ..registry.store import client

    return client().get_run(job.run_id).data.tags.get("nbprod.cwd") if job.run_id else None

def _installed(kernel: str | None) -> bool:
    if not kernel:
        return False
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
        return True
    except NoSuchKernel:
        return False
