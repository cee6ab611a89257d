"""Ending a process that is done without the interpreter's teardown.

Shared by the ``nbprod`` executable and the helper process a job writes its MLflow run through
(:mod:`nbprod.jobs.runstore`): both have imported MLflow and have nothing left to free.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

__all__ = ["exit_now"]


def exit_now(code: int) -> NoReturn:
    """End this process with ``code`` once its atexit handlers have run, skipping the teardown.

    A command that imported MLflow (and with it pandas, SQLAlchemy, pydantic, ...) spends about a
    second of CPU after its work is done freeing those modules' objects one by one as the interpreter
    shuts down: measured on ``nbprod run``, 1.1 s of CPU and 3-4 s of wall time on a busy machine,
    longer than the job's own bookkeeping. None of it is needed. The atexit handlers still run
    (logging's, MLflow's, multiprocessing's, which joins child processes) and the standard streams
    are flushed; everything nbprod writes is closed or committed before this point. While another
    non-daemon thread runs, the interpreter's own exit (which waits for it) is taken instead.
    """
    import atexit
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: nothing left to write to
            pass
    os._exit(code)
