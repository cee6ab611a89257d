"""The ``nbprod`` command: the same verbs as ``%nbprod``, for shells, cron and CI.

Exit status: 0 on success, 1 when the result says the check failed (``result.ok`` is false,
e.g. a validation report with errors), 2 on a usage or nbprod error.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import NoReturn

from . import commands as _commands
from ._exit import exit_now
from .errors import NbprodError

__all__ = ["main", "entry"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_python_show_warning = warnings.showwarning


def entry() -> NoReturn:
    """The ``nbprod`` executable: :func:`main`, then the process ends without the interpreter's teardown."""
    warnings.showwarning = _show_warning  # the process's own: not for main() called in a notebook or a test
    exit_now(main())


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `nbprod ... | head`: the reader left; that is not an error
        sys.stdout = None  # keep the interpreter from flushing into the closed pipe
        return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """nbprod's own warnings as one line, as its errors are: Python's form added nbprod's file, line and
    source line ("…/register.py:130: UserWarning: … built = build_model_dir(…)"). Others as Python shows them."""
    if not str(filename).startswith(_PACKAGE):
        _python_show_warning(message, category, filename, lineno, file, line)
        return
    print(f"nbprod: warning: {message}", file=file or sys.stderr)


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
