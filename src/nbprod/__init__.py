"""nbprod: from a Jupyter notebook to a monitored, reversible model service, on MLflow.

The public verbs are imported lazily: ``import nbprod`` loads no pandas, mlflow, scikit-learn or
altair; the first call of a verb imports what that verb needs. In a notebook::

    %load_ext nbprod
    %nbprod validate df --against profile.json
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: public name -> (module, attribute); attribute None means the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    # configuration and errors
    "config": ("nbprod.config", None),
    "errors": ("nbprod.errors", None),
    "settings": ("nbprod.config", "settings"),
    "NbprodError": ("nbprod.errors", "NbprodError"),
    "info": ("nbprod._info", "info"),
    # data: training profiles and validation
    "profile": ("nbprod.data.profile", "profile"),
    "Profile": ("nbprod.data.profile", "Profile"),
    "ColumnProfile": ("nbprod.data.profile", "ColumnProfile"),
    "validate": ("nbprod.registry.against", "validate"),
    "ValidationReport": ("nbprod.data.validate", "ValidationReport"),
    "Failure": ("nbprod.data.validate", "Failure"),
    "row_flags": ("nbprod.data.validate", "row_flags"),
    "OodChecker": ("nbprod.data.ood", "OodChecker"),
    "Rules": ("nbprod.data.rules", "Rules"),
    # audit trail and packaging
    "audit": ("nbprod.audit", None),
    "package": ("nbprod.packaging", "package"),
    "Bundle": ("nbprod.packaging", "Bundle"),
    # registry and evaluation
    "registry": ("nbprod.registry", None),
    "register": ("nbprod.registry", "register"),
    "get_version": ("nbprod.registry", "get_version"),
    "set_alias": ("nbprod.registry", "set_alias"),
    "delete_alias": ("nbprod.registry", "delete_alias"),
    "models": ("nbprod.registry", "models"),
    "load_profile": ("nbprod.registry", "load_profile"),
    "download": ("nbprod.registry", "download"),
    "load_model": ("nbprod.registry", "load_model"),
    "evaluate": ("nbprod.registry", "evaluate"),
    "parse_model_uri": ("nbprod.registry", "parse_model_uri"),
    "ModelVersion": ("nbprod.registry", "ModelVersion"),
    "ModelTable": ("nbprod.registry", "ModelTable"),
    "LoadedModel": ("nbprod.registry", "LoadedModel"),
    "EvaluationResult": ("nbprod.registry", "EvaluationResult"),
    # serving
    "serve": ("nbprod.service", "serve"),
    "create_app": ("nbprod.serving.app", "create_app"),
    "DeploymentSpec": ("nbprod.serving.spec", "DeploymentSpec"),
    # deployments
    "deploy": ("nbprod.deployments.api", "deploy"),
    "promote": ("nbprod.deployments.api", "promote"),
    "rollback": ("nbprod.deployments.api", "rollback"),
    "set_split": ("nbprod.deployments.api", "set_split"),
    "undeploy": ("nbprod.deployments.api", "undeploy"),
    "status": ("nbprod.deployments.api", "status"),
    "restore": ("nbprod.deployments.api", "restore"),
    "Deployment": ("nbprod.deployments.results", "Deployment"),
    "StatusTable": ("nbprod.deployments.results", "StatusTable"),
    "PredictionResult": ("nbprod.deployments.prediction", "PredictionResult"),
    # drift
    "drift": ("nbprod.drift.api", "drift"),
    "DriftReport": ("nbprod.drift.report", "DriftReport"),
    "ColumnDrift": ("nbprod.drift.report", "ColumnDrift"),
    # monitoring
    "monitor": ("nbprod.monitoring.monitor", "monitor"),
    "feedback": ("nbprod.monitoring.feedback", "feedback"),
    "MonitorReport": ("nbprod.monitoring.report", "MonitorReport"),
    "FeedbackResult": ("nbprod.monitoring.feedback", "FeedbackResult"),
    "monitor_panel": ("nbprod.monitoring.widget", "panel"),
    # datasets and jobs
    "datasets": ("nbprod.datasets", None),
    "run": ("nbprod.jobs", "run"),
    "rerun": ("nbprod.jobs", "rerun"),
    "runs": ("nbprod.jobs", "runs"),
    "get_run": ("nbprod.jobs", "get_run"),
    "diff": ("nbprod.jobs", "diff"),
    "check": ("nbprod.jobs", "check"),
    "inspect": ("nbprod.jobs", "inspect"),
    "track_input": ("nbprod.jobs", "track_input"),
    "JobResult": ("nbprod.jobs", "JobResult"),
    "RunTable": ("nbprod.jobs", "RunTable"),
    "JobDiff": ("nbprod.jobs", "JobDiff"),
    "CheckReport": ("nbprod.jobs", "CheckReport"),
}

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'nbprod' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython) -> None:
    """``%load_ext nbprod``: register ``%nbprod`` / ``%%nbprod`` and the ``Nbprod`` config."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext nbprod``: remove the magics again."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import audit, config, datasets, errors, registry
    from ._info import info
    from .config import settings
    from .data.ood import OodChecker
    from .data.profile import ColumnProfile, Profile, profile
    from .data.rules import Rules
    from .data.validate import Failure, ValidationReport, row_flags
    from .registry.against import validate
    from .deployments.api import deploy, promote, restore, rollback, set_split, status, undeploy
    from .deployments.prediction import PredictionResult
    from .deployments.results import Deployment, StatusTable
    from .drift.api import drift
    from .drift.report import ColumnDrift, DriftReport
    from .errors import NbprodError
    from .jobs import (
        CheckReport,
        JobDiff,
        JobResult,
        RunTable,
        check,
        diff,
        get_run,
        inspect,
        rerun,
        run,
        runs,
        track_input,
    )
    from .monitoring.feedback import FeedbackResult, feedback
    from .monitoring.monitor import monitor
    from .monitoring.report import MonitorReport
    from .monitoring.widget import panel as monitor_panel
    from .packaging import Bundle, package
    from .registry import (
        EvaluationResult,
        LoadedModel,
        ModelTable,
        ModelVersion,
        delete_alias,
        download,
        evaluate,
        get_version,
        load_model,
        load_profile,
        models,
        parse_model_uri,
        register,
        set_alias,
    )
    from .serving.app import create_app
    from .service import serve
    from .serving.spec import DeploymentSpec
