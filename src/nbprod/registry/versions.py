"""Model versions as nbprod sees them: look-up by any URI spelling, aliases, the models table.

MLflow is the source of truth; nbprod keeps what it needs to show a version without extra
round-trips (metrics, creator, profile size, manifest digest, format) as ``nbprod.*`` tags on the
model version itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from .. import _format, audit
from .._display import Display, Facts, Table, View
from ..config import settings
from ..errors import ModelNotFoundError, RegistryError, TrackingServerError
from .integrity import verify_file
from .store import client
from .uris import check_alias, check_name, format_uri, parse_model_uri

__all__ = [
    "ModelVersion", "ModelTable", "AliasChange", "get_version", "set_alias", "delete_alias", "models",
    "load_profile", "download", "local_model_dir", "TAG",
]

TAG = "nbprod."
_KEY_METRICS = ("roc_auc", "auc", "accuracy", "f1", "r2", "rmse", "mae")


def _mlflow_call(fn, *args, **kwargs):
    """Call MLflow, turning transport failures into TrackingServerError."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        text = str(exc)
        if "API request" in text and ("404" in text or "405" in text):
            from ..config import settings

            raise TrackingServerError(f"{settings.tracking_uri} does not answer like an MLflow tracking server: "
                                      f"{text.splitlines()[0][:200]}",
                                      "point MLFLOW_TRACKING_URI at an MLflow tracking server "
                                      "(`mlflow server --host 127.0.0.1 --port 5000`), "
                                      "or unset it to use the local store") from None
        if "API request" in text or "Max retries" in text or "Connection" in text:
            raise TrackingServerError(f"the MLflow tracking server failed: {text.splitlines()[0]}",
                                      "check that the tracking server is up (MLFLOW_TRACKING_URI)") from None
        raise


def _training_data(d: dict) -> str | None:
    """``"3,500 rows × 3 columns"``: the count format of every result (nbprod._format)."""
    if d["profile_rows"] is None:
        return None
    return f"{_format.rows(d['profile_rows'])} × {_format.rows(d['profile_columns'], 'column')}"


def _metric(name: str, value: Any) -> str:
    """A score metric (accuracy, roc_auc, …) as a score; any other metric a user logged as a number."""
    return _format.score(value) if name in _KEY_METRICS else _format.number(value)


@dataclass(repr=False)
class ModelVersion(Display):
    """One registered version. ``profile`` is loaded on first access."""

    name: str
    version: str
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    source: str | None = None
    description: str | None = None
    serialization_format: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    _profile: Any = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return format_uri(self.name, self.version)

    @property
    def profile(self):
        if self._profile is None:
            self._profile = load_profile(self.uri)
        return self._profile

    @property
    def evaluation(self) -> dict | None:
        """The last stored evaluation summary, if any."""
        raw = self.tags.get(TAG + "evaluation")
        return json.loads(raw) if raw else None

    @classmethod
    def _from_mlflow(cls, mv) -> "ModelVersion":
        tags = dict(mv.tags or {})
        try:
            metrics = json.loads(tags.get(TAG + "metrics", "{}"))
        except ValueError:
            metrics = {}
        created = (datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc)
                   if mv.creation_timestamp else None)
        return cls(
            name=mv.name, version=str(mv.version), aliases=sorted(mv.aliases or []), metrics=metrics,
            run_id=mv.run_id, created_by=tags.get(TAG + "created_by") or getattr(mv, "user_id", None) or None,
            created_at=created, source=mv.source, description=mv.description or None,
            serialization_format=tags.get(TAG + "serialization_format"), tags=tags,
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name, "version": self.version, "uri": self.uri, "aliases": list(self.aliases),
            "metrics": dict(self.metrics), "run_id": self.run_id, "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None, "source": self.source,
            "description": self.description, "serialization_format": self.serialization_format,
            "git_commit": self.tags.get(TAG + "git_commit"), "notebook": self.tags.get(TAG + "notebook"),
            "job": self.tags.get(TAG + "job_run_id"),
            "profile_rows": _int(self.tags.get(TAG + "profile_rows")),
            "profile_columns": _int(self.tags.get(TAG + "profile_columns")),
            "key_metrics": self.key_metrics,
        }

    @property
    def key_metrics(self) -> dict[str, float]:
        """The two metrics a table shows for this version (the task's usual ones when logged)."""
        key = [k for k in _KEY_METRICS if k in self.metrics][:2] or sorted(self.metrics)[:2]
        return {k: self.metrics[k] for k in key}

    def _facts(self) -> list[tuple[str, Any]]:
        d = self.to_dict()
        facts = [
            ("uri", d["uri"]),
            ("aliases", ", ".join("@" + a for a in self.aliases) or "–"),
            ("created", f"{d['created_at'] or '–'} by {self.created_by or '–'}"),
            ("training data", _training_data(d) or "–"),
            ("metrics", ", ".join(f"{k}={_metric(k, v)}" for k, v in sorted(self.metrics.items())) or "–"),
            ("format", self.serialization_format or "–"),
            ("notebook", d["notebook"] or "–"),
            *([("job", f"{d['job'][:8]} (nbprod runs / get_run)")] if d["job"] else []),
            ("git commit", (d["git_commit"] or "–")[:12]
             + (" (dirty)" if self.tags.get(TAG + "git_dirty") == "true" else "")),
        ]
        if self.description:
            facts.insert(1, ("description", self.description))
        evaluation = self.evaluation
        if evaluation:
            verdict = "passed" if evaluation.get("ok") else "FAILED"
            facts.append(("last evaluation", f"{verdict} against {evaluation.get('against') or 'thresholds only'}"))
        return facts

    def _view(self) -> View:
        return View(self.name, [Facts(self._facts())], card=True, subtitle=f"v{self.version}")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _existing_models(c) -> list[str]:
    return sorted(m.name for m in _mlflow_call(c.search_registered_models, max_results=200))


