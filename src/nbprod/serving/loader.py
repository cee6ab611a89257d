"""One servable model version: its signature, OOD checker, compiled fast path and pyfunc fallback.

Why a start-up cache: importing scikit-learn (it pulls pandas and scipy) takes ~3.5 s on the
reference machine and mlflow ~4 s, so a server that unpickles the model on every start cannot
be ready in 2 s. The first load of a model directory does the full job — the model store's
``open`` (for nbprod's registry: the sha256 manifest verified), compile the fast path, check it against the model's own
predictions on sample rows — and stores the outcome (plan, signature, OOD ranges) under
``$NBPROD_HOME/cache/serving/<sha256 of every file of the model dir>.pkl``. Later starts hash the
files (which is also the integrity check: any changed byte is a cache miss and a verified full
load) and unpickle plain numpy arrays. The pyfunc model is then loaded only when it is needed.

Why a :class:`ModelStore` is passed in: serving is the bottom of the request path and imports no
other capability. What it needs from a registry (where a registered URI's files are, and a
verified load of a directory in the registry's format) is handed to it by the code that builds
the server (:mod:`nbprod.service`), the way the server's hooks and routes are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..config import settings
from ..data.ood import OodChecker
from ..errors import ServingError
from .codecs import Batch, Column, coerce
from .fastpath import Unsupported, compile_estimator, equivalent
from .quickood import QuickOod

__all__ = ["ServedVersion", "ModelStore", "OodChecker", "load_version", "model_dir", "model_dir_digest", "CACHE_SCHEMA"]

CACHE_SCHEMA = 2  # 2: the OOD checker is nbprod.data.ood.OodChecker (shared with row_flags)


# --- model directories -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStore:
    """What the server needs from a model registry (nbprod's: :func:`nbprod.service.model_store`).

    ``locate(uri)``: the local directory, name and version of a registered model URI.
    ``open(path)``: the verified full load of a directory in the registry's format — an object
    with ``pyfunc``, ``raw_model``, ``profile``, ``name`` and ``version`` — or None when the
    directory is a plain MLflow model (loaded with ``mlflow.pyfunc``).
    """

    locate: Callable[[str], tuple[Path, str, str]]
    open: Callable[[Path], Any]


#: The folder a registered model directory carries beside MLmodel (profile, sha256 manifest).
NBPROD_DIR = "nbprod"


def model_dir_digest(path: Path) -> str:
    """sha256 over every file (relative path + content) of a model directory."""
    h = hashlib.sha256()
    for p in sorted(x for x in path.rglob("*") if x.is_file() and "__pycache__" not in x.parts):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _read_mlmodel(path: Path) -> dict:
    try:
        with open(path / "MLmodel") as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise _no_mlmodel(path) from None


def _no_mlmodel(path: Path) -> ServingError:
    return ServingError(f"{path} is not an MLflow model directory (no MLmodel file)",
                        "pass the directory mlflow.<flavor>.save_model wrote, or a registered model URI",
                        status=500, code="no_model")


def _signature(mlmodel: dict) -> tuple[list[Column] | None, bool]:
    sig = mlmodel.get("signature") or {}
    raw = sig.get("inputs")
    has_params = bool(sig.get("params"))
    if not raw:
        return None, has_params
    specs = json.loads(raw) if isinstance(raw, str) else raw
    if not all(isinstance(s, dict) and s.get("name") for s in specs):
        return None, has_params  # tensor signature: no named columns
    return [Column(s["name"], s.get("type"), s.get("required", True)) for s in specs], has_params


_V2_DATATYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
                 "string": "BYTES", "binary": "BYTES", "float64": "FP64", "float32": "FP32", "float16": "FP16",
                 "int64": "INT64", "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint64": "UINT64",
                 "uint32": "UINT32", "uint16": "UINT16", "uint8": "UINT8", "bool": "BOOL", "object": "BYTES",
                 "str": "BYTES"}


def _output_datatype(mlmodel: dict) -> str | None:
    """The Open Inference Protocol datatype of the model's output signature (None: not declared)."""
    raw = (mlmodel.get("signature") or {}).get("outputs")
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if not isinstance(specs, list) or not specs or not isinstance(specs[0], dict):
        return None
    first = specs[0]
    name = (first.get("tensor-spec") or {}).get("dtype") if first.get("type") == "tensor" else first.get("type")
    return _V2_DATATYPES.get(str(name))


def _predict_fn(mlmodel: dict) -> str:
    flavors = mlmodel.get("flavors") or {}
    return (flavors.get("python_function") or {}).get("predict_fn") or "predict"


def _cache_dir() -> Path:
    return Path(settings.home) / "cache" / "serving"


@dataclass
class ServedVersion:
    """A loaded model version, ready to predict on coerced column dicts."""

    name: str
    version: str
    uri: str
    path: Path
    signature: list[Column] | None
    has_params: bool = False
    plan: Any = None  # fastpath.Plan when the equivalence check passed
    fastpath_reason: str = ""
    ood: OodChecker | None = None
    predict_fn: str = "predict"
    output_datatype: str | None = None  # OIP v2 datatype of the output signature
    _pyfunc: Any = None
    _store: ModelStore | None = field(default=None, repr=False)  # opens the pyfunc (verified) on first use
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _quick_ood: QuickOod | None = field(default=None, repr=False)

    def ood_flags(self, cols: dict[str, Any], n: int) -> list[list[str]] | None:
        """The OOD checker's flags for these rows (None: none flagged), through :class:`QuickOod`."""
        if self.ood is None:
            return None
        quick = self._quick_ood
        if quick is None or quick.checker is not self.ood:
            quick = self._quick_ood = QuickOod(self.ood)
        return quick.flags(cols, n)

    @property
    def path_kind(self) -> str:
        return "fastpath" if self.plan is not None else "pyfunc"

    @property
    def pyfunc(self):
        """The MLflow pyfunc model, loaded on first use (thread-safe)."""
        if self._pyfunc is None:
            with self._lock:
                if self._pyfunc is None:
                    self._pyfunc = _load_full(self.path, self._store)[0].pyfunc
        return self._pyfunc

    def predict(self, cols: dict[str, Any], n: int, params: dict | None = None, order: list[str] | None = None):
        """Predict on coerced columns: the fast path when compiled, else pyfunc on a DataFrame."""
        if self.plan is not None and not (params and self.has_params):
            return self.plan(cols, n)
        import pandas as pd  # here: a start from the cache and the fast path never load pandas

        names = [c.name for c in self.signature] if self.signature else (order or list(cols))
        df = pd.DataFrame({k: cols[k] for k in names}, columns=names)
        if params and self.has_params:
            return self.pyfunc.predict(df, params=params)
        return self.pyfunc.predict(df)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "uri": self.uri, "path": self.path_kind,
                "fastpath": self.plan.description if self.plan is not None else None,
                "fastpath_reason": self.fastpath_reason,
                "inputs": [{"name": c.name, "type": c.type} for c in self.signature or []]}


