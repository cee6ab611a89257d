"""The ``nbprod`` command: the same verbs as ``%nbprod``, for shells, cron and CI.

Exit status: 0 on success, 1 when the result says the check failed (``result.ok`` is false,
e.g. a validation report with errors), 2 on a usage or nbprod error.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from . import commands as _commands
from .errors import NbprodError

__all__ = ["main", "entry"]


def entry() -> NoReturn:
    """The ``nbprod`` executable: :func:`main`, then the process ends without the interpreter's teardown."""
    exit_now(main())


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


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `nbprod ... | head`: the reader left; that is not an error
        sys.stdout = None  # keep the interpreter from flushing into the closed pipe
        return 0


def _main(argv: list[str]) -> int:
    if argv and argv[0] in ("--version", "-V"):
        from ._version import __version__

        print(f"nbprod {__version__}")
        return 0
    try:
        command, args = _commands.parse("nbprod", argv)
        result = command.run(args, _commands.Context(front_end="cli"))
    except _commands.HelpShown as shown:
        print(shown.text)
        return 0
    except NbprodError as exc:
        print(f"nbprod: error: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        print(result)
    return 0 if getattr(result, "ok", True) else 1


if __name__ == "__main__":  # pragma: no cover
    entry()
