"""nbprod's settings, resolved once and overridable the Jupyter way.

Resolution order, first hit wins:

1. an explicit override: ``%config Nbprod.<option> = ...`` in a notebook, or
   ``nbprod.config.settings.set(option=...)`` from Python;
2. an environment variable (``NBPROD_HOME``, ``MLFLOW_TRACKING_URI``, ``NBPROD_DB_URL``, and
   ``NBPROD_<OPTION>`` for every other option);
3. ``[tool.nbprod]`` in the nearest ``pyproject.toml`` at or above the working directory;
4. the defaults below. The default ``home`` is found the way git finds ``.git``: the nearest
   existing ``.nbprod`` folder at or above the working directory, else ``.nbprod`` in the project
   root (the nearest folder with a ``pyproject.toml`` or a ``.git``), else ``.nbprod`` in the working
   directory. A notebook in ``notebooks/`` (its kernel runs there) and ``nbprod status`` at the
   project root then share one home, one registry and one set of deployments.

Paths derived from ``home`` (the MLflow store, the state DB, job runs) follow ``home`` unless they
are set themselves, so moving ``NBPROD_HOME`` moves everything.

This module imports nothing heavy: it is read by ``import nbprod``, the magics and the CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Options", "Settings", "settings", "find_home", "HOME_DIR"]

#: The folder name nbprod keeps its state in, inside a project.
HOME_DIR = ".nbprod"
#: Set in the environment next to ``MLFLOW_TRACKING_URI`` when nbprod exported it itself (see
#: :meth:`Settings.export_tracking_uri`): that value is nbprod's default, not the user's choice.
_EXPORTED = "NBPROD_EXPORTED_TRACKING_URI"


@dataclass
class Options:
    """Every option, its type and default. The field docs become ``%config Nbprod`` help."""

    home: str = field(default="", metadata={"help": (
        "Where nbprod keeps its state: MLflow store, state DB, job runs. Default: the nearest existing .nbprod "
        "at or above the working directory, else <project root>/.nbprod (the nearest folder with pyproject.toml "
        "or .git), else ./.nbprod.")})
    tracking_uri: str = field(default="", metadata={"help": "MLflow tracking URI; default sqlite:///<home>/mlflow.db."})
    registry_uri: str = field(default="", metadata={"help": "MLflow registry URI; default: the tracking URI."})
    db_url: str = field(default="", metadata={"help": "SQLAlchemy URL of the state DB; default sqlite:///<home>/nbprod.db."})
    range_tolerance: float = field(default=0.1, metadata={"help": (
        "Slack on the seen [min, max] range, as a fraction of its span, before a value counts as out of range "
        "(fresh data from the same source lands a little outside the training extremes).")})
    null_tolerance: float = field(default=0.05, metadata={"help": (
        "Slack on a column's share of missing values, as a fraction (0.05: 5 percentage points): validation "
        "fails when the share is more than this above the training data's, and more than chance explains.")})
    max_examples: int = field(default=5, metadata={"help": "Example rows kept per validation failure."})
    sample_size: int = field(default=1000, metadata={"help": "Rows kept in a profile's bounded reservoir sample."})
    top_k: int = field(default=50, metadata={
        "help": "Categories kept per column in a profile; the rest count as 'other'."})
    n_quantiles: int = field(default=100, metadata={
        "help": "Quantile bins per numeric column in a profile (edges stored: n+1)."})
    display_limit: int = field(default=20, metadata={"help": "Rows shown in notebook tables before truncation."})
    prediction_log_max_age: str = field(default="30d", metadata={"help": (
        "How long model servers keep prediction-log rows and their feedback: a duration (30d, 12h) or seconds.")})
    prediction_log_max_rows: int = field(default=1_000_000, metadata={"help": (
        "Prediction-log rows a model server keeps per deployment; the oldest go first, with their feedback.")})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_ENV_NAMES = {
    "home": "NBPROD_HOME",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "db_url": "NBPROD_DB_URL",
}


def find_home(start: Path | None = None) -> tuple[Path, str]:
    """The default home for ``start`` (the working directory) and how it was found.

    Like git finding ``.git``: the nearest existing ``.nbprod`` folder at or above ``start``; else
    ``.nbprod`` in the project root, the nearest folder with a ``pyproject.toml`` or a ``.git``; else
    ``.nbprod`` in ``start`` itself. One walk up, a few ``stat`` calls: cheap enough to redo on
    every read, so a home created meanwhile (or a ``chdir``) is seen at once.
    """
    start = (start or Path.cwd()).resolve()
    root: Path | None = None
    for folder in (start, *start.parents):
        if (folder / HOME_DIR).is_dir():
            return folder / HOME_DIR, f"the nearest existing {HOME_DIR} at or above {start}"
        if root is None and ((folder / "pyproject.toml").is_file() or (folder / ".git").exists()):
            root = folder
    if root is not None:
        marker = "pyproject.toml" if (root / "pyproject.toml").is_file() else ".git"
        return root / HOME_DIR, f"the project root {root}, which has {marker} and no {HOME_DIR} yet"
    return start / HOME_DIR, f"the working directory: no {HOME_DIR}, pyproject.toml or .git at or above it"


def _find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


#: (pyproject path, mtime) -> its [tool.nbprod] table. Settings are read on hot paths (every
#: served request checks inputs), so the file is parsed once and re-read only when it changes.
_TABLE_CACHE: dict[tuple[str, float], dict[str, Any]] = {}


def _pyproject_table() -> tuple[Path | None, dict[str, Any]]:
    path = _find_pyproject(Path.cwd())
    if path is None:
        return None, {}
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None, {}
    if key not in _TABLE_CACHE:
        _TABLE_CACHE.clear()
        _TABLE_CACHE[key] = _read_pyproject_table(path)
    return path, _TABLE_CACHE[key]


def _toml_module():
    """``tomllib`` (Python ≥ 3.11) or its backport ``tomli`` (a dependency on Python 3.10), or None."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return None
    return tomllib