class _Full:
    """What a full load yields (registry LoadedModel or a plain MLflow load)."""

    def __init__(self, pyfunc, raw, profile, name, version):
        self.pyfunc, self.raw_model, self.profile, self.name, self.version = pyfunc, raw, profile, name, version


def _load_full(path: Path, store: ModelStore | None) -> tuple[_Full, str]:
    """Load a model directory through the model store (integrity verified) or MLflow directly."""
    opened = store.open(path) if store is not None else None
    if opened is not None:
        return _Full(opened.pyfunc, opened.raw_model, opened.profile, opened.name, str(opened.version or "")), "store"
    if (path / NBPROD_DIR).is_dir():  # never load a registered directory without its integrity check
        raise ServingError(f"{path} is a registered nbprod model directory, and this server has no model store "
                           "to verify its sha256 manifest",
                           "serve it with nbprod.serve / `nbprod serve` (or pass models=nbprod.service.model_store() "
                           "to create_app)", status=500, code="no_model_store")
    import mlflow.pyfunc  # here: a start from the cache never loads mlflow (module docstring)

    pyf = mlflow.pyfunc.load_model(str(path))
    try:
        raw = pyf.get_raw_model()
    except Exception:  # noqa: BLE001 - flavors without a raw model
        raw = None
    return _Full(pyf, raw, None, "", ""), "mlflow"


