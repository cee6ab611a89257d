"""The verbs shared by the ``%nbprod`` magics and the ``nbprod`` CLI.

Each capability declares its commands in a module of this package (``commands/data.py``, …) as a
``COMMANDS`` list of :class:`Command`. The magics and the CLI build one argparse parser from
these, so help text, argument checking and behaviour are the same in a notebook cell and in a
shell. A command's ``run`` parses nothing and prints nothing: it calls the library API and returns
the result object, which the front end displays (``_repr_html_`` in a notebook, ``str`` in a
terminal).

Command modules must stay cheap to import: they import the library API inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError, NbprodError

__all__ = ["Command", "Context", "UsageProblem", "HelpShown", "all_commands", "build_parser"]

#: Command modules, in the order their verbs appear in help.
MODULES = ["data", "registry", "packaging", "audit", "serving", "deploy", "drift", "monitoring", "jobs", "pipeline",
           "info", "batch"]


class UsageProblem(NbprodError):
    """Bad command-line arguments (the magics turn it into IPython's ``UsageError``)."""


class HelpShown(Exception):
    """``--help`` was asked for; the help text has been written to ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class Context:
    """What a command can see: the notebook's namespace (None in a shell) and the cell body."""

    namespace: dict | None = None
    cell: str | None = None
    front_end: str = "cli"

    def lookup(self, token: str) -> Any:
        """The notebook variable called ``token``, or ``None``. Dotted names and ``x[...]`` work."""
        if self.namespace is None:
            return None
        if token in self.namespace:
            return self.namespace[token]
        if token.isidentifier():
            return None
        try:
            return eval(token, self.namespace)  # noqa: S307 - the user's own kernel, their own code
        except Exception:
            return None

    def frame(self, token: str):
        """A DataFrame from a notebook variable or a file path (parquet, csv, json, feather)."""
        value = self.lookup(token)
        if value is not None:
            return value
        return read_frame(token, in_notebook=self.namespace is not None)


def read_frame(path: str, *, in_notebook: bool = False):
    """Read a frame from a data file (:func:`nbprod.data.io.read_frame`); in a notebook a name that is
    no file is said to be neither a variable nor a file, with how to pass an expression."""
    from ..data.io import read_frame as read

    if in_notebook and not Path(path).exists():
        fix = "pass the name of a DataFrame variable or a path to a .parquet/.csv/.json/.feather file"
        if not path.isidentifier() and any(c in path for c in "[]()."):
            # the magic splits its line like a shell: unquoted, df[['a']] arrives as df[[a]]
            fix = ("to pass an expression, quote it whole: %nbprod validate \"df[['a', 'b']]\" "
                   "(or assign it to a variable first)")
        raise DataError(f"no variable and no file called {path!r}", fix)
    return read(path)


@dataclass
class Command:
    """One verb: its arguments, and the function that runs it."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, Context], Any]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    description: str | None = None
    cell_body: str | None = None  # help for the %%nbprod body, if the verb takes one
    examples: list[str] = field(default_factory=list)


class _Parser(argparse.ArgumentParser):
    """An argparse parser that raises instead of exiting, so a kernel never sees SystemExit."""

    def error(self, message: str):
        raise UsageProblem(f"{self.prog}: {message}", f"see `{self.prog} --help`")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            raise UsageProblem(message.strip(), f"see `{self.prog} --help`")
        raise HelpShown("")

    def print_help(self, file=None):
        raise HelpShown(self.format_help())


def all_commands() -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for command in module.COMMANDS:
            commands[command.name] = command
    return commands


def build_parser(prog: str) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    commands = all_commands()
    parser = _Parser(prog=prog, description="From a notebook to a monitored, reversible model service.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for command in commands.values():
        epilog = ""
        if command.cell_body:
            epilog += f"cell body (%%nbprod {command.name}):\n  {command.cell_body}\n"
        if command.examples:
            epilog += "examples:\n" + "\n".join(f"  {e}" for e in command.examples)
        # argparse %-formats an action's help: a verb's help is plain text ("100%", "%%nbprod") and means it.
        p = sub.add_parser(command.name, help=command.help.replace("%", "%%"),
                           description=command.description or command.help, epilog=epilog or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.arguments(p)
    return parser, commands


def parse(prog: str, argv: list[str]) -> tuple[Command, argparse.Namespace]:
    parser, commands = build_parser(prog)
    if not argv:
        raise HelpShown(parser.format_help())
    if argv[0] not in commands and not argv[0].startswith("-"):
        raise UsageProblem(f"unknown command {argv[0]!r}", _suggest(argv[0], list(commands), prog))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command is None:  # `nbprod --bogus`
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        raise _unrecognized(f"{prog} {args.command}", extra, commands[args.command])
    return commands[args.command], args


def _unrecognized(verb: str, extra: list[str], command: Command) -> UsageProblem:
    """Unknown arguments, said for the verb (the top parser pointed at ``nbprod --help``, which lists no
    verb's options), with the nearest option when one looks mistyped (``--canery`` -> ``--canary``)."""
    import difflib

    parser = _Parser(prog=verb)
    command.arguments(parser)
    options = [o for action in parser._actions for o in action.option_strings]
    close = [m for word in extra if word.startswith("-")
             for m in difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.7)]
    fix = f"did you mean `{close[0]}`? See `{verb} --help`" if close else f"see `{verb} --help`"
    return UsageProblem(f"{verb}: unrecognized arguments: {' '.join(extra)}", fix)


def _suggest(word: str, commands: list[str], prog: str) -> str:
    """The fix for an unknown command: the nearest command(s) when the word looks like a typo
    (``valdate`` -> ``validate``), else where to find them all."""
    import difflib

    close = difflib.get_close_matches(word.lower(), commands, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{prog} {close[0]}`?"
    return f"see `{prog} --help` for the {len(commands)} commands"
