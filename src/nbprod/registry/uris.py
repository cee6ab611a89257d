"""Model names and URIs: the one parser every verb uses, so every spelling works everywhere.

Accepted (``models:/`` prefix optional): ``name`` (latest version), ``name/3``, ``name@alias``.
Names are restricted to ``[A-Za-z0-9._-]`` so that a name is also a safe path component, URL
segment and Kubernetes-ish label; MLflow itself allows more, but those names break downstream.
"""

from __future__ import annotations

import re

from ..errors import ModelNotFoundError, RegistrationError

__all__ = ["parse_model_uri", "check_name", "check_alias", "format_uri", "NAME_RULE"]

NAME_RULE = "letters, digits, '.', '_' and '-', not starting with '.' (at most 128 characters)"
# Always fullmatch: "$" also matches before a final newline, and "ok\n" is not a name.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # a leading '.': hidden/parent paths
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
_VERSION = re.compile(r"[vV][0-9]+")  # MLflow reserves these as aliases: "v3" reads as version 3
_URI = re.compile(r"(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))?/?")


def check_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if it is legal, else raise :class:`RegistrationError` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistrationError(f"illegal {what} {name!r}", f"use only {NAME_RULE}, e.g. 'credit-risk'")
    return name


def check_alias(alias: str) -> str:
    """Aliases: a letter or '_' first, then letters, digits, '_' or '-'. Not a version number, nor a name
    MLflow reserves: 'latest', and 'v' or 'V' and digits (``v3`` names version 3 in a model URI)."""
    given = alias
    if isinstance(alias, str) and alias.startswith("@"):
        alias = alias[1:]  # 'name@champion' spelt out: one '@', not '@@champion'
    if (not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias.lower() == "latest"
            or _VERSION.fullmatch(alias)):
        raise RegistrationError(
            f"illegal alias {given!r}",
            "start with a letter and use letters, digits, '_' or '-', e.g. 'champion' "
            "('latest' and 'v' followed by digits are MLflow's own)",
        )
    return alias


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, version, alias)`` from any accepted spelling; at most one of version/alias is set.

    ``version`` is returned as a string of digits (MLflow's own type for versions).
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ModelNotFoundError(f"not a model URI: {uri!r}",
                                 "name a model as 'name', 'name/3', 'name@alias' or 'models:/name@alias'")
    text = uri.strip()
    match = _URI.fullmatch(text)
    if match is None:
        raise ModelNotFoundError(
            f"cannot read model URI {uri!r}",
            "name a model as 'name', 'name/3', 'name@alias', 'models:/name/3' or 'models:/name@alias'",
        )
    name, version, alias = match.group("name"), match.group("version"), match.group("alias")
    try:
        check_name(name)
    except RegistrationError as exc:
        raise ModelNotFoundError(f"model URI {uri!r} has an illegal model name {name!r}", exc.fix) from None
    if version is not None:
        if version.lower() == "latest":
            version = None
        elif not (version.isascii() and version.isdigit()) or int(version) < 1:  # "²".isdigit() too
            raise ModelNotFoundError(f"model URI {uri!r}: version {version!r} is not a positive number",
                                     f"use '{name}/3' for version 3 or '{name}@alias' for an alias")
        else:
            version = str(int(version))
    if alias is not None:
        try:
            alias = check_alias(alias)
        except RegistrationError as exc:
            raise ModelNotFoundError(f"model URI {uri!r} has an illegal alias {alias!r}", exc.fix) from None
    return name, version, alias


def format_uri(name: str, version: str | int | None = None, alias: str | None = None) -> str:
    """The canonical URI: ``models:/name/3``, ``models:/name@alias`` or ``models:/name``."""
    if version is not None:
        return f"models:/{name}/{version}"
    if alias is not None:
        return f"models:/{name}@{alias}"
    return f"models:/{name}"
