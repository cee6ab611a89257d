"""Watching a job's cells: per-cell timing hooks on papermill's engine, and the progress display.

papermill calls its execution manager at each cell's start and end; :class:`Watch` hooks those
calls to keep the partly executed notebook at hand (a dead kernel or a timeout leaves papermill
with no copy that says so) and to drive a progress display. In a terminal papermill's own tqdm
bar does that; in a notebook :class:`NotebookProgress` shows a live line — current cell, its
first line, elapsed time — updated in place from a timer thread, so a long cell still ticks.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, cast

from ..errors import JobError

__all__ = ["Watch", "NotebookProgress", "ENGINE", "in_notebook", "register_engine"]

ENGINE = "nbprod"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a live HTML display can be updated)."""
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")


class Watch:
    """Hooks papermill's execution manager: the notebook being executed and a per-cell callback."""

    def __init__(self, on_cell: Callable[[int, int, Any], None] | None = None) -> None:
        self.nb_man: Any = None
        self.on_cell = on_cell
        self.current: int | None = None

    @property
    def nb(self):
        return self.nb_man.nb if self.nb_man is not None else None

    def attach(self, nb_man) -> None:
        self.nb_man = nb_man
        start = nb_man.cell_start

        def cell_start(cell, cell_index=None, **kwargs):
            self.current = cell_index
            if self.on_cell is not None and cell_index is not None:
                self.on_cell(cell_index, len(nb_man.nb.cells), cell)
            return start(cell, cell_index, **kwargs)

        nb_man.cell_start = cell_start


def register_engine() -> None:
    """Make papermill's engine ``nbprod`` available (idempotent; papermill is imported here, not
    when nbprod is)."""
    from jupyter_core.utils import ensure_async, run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, logger, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    if ENGINE in papermill_engines._engines:
        return

    class NbprodClient(PapermillNotebookClient):
        """papermill's client, which can take over a kernel the job started early (``km``) and
        set the job's run in it (``nbprod_setup``, one silent request) before the first cell."""

        def __init__(self, nb_man, nbprod_setup: str | None = None, nbprod_early: Any = None, **kwargs):
            super().__init__(nb_man, **kwargs)
            self.nbprod_setup = nbprod_setup
            self.nbprod_early = nbprod_early
            if kwargs.get("km") is not None:
                self.owns_km = True  # shut down after the last cell, like a kernel nbclient started
            kc = getattr(nbprod_early, "kc", None)
            if kc is not None and kwargs.get("km") is getattr(nbprod_early, "km", None):
                # its client connected and found the kernel ready while the run was being created
                # (kernel.py): nbclient's setup_kernel then starts none of its own
                kc.allow_stdin = False
                cast(Any, self).kc = kc

        async def _async_cleanup_kernel(self) -> None:
            early, me = self.nbprod_early, cast(Any, self)  # nbclient's traits: untyped for mypy
            if early is None or me.km is not early.km:
                return await super()._async_cleanup_kernel()
            # the job's early kernel: asked to shut down here, waited for later (kernel.py)
            try:
                await early.request_shutdown(getattr(me, "kc", None))
            finally:
                if getattr(me, "kc", None) is not None:
                    await ensure_async(me.kc.stop_channels())
                    me.kc = None
                me.km = None

        _cleanup_kernel = run_sync(_async_cleanup_kernel)  # what papermill's (sync) setup_kernel calls

        def papermill_execute_cells(self):
            if self.nbprod_setup:
                reply = self.wait_for_reply(self.kc.execute(self.nbprod_setup, silent=True, store_history=False,
                                                            allow_stdin=False))
                if not reply or reply["content"].get("status") != "ok":
                    raise JobError("the kernel refused the job's environment: "
                                   f"{(reply or {}).get('content', {}).get('evalue', 'no reply')}",
                                   "check the kernel's start-up files (IPython profile) for errors")
            super().papermill_execute_cells()

    class NbprodEngine(NBClientEngine):
        """papermill's nbclient engine, with nbprod's :class:`Watch` attached to its manager."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                     start_timeout=60, execution_timeout=None, nbprod_watch=None, **kwargs):
            if nbprod_watch is not None:
                nbprod_watch.attach(nb_man)
            # NBClientEngine.execute_managed_notebook, with nbprod's client
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logger, log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            return NbprodClient(nb_man, **final).execute()

    papermill_engines.register(ENGINE, NbprodEngine)


class NotebookProgress:
    """A live progress line in a notebook cell's output, then cleared for the result card."""

    def __init__(self, notebook: str) -> None:
        from IPython.display import HTML, display

        self._HTML = HTML
        self.notebook = notebook
        self.start = time.monotonic()
        self.index, self.total, self.line = 0, 0, "starting the kernel"
        self.handle = display(HTML(self._html()), display_id=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="nbprod-progress")
        self._thread.start()

    def _html(self, done: str | None = None) -> str:
        from html import escape

        elapsed = time.monotonic() - self.start
        pct = 100 if done else (100 * self.index // self.total if self.total else 0)
        where = done or f"cell {self.index + 1}/{self.total or '?'} · <code>{escape(self.line[:80])}</code>"
        return (f"<div class='nbprod-progress'><b>nbprod run</b> <code>{escape(self.notebook)}</code> · {where} · "
                f"{elapsed:.1f} s<div style='background:#eee;width:20em;height:6px'>"
                f"<div style='background:#4c78a8;width:{pct}%;height:6px'></div></div></div>")

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self.handle.update(self._HTML(self._html()))

    def cell(self, index: int, total: int, cell) -> None:
        self.index, self.total, self.line = index, total, first_line(cell.get("source", ""))
        self.handle.update(self._HTML(self._html()))

    def close(self, status: str) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.handle.update(self._HTML(self._html(done=status.lower())))
