"""Notebooks as reproducible jobs: ``nbprod run train.ipynb -p alpha 0.1``.

A job is one papermill execution on a real kernel. The executed copy — parameters injected,
every output kept — lands in ``$NBPROD_HOME/runs/`` under a name that sorts by time, so the
record of what ran is the notebook itself. A failing cell raises :class:`JobError` naming the
cell, its source and the error, and the executed copy up to that cell is still written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import settings
from .errors import JobError

__all__ = ["run", "JobResult"]


@dataclass
class JobResult:
    """An executed notebook: where it is, how long it took, what it was given."""

    notebook: Path
    output: Path
    parameters: dict[str, Any]
    seconds: float
    ok: bool = True
    kernel: str | None = None
    _nb: Any = field(default=None, repr=False)

    def tagged_output(self, tag: str) -> str:
        """The text printed by the cells tagged ``tag`` (e.g. the quickstart's ``summary``)."""
        lines: list[str] = []
        for cell in self._nb.cells:
            if cell.cell_type != "code" or tag not in cell.metadata.get("tags", []):
                continue
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    lines.append(out.get("text", ""))
                elif out.get("output_type") in ("execute_result", "display_data"):
                    lines.append(out.get("data", {}).get("text/plain", ""))
        return "".join(lines).rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": str(self.notebook), "output": str(self.output), "parameters": self.parameters,
                "seconds": round(self.seconds, 2), "ok": self.ok, "kernel": self.kernel}

    def __repr__(self) -> str:  # a terminal shows the readable text, not the dataclass fields
        return str(self)

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items()) or "none"
        return f"ran {self.notebook} in {self.seconds:.1f} s (parameters: {params})\nexecuted copy: {self.output}"

    def _repr_html_(self) -> str:
        from html import escape

        params = escape(", ".join(f"{k}={v!r}" for k, v in self.parameters.items()) or "none")
        return (f"<div><b>nbprod job</b> <code>{escape(str(self.notebook))}</code> — {self.seconds:.1f} s<br>"
                f"parameters: <code>{params}</code><br>executed copy: <code>{escape(str(self.output))}</code></div>")


def _output_path(notebook: Path) -> Path:
    runs = settings.home_path / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return runs / f"{notebook.stem}-{stamp}.ipynb"


#: The kernel of a notebook that names none (nbformat.v4.new_notebook() writes no kernelspec):
#: Jupyter's default, which ``make install`` registers for this environment.
DEFAULT_KERNEL = "python3"


def _kernel_of(notebook: Path) -> str:
    """The notebook's own kernel name, or :data:`DEFAULT_KERNEL` (papermill refuses a notebook
    without one, with "No kernel name found")."""
    import json

    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise JobError(f"cannot read {notebook} as a notebook: {exc}", "pass a valid .ipynb file (JSON)") from exc
    return (metadata.get("kernelspec") or {}).get("name") or DEFAULT_KERNEL


def run(notebook: str | Path, parameters: dict[str, Any] | None = None, *, output: str | Path | None = None,
        kernel: str | None = None, cwd: str | Path | None = None, progress: bool = True,
        timeout: float | None = None) -> JobResult:
    """Execute ``notebook`` with ``parameters`` through papermill on a real kernel.

    The notebook runs in its own folder (or ``cwd``), like in JupyterLab, so relative paths in it
    keep working. Returns a :class:`JobResult`; a failing cell raises :class:`JobError`.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(notebook)
    if not source.is_file():
        raise JobError(f"no notebook at {source}", "pass the path of an existing .ipynb file")
    if source.suffix != ".ipynb":
        raise JobError(f"{source} is not a notebook (.ipynb)", "pass a Jupyter notebook file")
    target = Path(output) if output else _output_path(source)
    parameters = dict(parameters or {})
    kernel = kernel or _kernel_of(source)
    start = time.perf_counter()
    # The kernel inherits these: the registry and the audit log record which notebook ran, and the
    # job uses the caller's nbprod home (the kernel runs in the notebook's folder, where a relative
    # default home would otherwise put a second, separate registry).
    kernel_env = {"NBPROD_NOTEBOOK": str(source.resolve()), "NBPROD_HOME": settings.home}
    previous = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        nb = papermill.execute_notebook(
            str(source), str(target), parameters=parameters, kernel_name=kernel, progress_bar=progress,
            cwd=str(cwd or source.parent.resolve()), execution_timeout=timeout,
        )
    except PapermillExecutionError as exc:
        raise JobError(
            f"{source} failed in cell {exc.exec_count} with {exc.ename}: {exc.evalue}",
            f"open the executed copy {target} to see the failing cell and its traceback",
        ) from exc
    except Exception as exc:  # kernel missing, unreadable notebook, …
        raise JobError(f"cannot run {source}: {exc}", "check the notebook's kernel (jupyter kernelspec list) and JSON") from exc
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return JobResult(source, target, parameters, time.perf_counter() - start,
                     kernel=nb.metadata.get("kernelspec", {}).get("name") or kernel, _nb=nb)
