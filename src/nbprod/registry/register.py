"""``register``: one call, all or nothing.

Order: check the inputs → build the complete model directory locally (model, signature, example,
profile, lineage, notebook, manifest) → run with params/metrics + artefacts → model version with
``nbprod.*`` tags → alias → audit row → the run ends. If any step fails, everything created so far
is removed (version, a model created by this call, the run and its artefacts), so no version ever
exists without its profile and manifest, and none without its audit row.

A process killed mid-way cannot clean up: its run stays RUNNING, tagged with its pid and what to
undo, and the next ``register`` (or ``nbprod audit --verify --repair``) rolls it back — see
:mod:`.recovery`. Files are created 0600 / 0700 (the artefacts hold the model and its training
profile).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from typing import Any

from .._files import private_umask
from .._quiet import quiet_mlflow
from ..errors import NbprodError, RegistrationError
from . import recovery
from .modeldir import build_model_dir
from .store import client, experiment_id
from .uris import check_alias, check_name, format_uri
from .versions import TAG, ModelVersion, _audit, _local_path, _mlflow_call

__all__ = ["register"]

PAUSE_ENV = "NBPROD_TEST_REGISTER_PAUSE_AT"  # tests only: "version" or "alias" — stop there to be killed


def _pause(step: str) -> None:
    """Tests kill a registration at a chosen step: print the step, then wait to be killed."""
    if os.environ.get(PAUSE_ENV) == step:
        print(f"nbprod-register-paused:{step}", flush=True)
        time.sleep(300)


def _repair_leftovers(c) -> None:
    """Roll back registrations whose process died (best effort: a registration never fails on it)."""
    try:
        recovery.repair(c)
    except Exception:  # noqa: BLE001 - `nbprod audit --verify` reports what is left
        pass


def _check_data(X, y) -> None:
    import numpy as np
    import pandas as pd

    if not isinstance(X, (pd.DataFrame, np.ndarray)):
        raise RegistrationError(f"X must be a pandas DataFrame, got {type(X).__name__}",
                                "pass the training frame the model was fitted on")
    if len(X) == 0:
        raise RegistrationError("X has no rows", "pass the training frame the model was fitted on")
    if y is not None and len(y) != len(X):
        raise RegistrationError(f"X has {len(X)} rows but y has {len(y)}",
                                "pass the labels that belong to X (same rows, same order)")


def _check_metrics(metrics: dict | None) -> dict[str, float]:
    out = {}
    for key, value in (metrics or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise RegistrationError(f"metric {key}={value!r} is not a number",
                                    "pass metrics as numbers, e.g. auc=0.91") from None
        if not math.isfinite(out[str(key)]):
            raise RegistrationError(f"metric {key}={value!r} is not a finite number",
                                    "pass finite metric values, e.g. auc=0.91, "
                                    "and leave out metrics that could not be computed")
    return out


def _remove_run_artifacts(c, run_id: str) -> None:
    try:
        path = _local_path(c.get_run(run_id).info.artifact_uri)
    except Exception:
        return
    if path is not None and path.is_dir():
        shutil.rmtree(path.parent if path.name == "artifacts" else path, ignore_errors=True)


@quiet_mlflow()
def register(model: Any, name: str, X, y=None, *, metrics: dict | None = None, params: dict | None = None,
             alias: str | None = None, description: str | None = None, key: str | None = None) -> ModelVersion:
    """Register a fitted model as a new version of ``name`` with everything production needs.

    ``model`` is a fitted scikit-learn estimator/pipeline, an ``mlflow.pyfunc.PythonModel``, a model
    file (.skops/.pkl/.joblib) or an MLflow model directory. ``X`` is the training frame: its first
    rows become the input example and signature, all of it the training profile. ``key`` is an
    optional idempotency key stored as a tag (re-registering with the same key returns the
    existing version instead of creating a second one).
    """
    import pandas as pd

    check_name(name)
    if alias is not None:
        alias = check_alias(alias)
    _check_data(X, y)
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    metrics = _check_metrics(metrics)
    params = {str(k): v for k, v in (params or {}).items()}

    c = client()
    _repair_leftovers(c)  # before the key lookup: a killed registration's version is no answer
    if key is not None:
        existing = _mlflow_call(c.search_model_versions, f"name='{name}' and tag.`{TAG}key`='{key}'")
        if existing:
            return ModelVersion._from_mlflow(max(existing, key=lambda v: int(v.version)))
    exp_id = experiment_id(c)

    tmp = recovery.temp_folder()
    run_id = None
    created_model = False
    version = None
    previous_alias: str | None = None
    try:
        with private_umask():  # the model directory and its copy in the artefact store: 0600 / 0700
            try:
                built = build_model_dir(model, X, tmp / "model", y=y, metrics=metrics, params=params, name=name)
            except NbprodError:
                raise
            except Exception as exc:
                raise RegistrationError(f"cannot save the model: {type(exc).__name__}: {exc}",
                                        "register a fitted scikit-learn model/pipeline "
                                        "or an mlflow.pyfunc.PythonModel") from exc
            lineage = built.lineage
            # Inside an nbprod job (`nbprod run`), the job's run is this registration's parent and the
            # version names the job: the version shows the job, the job finds its versions by this tag.
            job_run = os.environ.get("NBPROD_JOB_RUN_ID") or ""
            run = _mlflow_call(c.create_run, exp_id, run_name=f"register-{name}", tags={
                **({"mlflow.parentRunId": job_run, TAG + "job_run_id": job_run} if job_run else {}),
                "mlflow.user": lineage.get("user") or "", "mlflow.source.name": lineage.get("notebook_path") or "",
                **({"mlflow.source.git.commit": lineage["git_commit"]} if lineage.get("git_commit") else {}),
                TAG + "action": "register", TAG + "pid": str(os.getpid()), TAG + "host": socket.gethostname(),
                **({TAG + "alias": alias} if alias else {}),
            })
            run_id = run.info.run_id
            from mlflow.entities import Metric, Param


            now = int(time.time() * 1000)
            _mlflow_call(c.log_batch, run_id,
                         metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            _mlflow_call(c.log_artifacts, run_id, str(built.path), "model")
        from mlflow.exceptions import MlflowException

        try:
            c.get_registered_model(name)
        except MlflowException:
            try:
                _mlflow_call(c.create_registered_model, name, description=None)
                created_model = True
                _mlflow_call(c.set_tag, run_id, TAG + "created_model", "true")
            except MlflowException:
                pass  # created concurrently
        prof = built.profile
        tags = {
            TAG + "manifest_sha256": built.manifest_digest,
            TAG + "serialization_format": built.serialization_format,
            TAG + "flavor": built.flavor,
            TAG + "created_by": lineage.get("user") or "",
            TAG + "metrics": json.dumps(metrics),
            TAG + "profile_rows": str(getattr(prof, "n_rows", len(X))),
            TAG + "profile_columns": str(len(getattr(prof, "columns", X.columns))),
            TAG + "notebook": lineage.get("notebook_path") or "",
            TAG + "git_commit": lineage.get("git_commit") or "",
            TAG + "git_dirty": (str(bool(lineage.get("git_dirty"))).lower()
                                if lineage.get("git_dirty") is not None else ""),
            TAG + "job_run_id": job_run,
        }
        if key is not None:
            tags[TAG + "key"] = key
        artifact_uri = c.get_run(run_id).info.artifact_uri.rstrip("/") + "/model"
        mv = _mlflow_call(c.create_model_version, name, artifact_uri, run_id=run_id,
                          tags={k: v for k, v in tags.items() if v != ""}, description=description,
                          await_creation_for=0)  # OSS stores create READY versions; no polling
        version = str(mv.version)
        _pause("version")
        details = {"version": version, "run_id": run_id, "serialization_format": built.serialization_format,
                   "manifest_sha256": built.manifest_digest, "metrics": metrics}
        if alias is not None:
            previous_alias = _alias_target(c, name, alias)
            _mlflow_call(c.set_tag, run_id, TAG + "alias_previous", previous_alias or "")  # what a repair restores
            _mlflow_call(c.set_registered_model_alias, name, alias, version)
            details["alias"] = alias
            if previous_alias is not None:
                details["alias_moved_from"] = previous_alias
            _pause("alias")
        _audit("register", format_uri(name, version), details)
    except BaseException:
        _rollback(c, name, version, created_model, run_id, alias, previous_alias)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:  # registered and audited: a run left RUNNING now is only ended by the next repair
        _mlflow_call(c.set_terminated, run_id)
    except Exception:  # noqa: BLE001
        pass
    return ModelVersion._from_mlflow(_mlflow_call(c.get_model_version, name, version))


def _rollback(c, name: str, version: str | None, created_model: bool, run_id: str | None, alias: str | None,
              previous_alias: str | None) -> None:
    """Undo a partial registration; best effort, each step independent of the others."""
    steps = []
    if version is not None:
        if alias is not None and previous_alias is not None:
            steps.append(lambda: c.set_registered_model_alias(name, alias, previous_alias))
        # Deleting a version also drops any alias still pointing at it (a new alias set by this call).
        steps.append(lambda: c.delete_model_version(name, version))
    if created_model:
        steps.append(lambda: _delete_if_unused(c, name, version))
    if run_id is not None:
        steps.append(lambda: _remove_run_artifacts(c, run_id))
        steps.append(lambda: c.delete_run(run_id))
    for step in steps:
        try:
            step()
        except Exception:
            pass


def _delete_if_unused(c, name: str, own_version: str | None) -> None:
    """Delete the registered model this call created, unless another process has added a version."""
    others = [v for v in c.search_model_versions(f"name='{name}'") if str(v.version) != own_version]
    if not others:
        c.delete_registered_model(name)


def _alias_target(c, name: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None
