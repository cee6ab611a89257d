"""The executed copy's HTML rendering (nbconvert), made ready while the job's kernel works.

Importing nbconvert and loading its template costs about as much CPU as importing MLflow. A
process's first job starts a helper process (``python -m nbprod.jobs.render``, niced a little)
that does that on the machine's other core while this process imports MLflow and creates the
run, and then renders the executed copy it is handed: a one-job ``nbprod run`` process never
loads nbconvert itself. A process that runs more jobs (a notebook kernel, a sweep, a benchmark)
loads the exporter in a thread from its second job on and keeps it, so later jobs render in
place. Rendering is a convenience: when it fails the job has no HTML, the ``.ipynb`` is the record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["start", "begin", "render", "close"]

_exporter: list[Any] = []
_jobs_started: list[int] = []


def _load_exporter() -> Any:
    from .deferred import defer_iri_grammars

    defer_iri_grammars()
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="classic")
    exporter.from_notebook_node(nbformat.v4.new_notebook())
    return exporter


def _warm() -> None:
    try:
        _exporter.append(_load_exporter())
    except Exception:  # noqa: BLE001 - no nbconvert: no HTML rendering
        pass


class _Helper:
    """A helper process with nbconvert loaded, waiting for the path of the executed copy."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "nbprod.jobs.render"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")

    def begin(self, path: Path) -> None:
        """Hand over the executed copy now; the helper renders it while the job does other things."""
        try:
            stdin, self.proc.stdin = self.proc.stdin, None  # communicate() then only reads
            if stdin is not None:
                stdin.write(f"{path}\n")
                stdin.close()
        except (OSError, ValueError):  # the helper is gone: render() finds no output
            pass

    def render(self, path: Path) -> str | None:
        self.begin(path)
        try:
            out, _ = self.proc.communicate(timeout=120)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.close()
            return None
        return out if self.proc.returncode == 0 and out else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start() -> Any:
    """Begin preparing the rendering (a helper process for a process's first job, else a thread
    loading the exporter it keeps); the handle goes to :func:`render` and :func:`close`."""
    first = not _jobs_started
    _jobs_started.append(1)
    if _exporter:
        return None
    if first:
        try:
            return _Helper()
        except OSError:
            pass
    thread = threading.Thread(target=_warm, daemon=True, name="nbprod-html")
    thread.start()
    return thread


def begin(path: Path, handle: Any) -> None:
    """Let a helper process start rendering the executed copy at ``path`` (no-op in this process)."""
    if isinstance(handle, _Helper):
        handle.begin(path)


def render(nb, path: Path, handle: Any) -> str | None:
    """The HTML of the executed notebook ``nb`` (written at ``path``), or ``None``."""
    if isinstance(handle, _Helper):
        return handle.render(path)
    if isinstance(handle, threading.Thread):
        handle.join(timeout=120)
    if not _exporter:
        return None
    try:
        body, _ = _exporter[0].from_notebook_node(nb)
        return body
    except Exception:  # noqa: BLE001 - the .ipynb is the record
        return None


def close(handle: Any) -> None:
    """Stop a helper process that was not used (the job ended before there was a copy to render)."""
    if isinstance(handle, _Helper):
        handle.close()


def _main() -> int:
    if hasattr(os, "nice"):
        # the job's own process and kernel come first, but not by much: at nice 10 a machine busy
        # with other work starved the helper until the job's process waited 2-20 s for the HTML
        os.nice(3)
    exporter = _load_exporter()
    line = sys.stdin.readline().strip()
    if not line:
        return 1
    import nbformat

    body, _ = exporter.from_notebook_node(nbformat.read(line, as_version=4))
    sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
