"""Build a model directory locally: MLflow model + ``nbprod/`` (profile, lineage, notebook, manifest).

Everything a version needs is written into a temporary directory *before* anything touches the
registry, so a registered version can never lack its profile or manifest. Two deliberate choices:

* **Serialisation.** MLflow 3's scikit-learn flavor defaults to skops and fails on an ordinary
  ColumnTransformer ("untrusted types ['numpy.dtype']"). We dump with skops, ask skops which types
  it would refuse, and trust them only when all come from numpy, scipy or scikit-learn; the dump
  must then load and predict like the original. Otherwise we fall back to cloudpickle. The
  chosen format is recorded in ``lineage.json`` and on the version.
* **Requirements** are pinned from ``importlib.metadata`` instead of MLflow's inference, which
  starts a subprocess that loads the model (about 2.5 s of the 2.8 s a default log_model takes).
"""

from __future__ import annotations

import getpass
import json
import platform
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import RegistrationError
from .integrity import write_manifest
from .outputs import OUTPUTS_FILE, outputs_profile

__all__ = ["BuiltModel", "build_model_dir", "pinned_requirements", "run_context", "TRUSTED_PREFIXES"]

TRUSTED_PREFIXES = ("numpy.", "scipy.", "sklearn.")
_EXAMPLE_ROWS = 5


@dataclass
class BuiltModel:
    """What :func:`build_model_dir` wrote, for the registry to record."""

    path: Path
    serialization_format: str
    flavor: str
    manifest_digest: str
    lineage: dict
    profile: Any
    skops_trusted_types: list[str] = field(default_factory=list)


def _version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def pinned_requirements(serialization_format: str, extra: tuple[str, ...] = ()) -> list[str]:
    """``dist==version`` for what loading the model needs, read from the installed environment."""
    dists = ["mlflow", "scikit-learn", "numpy", "pandas", "scipy", *extra]
    if serialization_format == "skops":
        dists.append("skops")
    elif serialization_format in ("cloudpickle", "pyfunc"):
        dists.append("cloudpickle")
    reqs = [f"{d}=={v}" for d in dict.fromkeys(dists) if (v := _version_of(d))]
    reqs.append(f"nbprod=={__version__}")
    return reqs


def run_context() -> Any:
    """Who/where from ``nbprod._context.current()`` (user, host, notebook path, git commit, dirty)."""
    try:
        from .._context import current
    except ImportError:  # the context module is optional for the registry; degrade to the basics
        pass
    else:
        return current()

    class _Basic:
        user = getpass.getuser()
        host = socket.gethostname()
        notebook_path = None
        git_commit = None
        git_dirty = None

    return _Basic()


def _check_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(model, "predict"):
        raise RegistrationError(f"{type(model).__name__} has no predict() method",
                                "register a fitted estimator or pipeline (or an mlflow.pyfunc.PythonModel)")
    if not hasattr(model, "fit"):
        return
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise RegistrationError(f"the {type(model).__name__} is not fitted",
                                "call model.fit(X, y) before registering it") from None
    except TypeError:
        pass  # not a scikit-learn estimator: nothing to check


def _choose_serialization(model: Any, X_example) -> tuple[str, list[str]]:
    """``("skops", trusted)`` when skops round-trips the model with only numpy/scipy/sklearn types."""
    try:
        import numpy as np
        import skops.io as sio

        blob = sio.dumps(model)
        untrusted = sio.get_untrusted_types(data=blob)
        if any(not t.startswith(TRUSTED_PREFIXES) for t in untrusted):
            return "cloudpickle", []
        clone = sio.loads(blob, trusted=untrusted)
        expected = np.asarray(model.predict(X_example))
        got = np.asarray(clone.predict(X_example))
        if expected.shape != got.shape or not np.array_equal(expected, got):
            return "cloudpickle", []
        return "skops", list(untrusted)
    except Exception:  # skops cannot represent this model: cloudpickle can
        return "cloudpickle", []