def _sample_rows(path: Path, signature: list[Column] | None, profile: Any) -> Any:
    """Rows for the equivalence check: the profile's sample, else the saved input example."""
    import pandas as pd  # here: only a cache miss needs pandas

    if profile is not None and getattr(profile, "sample", None):
        try:
            frame = profile.sample_frame()
            if len(frame):
                return frame
        except Exception:  # noqa: BLE001 - fall back to the input example
            pass
    for name in ("input_example.json", "serving_input_example.json"):
        p = path / name
        if p.is_file():
            data = json.loads(p.read_text())
            if "inputs" in data and isinstance(data["inputs"], dict) and "dataframe_split" in data["inputs"]:
                data = data["inputs"]["dataframe_split"]
            if "dataframe_split" in data:
                data = data["dataframe_split"]
            if "columns" in data and "data" in data:
                return pd.DataFrame(data["data"], columns=data["columns"])
    return None


def _compile(full: _Full, path: Path, signature, predict_fn: str) -> tuple[Any, str]:
    if full.raw_model is None:
        return None, "no scikit-learn model in this flavor"
    try:
        plan = compile_estimator(full.raw_model, predict_fn)
    except Unsupported as exc:
        return None, f"not compiled: {exc}"
    except Exception as exc:  # noqa: BLE001 - an odd estimator must never stop serving
        return None, f"not compiled: {type(exc).__name__}: {exc}"
    df = _sample_rows(path, signature, full.profile)
    if df is None or not len(df):
        return None, "no sample rows to check the compiled path against"
    if signature:
        df = df[[c.name for c in signature if c.name in df.columns]]

    cols = coerce(Batch({k: df[k].tolist() for k in df.columns}, len(df)), signature)
    expected = full.pyfunc.predict(df)
    ok, why = equivalent(plan, np.asarray(expected), cols, len(df))
    return (plan, f"equivalent on {len(df)} sample rows") if ok else (None, f"equivalence check failed: {why}")


def _ood_checker(profile: Any) -> OodChecker | None:
    """The shared OOD checker (nbprod.data.ood) of a version's training profile; None without
    a profile or with nothing to check. Tolerance: ``settings.range_tolerance``, as ``row_flags``."""
    if profile is None or not getattr(profile, "columns", None):
        return None
    checker = OodChecker.from_profile(profile)
    return checker if len(checker) else None


def model_dir(source: str, store: ModelStore | None = None) -> tuple[Path, str | None, str | None]:
    """``source``'s model directory — ``source`` itself, or a registered model URI's through ``store`` — with
    the registered name and version (None for a plain directory), without loading it.

    Raises when there is none: a server checks its models with this before it starts (``nbprod serve
    --model`` with a typo is one clear error, not the start-up traceback of every worker)."""
    path = Path(source).expanduser()
    name = version = None
    if not path.is_dir():
        if path.exists() or source.startswith(("/", "./", "../", "~")):
            raise ServingError(f"no model directory at {source}",
                               "pass the directory holding the MLmodel file (a packaged bundle's ./model), "
                               "or a registered model URI such as credit-risk@champion", status=500, code="no_model")
        if store is None:
            raise ServingError(f"{source!r} is not a model directory, and this server has no model store to "
                               "resolve a registered model URI",
                               "pass a model directory, or serve the URI with nbprod.serve / `nbprod serve`",
                               status=500, code="no_model_store")
        found, name, version = store.locate(source)
        path = Path(found)
    path = path.resolve()
    if not (path / "MLmodel").is_file():
        raise _no_mlmodel(path)
    return path, name, version


