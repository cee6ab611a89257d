"""``%nbprod`` and ``%%nbprod``: parse the arguments, call the API, return what it returns.

The returned object displays itself (a report, a card, a table), and can be kept:
``report = %nbprod validate df --against prof``. Options live here as traitlets so that
``%config Nbprod.<option> = value`` works; they are forwarded to :mod:`nbprod.config`.
"""

from __future__ import annotations

import shlex
from typing import Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Float, Int, Unicode, observe

from . import commands as _commands
from .config import Options, settings
from .errors import NbprodError

__all__ = ["Nbprod", "load_ipython_extension", "unload_ipython_extension"]

_TRAITS = {str: Unicode, int: Int, float: Float}


def _option_traits() -> dict:
    traits = {}
    for name in Options.names():
        default = getattr(Options, name)
        help_text = Options.__dataclass_fields__[name].metadata.get("help", "")
        traits[name] = _TRAITS[type(default)](default, help=help_text).tag(config=True)
    return traits


def _help_text() -> str:
    parser, _ = _commands.build_parser("%nbprod")
    return parser.format_help() + "\nEvery command takes --help, e.g. `%nbprod validate --help`."


@magics_class
class Nbprod(Magics):
    """nbprod in a notebook. Options: ``%config Nbprod``."""

    locals().update(_option_traits())

    _syncing = False

    @observe(*Options.names())
    def _forward(self, change) -> None:
        if not self._syncing:  # every value set here is an explicit override, the default included
            settings.set(**{change["name"]: change["new"]})

    def _show_effective_settings(self) -> None:
        """Start the traits at the values in force (environment, ``[tool.nbprod]``), not at the
        defaults: ``%config Nbprod`` then shows what applies, and setting any value — the
        default too — changes it (traitlets only notify on a change of the trait's value)."""
        self._syncing = True
        try:
            for name in Options.names():
                setattr(self, name, settings._raw(name))
        except NbprodError:  # an unreadable [tool.nbprod]: the verbs will say so when they run
            pass
        finally:
            self._syncing = False

    @line_cell_magic
    def nbprod(self, line: str, cell: str | None = None):
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%nbprod: cannot parse the arguments: {exc}") from None
        shell = self.shell
        assert shell is not None, "a magic always runs inside an IPython shell"
        context = _commands.Context(namespace=shell.user_ns, cell=cell, front_end="magic")
        try:
            command, args = _commands.parse("%nbprod", argv)
            if cell is not None and command.cell_body is None:
                raise _commands.UsageProblem(f"%%nbprod {command.name} takes no cell body",
                                             f"use the line magic: %nbprod {line}")
            return command.run(args, context)
        except _commands.HelpShown as shown:
            print(shown.text)
            return None
        except _commands.UsageProblem as exc:
            raise UsageError(f"{exc.problem} (hint: {exc.fix})" if exc.fix else exc.problem) from None
        except NbprodError as exc:
            raise _shown_briefly(exc) from None


def _shown_briefly(exc: NbprodError) -> NbprodError:
    """The error, shown in the cell as its problem and its fix instead of a traceback through
    nbprod's internals (IPython's ``_render_traceback_`` protocol). It stays the same exception,
    so code that catches it, papermill's failed-cell report and ``%debug`` still see its type."""
    lines = [f"{type(exc).__name__}: {exc.problem}"]
    if exc.fix:
        lines.append(f"Fix: {exc.fix}")
    cast(Any, exc)._render_traceback_ = lambda: lines  # a per-instance attribute of IPython's protocol
    return exc


def load_ipython_extension(ipython) -> None:
    Nbprod.nbprod.__doc__ = _help_text()
    magics = Nbprod(shell=ipython, parent=ipython)
    magics._show_effective_settings()
    try:  # MLflow's own API in this notebook talks to nbprod's store, unless the user chose another
        settings.export_tracking_uri()
    except NbprodError:  # an unreadable [tool.nbprod]: the verbs will say so when they run
        pass
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)


def unload_ipython_extension(ipython) -> None:
    settings.unexport_tracking_uri()
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("nbprod", None)
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, Nbprod)]
    ipython.magics_manager.registry.pop("Nbprod", None)
