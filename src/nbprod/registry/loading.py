"""``load_model``: verify the sha256 manifest first, then load — the one loader serving and evaluation use.

MLflow 3.17 refuses to deserialise any model (skops included) unless
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is true, because a model file can carry code; 3.18 renames
the switch ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` and warns (FutureWarning, into the notebook) when
the old name is set at all. nbprod's control is the manifest instead: the files must be
byte-for-byte what was registered (and the manifest what the registry recorded), so we allow
deserialisation only for the duration of a load that passed that check (or that the caller
explicitly asked to load unverified), through the switch the installed MLflow reads.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._display import Display, View
from .._quiet import quiet_mlflow
from ..errors import IntegrityError, ModelNotFoundError, RegistryError
from .integrity import verify_manifest
from .uris import parse_model_uri
from .versions import TAG, get_version, local_model_dir

__all__ = ["LoadedModel", "load_model"]

_env_lock = threading.Lock()


_OLD_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_NEW_SWITCH = "MLFLOW_ALLOW_MODEL_CODE_EXECUTION"


def deserialisation_switches() -> list[str]:
    """The environment variables that must be true for the installed MLflow to load a pickled model.

    The new name where MLflow has it; the old one where MLflow lacks the new one, and also where the
    user has set the old one: MLflow >= 3.18 still refuses while it is false (and warns that it is
    set, as it would without nbprod).
    """
    import mlflow.environment_variables as known

    if not hasattr(known, _NEW_SWITCH):
        return [_OLD_SWITCH]
    return [_NEW_SWITCH, _OLD_SWITCH] if _OLD_SWITCH in os.environ else [_NEW_SWITCH]


@contextmanager
def _deserialisation_allowed():
    with _env_lock:
        names = deserialisation_switches()
        old = {name: os.environ.get(name) for name in names}
        os.environ.update(dict.fromkeys(names, "true"))
        try:
            yield
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@dataclass(repr=False)
class LoadedModel(Display):
    """A verified, loaded model version. ``predict`` goes through MLflow's pyfunc (schema enforced)."""

    name: str | None
    version: str | None
    uri: str | None
    path: Path
    pyfunc: Any
    raw_model: Any
    signature: Any
    metadata: dict = field(default_factory=dict)
    _profile: Any = field(default=None, repr=False)

    @property
    def profile(self):
        """The training profile stored with the model (None if the directory has none)."""
        if self._profile is None:
            path = self.path / "nbprod" / "profile.json"
            if path.is_file():
                from ..data.profile import Profile

                self._profile = Profile.from_json(path.read_text(encoding="utf-8"))
        return self._profile

    @quiet_mlflow()
    def predict(self, df):
        """Predict through MLflow's pyfunc (schema enforced).

        pandas ``category`` columns are passed as plain values: MLflow's schema (string) refuses
        the category dtype itself, though the values are what the model was trained on.
        """
        return self.pyfunc.predict(_decategorize(df))

    def predict_proba(self, df):
        """Class probabilities when the raw model has ``predict_proba``, else None."""
        if self.raw_model is not None and hasattr(self.raw_model, "predict_proba"):
            return self.raw_model.predict_proba(df)
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "uri": self.uri, "path": str(self.path), **self.metadata}

    def _view(self) -> View:
        fmt = self.metadata.get("serialization_format")
        verified = "verified" if self.metadata.get("verified") else "NOT verified"
        return View(f"{self.uri or self.path} (loaded from {self.path}, format {fmt}, manifest {verified})")


def _decategorize(df):
    dtypes = getattr(df, "dtypes", None)
    if dtypes is None:
        return df
    cats = [c for c, t in dtypes.items() if str(t) == "category"]
    if not cats:
        return df
    return df.astype({c: object for c in cats})


def _looks_like_uri(text: str) -> bool:
    try:
        parse_model_uri(text)
    except ModelNotFoundError:
        return os.sep not in text and "/" not in text  # let get_version explain what is wrong
    return True


@quiet_mlflow()
def load_model(uri_or_local_path: str | os.PathLike, *, verify: bool = True) -> LoadedModel:
    """Load a registered version (any URI spelling) or a local nbprod model directory.

    With ``verify`` (the default) the sha256 manifest is checked before a single byte is
    deserialised; a changed, missing or extra file raises :class:`IntegrityError`.
    """
    import mlflow.pyfunc

    name = version = uri = None
    expected = None
    if not isinstance(uri_or_local_path, (str, os.PathLike)):
        raise ModelNotFoundError("load_model needs a model URI or a model directory, "
                                 f"got {type(uri_or_local_path).__name__} {uri_or_local_path!r}",
                                 "pass a model URI as text, e.g. 'credit-risk@champion' or 'credit-risk/3', "
                                 "or a directory path")
    candidate = Path(os.fspath(uri_or_local_path)).expanduser()
    if candidate.is_dir():
        path = candidate
    elif isinstance(uri_or_local_path, os.PathLike) or not _looks_like_uri(str(uri_or_local_path)):
        raise ModelNotFoundError(f"no model directory at {uri_or_local_path}",
                                 "pass a model URI like 'credit-risk@champion' or an existing model directory")
    else:
        mv = get_version(str(uri_or_local_path))
        name, version, uri = mv.name, mv.version, mv.uri
        expected = mv.tags.get(TAG + "manifest_sha256")
        path = local_model_dir(mv)
    if not (path / "MLmodel").is_file():
        raise IntegrityError(f"{path} has no MLmodel file: not a complete MLflow model directory",
                             "re-register the model, or pass the directory that contains MLmodel")
    if verify:
        verify_manifest(path, expected_digest=expected)
    lineage_path = path / "nbprod" / "lineage.json"
    lineage = json.loads(lineage_path.read_text(encoding="utf-8")) if lineage_path.is_file() else {}
    if name is None:
        name = lineage.get("name") or None
    try:
        with _deserialisation_allowed():
            pyfunc = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:
        raise RegistryError(f"cannot load the model in {path}: {type(exc).__name__}: {exc}",
                            "install the model's requirements (requirements.txt in the model directory) "
                            "and retry") from exc
    raw = None
    flavors = pyfunc.metadata.flavors
    if "sklearn" in flavors:
        impl = getattr(pyfunc, "_model_impl", None)
        raw = getattr(impl, "sklearn_model", None)
    metadata = {
        "serialization_format": (lineage.get("serialization_format")
                                 or flavors.get("sklearn", {}).get("serialization_format")),
        "flavor": lineage.get("flavor") or ("sklearn" if "sklearn" in flavors else "python_function"),
        "verified": bool(verify),
        "lineage": lineage,
    }
    return LoadedModel(name=name, version=version, uri=uri, path=path, pyfunc=pyfunc, raw_model=raw,
                       signature=pyfunc.metadata.signature, metadata=metadata)
