"""What a user does in JupyterLab, as helpers for the browser tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Lab", "open_notebook", "new_notebook", "wait_idle", "run_all", "run_cell", "screenshot_dir",
           "screenshot"]

PROJECT = Path(__file__).resolve().parents[2]
_VISIBLE_PANEL = "[...document.querySelectorAll('.jp-NotebookPanel')].filter(p => p.offsetParent).pop()"


@dataclass
class Lab:
    """A running JupyterLab: where it is, how to log in, what it serves and which nbprod home it uses."""

    url: str
    token: str
    root: Path
    home: Path
    log: Path
    process: subprocess.Popen

    def url_for(self, path: str = "lab") -> str:
        return f"{self.url}/{path.lstrip('/')}"

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def open_notebook(page: Any, lab: Lab, path: str) -> Any:
    """Open ``path`` (relative to ``lab.root``), wait until its kernel is idle; returns the notebook panel."""
    page.goto(lab.url_for(f"lab/tree/{path}"))
    panel = page.locator(".jp-NotebookPanel:visible").last
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    wait_idle(page)
    return panel


def new_notebook(page: Any, *, wait_kernel: bool = True) -> Any:
    """A new, empty notebook on the Python 3 kernel, from a new launcher (File > New Launcher), as a
    user makes one; with ``wait_kernel=False`` it returns as soon as the notebook shows, its kernel
    maybe still starting (what a user who clicks at once meets)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^New Launcher$")).click()
    page.locator(".jp-LauncherCard[title^='Python 3']:visible").first.click()
    panel = page.locator(".jp-NotebookPanel:visible").last
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    if wait_kernel:
        wait_idle(page)
    return panel


def wait_idle(page: Any, timeout_s: float = 120.0) -> None:
    """Until the visible notebook's kernel is connected and idle, as its front end knows it.

    The toolbar's execution indicator alone is not enough: it says ``idle`` from the moment a
    notebook opens, before the notebook's kernel session exists, and a cell run in that window is
    dropped by JupyterLab without a trace (the prompt stays ``[ ]``). So the session's kernel
    connection is asked too (``window.jupyterapp``: the ``lab`` fixture exposes the app)."""
    page.wait_for_function(
        f"""() => {{
            const panel = {_VISIBLE_PANEL};
            const status = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
            if (!status || status.getAttribute('data-status') !== 'idle') return false;
            const app = window.jupyterapp;
            const widget = app && [...app.shell.widgets('main')].find(w => w.node === panel);
            const session = widget && widget.sessionContext && widget.sessionContext.session;
            const kernel = session && session.kernel;
            return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
        }}""", timeout=timeout_s * 1000, polling=250)


def run_all(page: Any, timeout_s: float = 600.0) -> None:
    """Click into the notebook, Run > Run All Cells, then wait until no cell is queued or running
    (``[*]``) and the kernel is idle.

    A cell that raises stops the run (JupyterLab leaves the cells after it unrun): the wait ends
    there too, and the caller's assertions say which cell failed."""
    panel = page.locator(".jp-NotebookPanel:visible").last
    started = f"""() => {{
        const panel = {_VISIBLE_PANEL};
        return panel && [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
            .some(p => p.textContent.includes('*') || /\\d/.test(p.textContent));
    }}"""
    # once: the notebook's kernel is connected and idle (open_notebook and new_notebook wait for it,
    # wait_idle), so the command is not dropped as it was by a page still wiring its kernel up
    panel.locator(".jp-Notebook .jp-Cell").first.click()  # the notebook is the current widget: Run acts on it
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                 has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(started, timeout=60_000, polling=250)
    page.wait_for_function(
        f"""() => {{
            const panel = {_VISIBLE_PANEL};
            if (!panel) return false;
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim());
            const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return prompts.some(p => /^\\[\\d+\\]:$/.test(p)) && !prompts.some(p => p.includes('*'))
                && status && status.getAttribute('data-status') === 'idle';
        }}""", timeout=timeout_s * 1000, polling=500)


def run_cell(page: Any, source: str, timeout_s: float = 120.0) -> Any:
    """Type ``source`` into the last cell of the visible notebook and run it (Ctrl+Enter); returns that cell.
    The notebook's kernel must be connected and idle (:func:`wait_idle`), as after :func:`new_notebook`."""
    panel = page.locator(".jp-NotebookPanel:visible").last
    cells = panel.locator(".jp-Notebook .jp-CodeCell")
    cell = cells.nth(cells.count() - 1)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(source)
    # once: the kernel is connected and idle (new_notebook and the previous run_cell end with
    # wait_idle), so the keystroke is not dropped as it was by a notebook still wiring its kernel up
    page.keyboard.press("Control+Enter")
    cell.locator(".jp-InputPrompt", has_text=re.compile(r"^\[\d+\]:$")).wait_for(timeout=timeout_s * 1000)
    wait_idle(page, timeout_s)
    return cell


def screenshot_dir(fallback: Path) -> Path:
    """Where screenshots go: ``docs/`` with ``NBPROD_UPDATE_SCREENSHOTS=1`` (``make screenshots``, for the
    README), else ``fallback`` (a test's tmp dir), so that ``make test`` leaves the work tree as it was."""
    return PROJECT / "docs" if os.environ.get("NBPROD_UPDATE_SCREENSHOTS") == "1" else fallback


def screenshot(target: Any, name: str, directory: Path) -> Path:
    """Save a PNG of ``target`` (a page or a locator) as ``<directory>/<name>.png``."""
    path = directory / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(path), animations="disabled")
    return path