def _notebook_snapshot(notebook_path: str | None, dst: Path) -> tuple[bool, str | None]:
    """Copy the notebook's cells (outputs stripped: source, not data) into ``dst``."""
    if not notebook_path:
        return False, "no notebook found: not running in a Jupyter kernel or papermill job"
    path = Path(notebook_path)
    if path.suffix != ".ipynb" or not path.is_file():
        return False, f"notebook {notebook_path} is not a readable .ipynb file"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
        dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    except (OSError, ValueError) as exc:
        return False, f"cannot read notebook {notebook_path}: {exc}"
    return True, None


def _load_model_file(path: Path) -> Any:
    """A model from a .skops (safe types only) or pickle file, for the CLI form of register."""
    try:
        return _read_model_file(path)
    except RegistrationError:
        raise
    except Exception as exc:  # a truncated, corrupt or foreign file: pickle/skops raise anything
        text = str(exc)
        raise RegistrationError(
            f"cannot read model file {path} ({type(exc).__name__}: {text[:200]}): not a valid {path.suffix} model file",
            "save the fitted model again (skops.io.dump, joblib.dump or cloudpickle.dump) and register that file, "
            "or register the model object from Python") from exc


def _read_model_file(path: Path) -> Any:
    if path.suffix == ".skops":
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if bad:
            raise RegistrationError(f"{path} contains types skops does not trust: {', '.join(bad)}",
                                    "save the model with cloudpickle/joblib, or register it from Python")
        return sio.load(path, trusted=untrusted)
    if path.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle"):
        import joblib

        return joblib.load(path)  # the user's own file, named by them on their command line
    raise RegistrationError(f"cannot read a model from {path}",
                            "pass a .skops, .pkl/.joblib file or an MLflow model directory (with an MLmodel file)")


def _outputs_baseline(model: Any, source_dir: Path | None, dst: Path, X, y):
    """The training-time prediction/label profile (``nbprod/outputs.json``), predicted the way the
    server will answer: the pyfunc flavour's ``predict_fn`` of the saved model."""
    import mlflow

    if source_dir is not None:
        return None  # a copied MLflow directory: predicting would mean loading it; the monitor falls back
    if isinstance(model, mlflow.pyfunc.PythonModel):
        def predict(rows):
            return model.predict(None, rows)
    else:
        pyfunc = mlflow.models.Model.load(str(dst / "MLmodel")).flavors.get("python_function", {})
        predict_fn = getattr(model, pyfunc.get("predict_fn") or "predict", None)
        if predict_fn is None:
            return None
        predict = predict_fn
    return outputs_profile(predict, X, y)