def load_version(source: str, version: str | None = None, *, name: str | None = None,
                 fast: bool = True, cache: bool = True,
                 on_event: Callable[[str, dict], None] | None = None,
                 store: ModelStore | None = None) -> ServedVersion:
    """Load a model directory, or a registered model URI through ``store``, as a :class:`ServedVersion`."""
    uri = source
    path, mv_name, mv_version = model_dir(source, store)
    name = name or mv_name
    version = version or mv_version
    mlmodel = _read_mlmodel(path)
    signature, has_params = _signature(mlmodel)
    predict_fn = _predict_fn(mlmodel)
    output_datatype = _output_datatype(mlmodel)
    digest = model_dir_digest(path)
    cache_file = _cache_dir() / f"{digest}.pkl"
    if not cache:
        return _load_and_cache(path, uri, name, version, signature, has_params, predict_fn, output_datatype, fast,
                               store, None)
    found = _from_cache(cache_file, fast, path, uri, name, version, signature, has_params, predict_fn,
                        output_datatype, store)
    if found is not None:
        return found
    with _filling(cache_file):  # one full load per version: others wait for it and read what it cached
        found = _from_cache(cache_file, fast, path, uri, name, version, signature, has_params, predict_fn,
                            output_datatype, store)
        if found is not None:
            return found
        return _load_and_cache(path, uri, name, version, signature, has_params, predict_fn, output_datatype, fast,
                               store, cache_file)


def _from_cache(cache_file: Path, fast: bool, path: Path, uri: str, name: str | None, version: str | None,
                signature, has_params: bool, predict_fn: str, output_datatype: str | None,
                store: ModelStore | None) -> ServedVersion | None:
    """The version from its start-up cache file; None on a miss (no file, another schema, corrupt)."""
    if not cache_file.is_file():
        return None
    try:
        with open(cache_file, "rb") as fh:
            meta = pickle.load(fh)
        if meta.get("schema") == CACHE_SCHEMA and meta.get("fast") == fast:
            return ServedVersion(name or meta["name"] or path.name, str(version or meta["version"] or "1"), uri,
                                 path, signature, has_params, meta["plan"], meta["reason"], meta["ood"],
                                 predict_fn, output_datatype, _store=store)
    except Exception:  # noqa: BLE001 - a corrupt cache is just a miss
        pass
    return None


@contextlib.contextmanager
def _filling(cache_file: Path, wait_s: float = 120.0) -> Iterator[None]:
    """Hold ``<digest>.lock`` (an exclusive ``flock``) while filling a cache file.

    Why: a deploy starts its server and fills the cache meanwhile (``nbprod.deployments``), and a
    worker that misses then waits for that fill instead of doing the same full load (scikit-learn,
    MLflow: seconds) beside it; two workers that miss together load once. The kernel releases the
    lock of a process that dies. After ``wait_s`` (or without ``fcntl``) it loads without the lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, each loader loads
        yield
        return
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_file.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _load_and_cache(path: Path, uri: str, name: str | None, version: str | None, signature, has_params: bool,
                    predict_fn: str, output_datatype: str | None, fast: bool, store: ModelStore | None,
                    cache_file: Path | None) -> ServedVersion:
    """The full load (verified by ``store``), compiled and checked, written to ``cache_file`` when given."""
    full, _how = _load_full(path, store)
    plan, reason = _compile(full, path, signature, predict_fn) if fast else (None, "fast path disabled")
    ood = _ood_checker(full.profile)
    served = ServedVersion(name or full.name or path.name, str(version or full.version or "1"), uri, path,
                           signature, has_params, plan, reason, ood, predict_fn, output_datatype, full.pyfunc,
                           _store=store)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump({"schema": CACHE_SCHEMA, "fast": fast, "name": full.name, "version": full.version,
                             "plan": plan, "reason": reason, "ood": ood}, fh, protocol=5)
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return served