def _registered_model(c, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return _mlflow_call(c.get_registered_model, name)
    except MlflowException:
        existing = _existing_models(c)
        raise ModelNotFoundError(
            f"no registered model called {name!r}",
            f"register it first (nbprod.register(model, {name!r}, X, y)); "
            f"existing models: {', '.join(existing) or 'none'}",
        ) from None


def _versions(c, name: str, model=None) -> list:
    """All versions of ``name``, oldest first, with their aliases (search results lack them)."""
    found = sorted(_mlflow_call(c.search_model_versions, f"name='{name}'"), key=lambda v: int(v.version))
    if model is None:
        try:
            model = _mlflow_call(c.get_registered_model, name)
        except Exception:
            model = None
    by_version: dict[str, list[str]] = {}
    for alias, version in dict(getattr(model, "aliases", None) or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    for v in found:
        if not v.aliases:
            v._aliases = sorted(by_version.get(str(v.version), []))
    return found


def get_version(uri: str) -> ModelVersion:
    """The version ``uri`` names (``name``, ``name/3``, ``name@alias``, ``models:/…``)."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    c = client()
    try:
        if alias is not None:
            return ModelVersion._from_mlflow(_mlflow_call(c.get_model_version_by_alias, name, alias))
        if version is not None:
            return ModelVersion._from_mlflow(_mlflow_call(c.get_model_version, name, version))
    except MlflowException:
        pass
    else:
        versions = _versions(c, name)
        if versions:
            return ModelVersion._from_mlflow(versions[-1])
    # Not found: say what exists.
    model = _registered_model(c, name)
    versions = [str(v.version) for v in _versions(c, name)]
    aliases = sorted(dict(getattr(model, "aliases", {}) or {}).items())
    alias_list = ", ".join(f"@{a} → v{v}" for a, v in aliases)
    known = f"versions: {', '.join(versions) or 'none'}; aliases: {alias_list or 'none'}"
    what = f"alias @{alias}" if alias else (f"version {version}" if version else "any version")
    raise ModelNotFoundError(f"model {name!r} has no {what}", f"use one of its {known}")


def _audit(action: str, model_uri: str, details: dict) -> None:
    audit.record(action, model_uri=model_uri, details=details)


@dataclass(repr=False)
class AliasChange(Display):
    """What an alias command did: set, moved (from → to) or deleted."""

    name: str
    alias: str
    action: str
    version: str | None
    previous: str | None
    ok: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "alias": self.alias, "action": self.action, "version": self.version,
                "previous": self.previous}

    def _view(self) -> View:
        if self.action == "delete":
            return View(f"deleted {self.name}@{self.alias} (was v{self.previous})")
        if self.action == "move":
            return View(f"moved {self.name}@{self.alias}: v{self.previous} → v{self.version}")
        return View(f"set {self.name}@{self.alias} → v{self.version}")


def set_alias(uri: str, alias: str) -> AliasChange:
    """Point ``alias`` at the version ``uri`` names (moving it if it pointed elsewhere)."""
    from mlflow.exceptions import MlflowException

    alias = check_alias(alias)
    target = get_version(uri)
    c = client()
    try:
        previous = str(c.get_model_version_by_alias(target.name, alias).version)
    except MlflowException:
        previous = None
    _mlflow_call(c.set_registered_model_alias, target.name, alias, target.version)
    action = "set" if previous is None else ("move" if previous != target.version else "set")
    change = AliasChange(target.name, alias, action, target.version, previous)
    try:
        _audit(f"alias.{action}", format_uri(target.name, alias=alias), change.to_dict())
    except Exception:
        # The audit row is part of the action: undo the alias change when it cannot be recorded.
        if previous is None:
            c.delete_registered_model_alias(target.name, alias)
        else:
            c.set_registered_model_alias(target.name, alias, previous)
        raise
    return change


def delete_alias(name: str, alias: str) -> AliasChange:
    """Remove ``alias`` from model ``name``; an unknown alias is a ModelNotFoundError."""
    name = check_name(name.removeprefix("models:/").split("@")[0])
    alias = check_alias(alias)
    version = get_version(format_uri(name, alias=alias)).version
    c = client()
    _mlflow_call(c.delete_registered_model_alias, name, alias)
    change = AliasChange(name, alias, "delete", None, version)
    try:
        _audit("alias.delete", format_uri(name, alias=alias), change.to_dict())
    except Exception:
        c.set_registered_model_alias(name, alias, version)
        raise
    return change


@dataclass(repr=False)
class ModelTable(Display):
    """Registered models and their versions, newest first within each model."""

    versions: list[ModelVersion]
    ok: bool = True

    def __len__(self) -> int:
        return len(self.versions)

    def __iter__(self):
        return iter(self.versions)

    def _rows(self) -> list[list[Any]]:
        rows = []
        for v in self.versions:
            d = v.to_dict()
            rows.append([
                v.name, v.version, " ".join("@" + a for a in v.aliases),
                ", ".join(f"{k}={_metric(k, m)}" for k, m in v.key_metrics.items()),
                v.created_by, d["created_at"][:16].replace("T", " ") if d["created_at"] else None,
                _training_data(d),
                v.serialization_format,
            ])
        return rows

    HEADERS = ["model", "version", "aliases", "metrics", "created by", "created (UTC)", "training data", "format"]

    def to_dict(self) -> dict:
        return {"versions": [v.to_dict() for v in self.versions]}

    def _view(self) -> View:
        if not self.versions:
            return View("no registered models yet: register one with nbprod.register(model, NAME, X, y), "
                        "`%nbprod register model --name NAME --data X y` or `nbprod register`")
        n_models = len({v.name for v in self.versions})
        head = f"registered models: {_format.rows(len(self.versions), 'version')} of {_format.rows(n_models, 'model')}"
        return View(head, [Table(self.HEADERS, self._rows(), more="more versions", all_in_text=True)])


def models(name: str | None = None) -> ModelTable:
    """Every registered version (of ``name`` only, if given), with aliases and key metrics."""
    c = client()
    if name is not None:
        name = parse_model_uri(name)[0]
        _registered_model(c, name)
        found = _versions(c, name)
    else:
        found = []
        for model in sorted(_mlflow_call(c.search_registered_models, max_results=1000), key=lambda m: m.name):
            found.extend(_versions(c, model.name, model))
    ordered = sorted(found, key=lambda v: (v.name, -int(v.version)))
    return ModelTable([ModelVersion._from_mlflow(v) for v in ordered])


def _local_path(source: str | None) -> Path | None:
    if not source:
        return None
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" and Path(source).is_absolute():
        return Path(source)
    return None


def local_model_dir(version: ModelVersion) -> Path:
    """The version's model directory on this machine: in place for a local store, else a cached download."""
    path = _local_path(version.source)
    if path is not None:
        if not path.is_dir():
            from ..errors import IntegrityError

            raise IntegrityError(f"the artefacts of {version.uri} are missing from {path}",
                                 "restore the artefact store, or re-register the model from its notebook")
        return path
    cache = Path(settings.home) / "cache" / "models" / version.name / version.version
    if not (cache / "model" / "MLmodel").is_file():
        download(version.uri, cache)
    return cache / "model"


def download(uri: str, dst_dir: str | Path) -> Path:
    """Copy the version's complete model directory to ``dst_dir``/model and return that path."""

    import mlflow.artifacts


    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm noise in cells/logs
    version = get_version(uri)
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    from mlflow.exceptions import MlflowException

    try:
        local = _mlflow_call(mlflow.artifacts.download_artifacts, artifact_uri=version.source, dst_path=str(dst),
                             tracking_uri=settings.tracking_uri)
    except MlflowException as exc:
        from ..errors import IntegrityError

        raise IntegrityError(f"cannot download the artefacts of {version.uri} from {version.source}: "
                             f"{str(exc).splitlines()[0][:300]}",
                             "restore the artefact store, or re-register the model from its notebook") from None
    return Path(local)


def load_profile(uri: str):
    """The training profile registered with the version ``uri`` names."""
    from ..data.profile import Profile

    version = get_version(uri)
    model_dir = local_model_dir(version)
    path = model_dir / "nbprod" / "profile.json"
    if not path.is_file():
        raise RegistryError(f"{version.uri} has no training profile (nbprod/profile.json)",
                            "register the model with nbprod.register, which stores the profile")
    # The profile drives validation and drift: it must be exactly what was registered.
    raw = verify_file(model_dir, "nbprod/profile.json", expected_digest=version.tags.get(TAG + "manifest_sha256"))
    return Profile.from_json(raw.decode("utf-8"))