def _used_columns(model: Any, X):
    """X restricted to the columns the model was fitted on (``feature_names_in_``), in that order.

    A column the model never reads — typically the label left in the frame when no ``y`` was
    given — must not become a required serving input in the signature, nor a feature in the
    training profile. Such columns are dropped with a warning that names them; a column the
    model needs but X lacks is left for the prediction check to report.
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return X
    names = [str(n) for n in names]
    if not set(names) <= set(map(str, X.columns)):
        return X
    unused = [str(c) for c in X.columns if str(c) not in set(names)]
    if not unused:
        return X
    warnings.warn(f"X has column(s) the model does not use: {unused}; registering with the {len(names)} columns "
                  f"it was fitted on. If one of them is the label, pass it as y (--data X y) so it is recorded "
                  "as the label.", UserWarning, stacklevel=3)
    return X[names]


def build_model_dir(model: Any, X, dst: str | Path, *, y=None, metrics=None, params=None, name: str = "") -> BuiltModel:
    """Write the complete model directory under ``dst``; the manifest is written last."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ..data.profile import profile as make_profile

    dst = Path(dst)
    example = X.head(_EXAMPLE_ROWS) if isinstance(X, pd.DataFrame) else X[:_EXAMPLE_ROWS]
    source_dir = None
    if isinstance(model, (str, Path)):
        p = Path(model)
        if p.is_dir() and (p / "MLmodel").is_file():
            source_dir = p
        elif p.is_file():
            model = _load_model_file(p)
        else:
            raise RegistrationError(f"no model at {model}",
                                    "pass a fitted model, a model file or an MLflow model directory")

    if source_dir is None and not isinstance(model, mlflow.pyfunc.PythonModel) and isinstance(X, pd.DataFrame):
        X = _used_columns(model, X)
        example = X.head(_EXAMPLE_ROWS)

    trusted: list[str] = []
    if source_dir is not None:
        shutil.copytree(source_dir, dst)
        if (dst / "nbprod").exists():
            shutil.rmtree(dst / "nbprod")  # re-registering an nbprod model: rebuild its nbprod/ part
        flavors = mlflow.models.Model.load(str(dst / "MLmodel")).flavors
        flavor = "sklearn" if "sklearn" in flavors else "python_function"
        fmt = flavors.get("sklearn", {}).get("serialization_format", "mlflow")
    elif isinstance(model, mlflow.pyfunc.PythonModel):
        flavor, fmt = "python_function", "cloudpickle"
        try:
            output = model.predict(None, example)
        except Exception:
            output = None
        signature = infer_signature(example, output)
        mlflow.pyfunc.save_model(str(dst), python_model=model, signature=signature, input_example=example,
                                 pip_requirements=pinned_requirements(fmt))
    else:
        _check_fitted(model)
        flavor = "sklearn"
        try:
            output = model.predict(example)
        except Exception as exc:
            raise RegistrationError(f"the model cannot predict on the first rows of X: {exc}",
                                    "pass the training frame the model was fitted on (same columns and dtypes)"
                                    ) from exc
        fmt, trusted = _choose_serialization(model, example)
        import warnings

        import mlflow.sklearn

        with warnings.catch_warnings():
            # MLflow's hint about integer columns and missing values: the training profile,
            # not the signature, is what nbprod validates inputs against.
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(example, output)
        mlflow.sklearn.save_model(
            model, str(dst), serialization_format=fmt, skops_trusted_types=trusted or None,
            signature=signature, input_example=example,
            pip_requirements=pinned_requirements(fmt),
            metadata={"nbprod_serialization_format": fmt},
        )

    prof = make_profile(X)
    ctx = run_context()
    nbdir = dst / "nbprod"
    nbdir.mkdir(parents=True, exist_ok=True)
    (nbdir / "profile.json").write_text(prof.to_json(), encoding="utf-8")
    outputs = _outputs_baseline(model, source_dir, dst, X, y)
    if outputs is not None:
        (nbdir / OUTPUTS_FILE).write_text(outputs.to_json(), encoding="utf-8")
    has_nb, why = _notebook_snapshot(getattr(ctx, "notebook_path", None), nbdir / "notebook.ipynb")
    lineage = {
        "name": name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": getattr(ctx, "user", None),
        "host": getattr(ctx, "host", None),
        "notebook_path": getattr(ctx, "notebook_path", None),
        "notebook_snapshot": "nbprod/notebook.ipynb" if has_nb else None,
        "notebook_snapshot_missing_reason": why,
        "git_commit": getattr(ctx, "git_commit", None),
        "git_dirty": getattr(ctx, "git_dirty", None),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "flavor": flavor,
        "serialization_format": fmt,
        "skops_trusted_types": trusted,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}" if source_dir is None else None,
        "metrics": dict(metrics or {}),
        "params": {k: str(v) for k, v in (params or {}).items()},
        "training_rows": int(len(X)),
        "label": getattr(y, "name", None) if y is not None else None,
        "requirements": pinned_requirements(fmt),
    }
    (nbdir / "lineage.json").write_text(json.dumps(lineage, indent=1, default=str), encoding="utf-8")
    digest = write_manifest(dst)
    return BuiltModel(dst, fmt, flavor, digest, lineage, prof, trusted)
