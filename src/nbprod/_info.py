"""``nbprod info``: which home, which stores and which versions are in force, and why.

(A private module: the verb is ``nbprod.info``, which a module of that name would shadow.)

Two front ends in two folders (a notebook's kernel in ``notebooks/``, a shell at the project
root) must agree on one home; when they do not, this is where a user sees it. Every value says
how it was chosen (an override, the environment, ``[tool.nbprod]``, or the default found the way
git finds ``.git``), passwords in URLs are hidden, and nothing heavy is imported: versions come
from the installed packages' metadata, MLflow's tracking URI from the environment.
"""

from __future__ import annotations

import platform
import shlex
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._display import Display, Facts, Lines, View

__all__ = ["Info", "info", "hide_password"]

#: Packages whose versions decide how nbprod behaves, in the order shown.
PACKAGES = ["nbprod", "mlflow", "scikit-learn", "pandas", "numpy", "sqlalchemy", "altair", "ipykernel", "papermill"]


def hide_password(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***`` (SQLAlchemy and HTTP URLs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _ui_command(tracking_uri: str) -> str:
    """The one command that opens MLflow's own UI on nbprod's store."""
    if urlsplit(tracking_uri).scheme in ("http", "https"):
        return f"open {tracking_uri} in a browser (a tracking server has its own UI)"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port 5000"


@dataclass(repr=False)
class Info(Display):
    """What ``nbprod info`` shows: a row per setting (value, how it was chosen) and the versions."""

    rows: list[tuple[str, str, str]]
    versions: dict[str, str | None] = field(default_factory=dict)
    mlflow_ui: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"settings": {name: {"value": value, "source": how} for name, value, how in self.rows},
                "versions": dict(self.versions), "mlflow_ui": self.mlflow_ui}

    def __getitem__(self, name: str) -> str:
        for row_name, value, _ in self.rows:
            if row_name == name:
                return value
        raise KeyError(name)

    def _view(self) -> View:
        versions = "versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items() if v)
        return View("nbprod info", [Facts([(name, f"{value}\n({how})") for name, value, how in self.rows]),
                                    Lines([versions, f"MLflow's UI on this store: {self.mlflow_ui}"], style="plain")])


def info() -> Info:
    """The home, the stores, MLflow's tracking URI in this process and the versions in force."""
    from .config import settings

    tracking = settings.tracking_uri
    mlflow_uri, mlflow_how = settings.mlflow_tracking_uri()
    rows = [
        ("home", settings.home, settings.source("home")),
        ("tracking_uri", hide_password(tracking), settings.source("tracking_uri")),
        ("registry_uri", hide_password(settings.registry_uri), settings.source("registry_uri")),
        ("db_url", hide_password(settings.db_url), settings.source("db_url")),
        ("mlflow's own API", hide_password(mlflow_uri) if mlflow_uri else "(not set)", mlflow_how),
    ]
    versions: dict[str, str | None] = {name: _version(name) for name in PACKAGES}
    versions["python"] = platform.python_version()
    return Info(rows=rows, versions=versions, mlflow_ui=_ui_command(hide_password(tracking)))