def _read_pyproject_table(path: Path) -> dict[str, Any]:
    tomllib = _toml_module()
    if tomllib is None:
        try:
            has_table = b"[tool.nbprod" in path.read_bytes()
        except OSError:
            return {}
        if not has_table:  # nothing for nbprod in it: nothing is lost
            return {}
        raise ConfigError(f"cannot read [tool.nbprod] from {path}: this Python has no TOML parser (tomllib or tomli)",
                          "pip install 'tomli>=2' (nbprod depends on it on Python 3.10), or use Python 3.11+")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read [tool.nbprod] from {path}: {exc}", "fix the TOML syntax of that file") from exc
    table = data.get("tool", {}).get("nbprod", {})
    unknown = set(table) - set(Options.names())
    if unknown:
        raise ConfigError(
            f"[tool.nbprod] in {path} has unknown option(s): {', '.join(sorted(unknown))}",
            f"use only: {', '.join(Options.names())}",
        )
    return table


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(Options, name))
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {name}={value!r} is not a {kind.__name__}",
                          f"set {name} to a {kind.__name__}") from exc


class Settings:
    """The resolved settings. Read attributes (``settings.home``), override with :meth:`set`."""

    def __init__(self) -> None:
        self._overrides: dict[str, Any] = {}

    def set(self, **options: Any) -> None:
        """Override options for this process (what ``%config Nbprod.<option>`` calls)."""
        for name, value in options.items():
            if name not in Options.names():
                raise ConfigError(f"unknown nbprod option {name!r}", f"use one of: {', '.join(Options.names())}")
            self._overrides[name] = _coerce(name, value)
        self._reexport()

    def reset(self) -> None:
        """Forget every override (tests use this)."""
        self._overrides.clear()
        self._reexport()

    def _reexport(self) -> None:
        """Keep an exported ``MLFLOW_TRACKING_URI`` in step with the home it was derived from."""
        exported = os.environ.get(_EXPORTED)
        if exported and os.environ.get("MLFLOW_TRACKING_URI") == exported:
            try:
                uri = self.tracking_uri
            except ConfigError:
                return
            os.environ["MLFLOW_TRACKING_URI"] = uri
            os.environ[_EXPORTED] = uri

    def _raw(self, name: str) -> Any:
        return self._resolve(name)[0]

    def _resolve(self, name: str) -> tuple[Any, str]:
        """The option's raw value and where it came from (what ``nbprod info`` shows)."""
        if name in self._overrides:
            return self._overrides[name], "set in this process (%config Nbprod / settings.set)"
        variable = _ENV_NAMES.get(name, f"NBPROD_{name.upper()}")
        env = os.environ.get(variable)
        if env and not (name == "tracking_uri" and env == os.environ.get(_EXPORTED)):
            try:
                return _coerce(name, env), f"environment variable {variable}"
            except ConfigError as exc:  # say where the bad value comes from
                raise ConfigError(f"{variable}={env!r} in the environment: {exc.problem}",
                                  f"set {variable} to a {type(getattr(Options, name)).__name__}, or unset it") from None
        path, table = _pyproject_table()
        if name in table:
            value = _coerce(name, table[name])
            if name == "home" and not Path(value).is_absolute() and path is not None:
                # Relative to the pyproject.toml that set it, not to wherever the kernel runs.
                value = str(path.parent / value)
            return value, f"[tool.nbprod] in {path}"
        if name == "home":
            home, how = find_home()
            return str(home), f"default: {how}"
        return getattr(Options, name), "default"

    def source(self, name: str) -> str:
        """How option ``name`` got its value, in words ("environment variable NBPROD_HOME", …)."""
        if name not in Options.names():
            raise ConfigError(f"unknown nbprod option {name!r}", f"use one of: {', '.join(Options.names())}")
        value, how = self._resolve(name)
        if not value and name in ("tracking_uri", "db_url", "registry_uri"):
            return {"tracking_uri": "default: mlflow.db in the home", "db_url": "default: nbprod.db in the home",
                    "registry_uri": "default: the tracking URI"}[name]
        return how

    def export_tracking_uri(self) -> str | None:
        """Point MLflow's own API in this process (and its children) at nbprod's store.

        ``%load_ext nbprod`` calls this so that a user's ``mlflow.search_runs()``,
        ``MlflowClient()`` or ``autolog()`` in the notebook sees the models nbprod registered. It
        sets the ``MLFLOW_TRACKING_URI`` environment variable, which MLflow reads on every call
        (so nothing imports mlflow here), and only where the user has not chosen a tracking URI:
        their ``MLFLOW_TRACKING_URI``, or an ``mlflow.set_tracking_uri`` already made, win. The
        value is marked as nbprod's own, so nbprod still follows a later change of ``home``
        (:meth:`set` re-exports it). Returns the URI exported, or None when the user's stands.
        """
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env and env != os.environ.get(_EXPORTED):
            return None
        mlflow_utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
        if mlflow_utils is not None and getattr(mlflow_utils, "_tracking_uri", None):
            return None
        uri = self.tracking_uri
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ[_EXPORTED] = uri
        return uri

    def unexport_tracking_uri(self) -> None:
        """Undo :meth:`export_tracking_uri` (``%unload_ext nbprod``), leaving a user's own URI alone."""
        exported = os.environ.pop(_EXPORTED, None)
        if exported and os.environ.get("MLFLOW_TRACKING_URI") == exported:
            del os.environ["MLFLOW_TRACKING_URI"]

    def mlflow_tracking_uri(self) -> tuple[str | None, str]:
        """What MLflow's own API in this process talks to, and why (without importing mlflow)."""
        mlflow_utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
        chosen = getattr(mlflow_utils, "_tracking_uri", None) if mlflow_utils is not None else None
        if chosen:
            return str(chosen), "set by mlflow.set_tracking_uri in this process"
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env and env == os.environ.get(_EXPORTED):
            return env, "nbprod's store, set by %load_ext nbprod (MLFLOW_TRACKING_URI)"
        if env:
            return env, "your MLFLOW_TRACKING_URI"
        return None, "MLflow's own default store, not nbprod's: %load_ext nbprod points MLflow's API at nbprod's store"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in Options.names():
            raise AttributeError(name)
        value = self._raw(name)
        if name == "home":
            return str(Path(value).expanduser().resolve())
        if name == "tracking_uri" and not value:
            return f"sqlite:///{Path(self.home) / 'mlflow.db'}"
        if name == "registry_uri" and not value:
            return self.tracking_uri
        if name == "db_url" and not value:
            return f"sqlite:///{Path(self.home) / 'nbprod.db'}"
        return value

    @property
    def home_path(self) -> Path:
        """``home`` as a created directory (0700 when nbprod creates it: it holds the prediction log)."""
        from ._files import private_dir

        return private_dir(Path(self.home))

    @property
    def artifact_root(self) -> str:
        """Where MLflow keeps artefacts of experiments nbprod creates on the embedded store."""
        return (Path(self.home) / "artifacts").as_uri()

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in Options.names()}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Settings({body})"


settings = Settings()
