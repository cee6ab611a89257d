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
from html import escape
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


@dataclass
class Info:
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

    def __str__(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        lines = ["nbprod info"]
        lines += [f"  {name.ljust(width)}  {value}\n  {'':{width}}  ({how})" for name, value, how in self.rows]
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items() if v))
        lines.append(f"MLflow's UI on this store: {self.mlflow_ui}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        cell = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top"
        body = "".join(f"<tr><td style='{cell}'>{escape(n)}</td><td style='{cell}'><code>{escape(v)}</code></td>"
                       f"<td style='{cell};color:#666'>{escape(h)}</td></tr>" for n, v, h in self.rows)
        versions = ", ".join(f"{escape(k)} {escape(v)}" for k, v in self.versions.items() if v)
        head = "".join(f"<th style='{cell}'>{h}</th>" for h in ("setting", "value", "chosen by"))
        ui = escape(self.mlflow_ui)
        return ("<div><b>nbprod info</b>"
                f"<table style='border-collapse:collapse;font-size:13px'><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>"
                f"<div style='font-size:12px'>versions: {versions}</div>"
                f"<div style='font-size:12px'>MLflow's UI on this store: <code>{ui}</code></div></div>")


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
