"""Every error nbprod raises, and how to fix it.

All exceptions derive from :class:`NbprodError`, so ``except nbprod.errors.NbprodError`` catches
everything nbprod raises on purpose. Each message names the problem *and* the fix: the ``fix``
part is also available as ``err.fix`` for front ends that show it separately (the magics print it
as a one-line hint, the server returns it in the JSON body).

Subclasses also derive from the built-in they resemble, so generic code keeps working
(``ModelNotFoundError`` is a ``LookupError``, ``TrackingServerError`` a ``ConnectionError``)::

    NbprodError
    ├── ConfigError                      bad option value, unreadable [tool.nbprod]
    ├── DataError (ValueError)           the input is not a usable frame
    │   ├── ProfileError                 a profile cannot be built, read or is of a newer schema
    │   ├── RuleError                    malformed rules / YAML, rule on an unknown column
    │   └── ValidationError              data failed validation; carries ``.report``
    ├── RegistryError
    │   ├── ModelNotFoundError (LookupError)     unknown model, version or alias
    │   ├── RegistrationError            model/data not registrable (unfitted, length mismatch…)
    │   ├── IntegrityError               artefact tampered with or incomplete (sha256 manifest)
    │   └── TrackingServerError (ConnectionError)  tracking server unreachable
    ├── EvaluationError
    │   └── EvaluationFailed             candidate failed its thresholds; carries ``.result``
    ├── PackagingError
    ├── AuditError
    │   └── AuditChainBroken             the hash chain of the audit log does not verify
    ├── ServingError                     bad request to a model server (carries an HTTP status)
    ├── DeploymentError                  a deployment cannot be started, changed or found
    │   ├── LatencyBudgetExceeded        the latency gate refused a version
    │   └── DeploymentConflict           another caller is deploying, restoring or stopping it now
    ├── DriftError
    ├── JobError                         a notebook job cannot be run, read back or compared
    │   ├── JobFailed                    the notebook did not finish (cell error, dead kernel, timeout,
    │   │                                SIGTERM); the job is recorded all the same, ``.result`` holds it
    │   └── InputChanged                 a tracked input's hash differs from the recorded job's
    └── PipelineError                    a pipeline file is wrong (names its line) or a step errored
        └── PipelineConflict             another runner holds the pipeline right now
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NbprodError",
    "ConfigError",
    "DataError",
    "ProfileError",
    "RuleError",
    "ValidationError",
    "RegistryError",
    "ModelNotFoundError",
    "RegistrationError",
    "IntegrityError",
    "TrackingServerError",
    "EvaluationError",
    "EvaluationFailed",
    "PackagingError",
    "AuditError",
    "AuditChainBroken",
    "ServingError",
    "DeploymentError",
    "LatencyBudgetExceeded",
    "DeploymentConflict",
    "DriftError",
    "JobError",
    "JobFailed",
    "InputChanged",
    "PipelineError",
    "PipelineConflict",
]


class NbprodError(Exception):
    """Root of every error nbprod raises on purpose.

    ``problem`` says what is wrong, ``fix`` what to do about it. ``str(err)`` joins both so a
    plain traceback already tells the user the fix.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  Fix: {fix}")

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.problem, "fix": self.fix}


class ConfigError(NbprodError):
    """An nbprod option has a bad value or its source cannot be read."""


class DataError(NbprodError, ValueError):
    """The input is not a frame nbprod can work with."""


class ProfileError(DataError):
    """A training profile cannot be built or read."""


class RuleError(DataError):
    """Validation rules are malformed or name a column the data does not have."""


class ValidationError(DataError):
    """Data failed validation. ``.report`` holds the full :class:`ValidationReport`."""

    def __init__(self, problem: str, fix: str | None = None, *, report=None) -> None:
        super().__init__(problem, fix)
        self.report = report


class RegistryError(NbprodError):
    """A model registry operation failed."""


class ModelNotFoundError(RegistryError, LookupError):
    """No such registered model, version or alias."""


class RegistrationError(RegistryError, ValueError):
    """The model or its data cannot be registered as given."""


class IntegrityError(RegistryError):
    """A model artefact does not match its sha256 manifest: tampered with or incomplete."""


class TrackingServerError(RegistryError, ConnectionError):
    """The MLflow tracking server cannot be reached."""


class EvaluationError(NbprodError):
    """A model cannot be evaluated as asked."""


class EvaluationFailed(EvaluationError):
    """The candidate did not meet its thresholds. ``.result`` holds the EvaluationResult."""

    def __init__(self, problem: str, fix: str | None = None, *, result=None) -> None:
        super().__init__(problem, fix)
        self.result = result


class PackagingError(NbprodError):
    """A deployable bundle cannot be written."""


class AuditError(NbprodError):
    """The audit log cannot be written or read."""


class AuditChainBroken(AuditError):
    """The audit log's hash chain does not verify: a row was edited, inserted or deleted."""


class ServingError(NbprodError):
    """A request to a model server is invalid. ``.status`` is the HTTP status to answer with,
    ``.code`` the stable ``error`` field of the JSON answer (None: the class name)."""

    def __init__(self, problem: str, fix: str | None = None, *, status: int = 400, code: str | None = None) -> None:
        super().__init__(problem, fix)
        self.status = status
        self.code = code


class DeploymentError(NbprodError):
    """A deployment cannot be started, changed or found."""


class LatencyBudgetExceeded(DeploymentError):
    """The latency gate measured a p95 above the budget; the old version keeps serving."""


class DeploymentConflict(DeploymentError):
    """Someone else is deploying, restoring or stopping this deployment right now; nothing was changed."""


class DriftError(NbprodError):
    """Drift cannot be computed as asked."""


class JobError(NbprodError):
    """A notebook job cannot be run as asked (no notebook, unknown parameter or kernel, bad parameter
    file), or a recorded job cannot be found, re-run or compared."""


class JobFailed(JobError):
    """The notebook did not finish: a cell raised, the kernel died, a cell timed out or the job was
    terminated. The job is recorded all the same; ``.result`` is its ``JobResult`` (status, error,
    executed copy)."""

    def __init__(self, problem: str, fix: str | None = None, result: Any = None) -> None:
        super().__init__(problem, fix)
        self.result = result


class InputChanged(JobError):
    """A tracked input's content differs from the one the recorded job read (``nbprod rerun``)."""


class PipelineError(NbprodError):
    """A pipeline file is wrong (unknown step, cycle, missing output, unknown verb) or a step errored.

    ``line`` is the line of the pipeline file the problem is on, when there is one."""

    def __init__(self, problem: str, fix: str | None = None, *, line: int | None = None) -> None:
        super().__init__(problem, fix)
        self.line = line


class PipelineConflict(PipelineError):
    """Another runner holds this pipeline right now; nothing was run."""
