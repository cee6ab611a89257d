"""Argument shapes more than one verb uses, defined once: the front ends stay thin and alike.

``-p NAME VALUE`` (repeatable, the value read as YAML so ``0.1``, ``true`` and ``[1, 2]`` arrive
typed, anything else as text) is how ``run`` and ``rerun`` take a notebook's parameters (and
``pipeline`` its own); :func:`positionals` declares verbs whose only arguments are positional.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["add_parameter_option", "parse_parameters", "positionals"]

PARAMETER_HELP = "set a parameter (value parsed as YAML: 0.1, true, [1, 2], text)"


def add_parameter_option(p: argparse.ArgumentParser, long: str = "--parameter", dest: str = "parameters",
                         help: str = PARAMETER_HELP) -> None:
    """``-p/--parameter NAME VALUE``, repeatable; read the values with :func:`parse_parameters`."""
    p.add_argument("-p", long, dest=dest, nargs=2, action="append", metavar=("NAME", "VALUE"), help=help)


def parse_parameters(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``[[name, text], …]`` -> ``{name: value}``, each value read as YAML (text when it is not YAML)."""
    import yaml

    params: dict[str, Any] = {}
    for key, raw in pairs or []:
        try:
            params[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            params[key] = raw
    return params


def positionals(*arguments: tuple[str, str]) -> Callable[[argparse.ArgumentParser], None]:
    """A verb's ``arguments`` from ``(name, help)`` pairs, each a required positional argument."""
    def add(p: argparse.ArgumentParser) -> None:
        for name, text in arguments:
            p.add_argument(name, help=text)

    return add
