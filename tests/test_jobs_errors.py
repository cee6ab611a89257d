"""Every error the jobs package raises is a typed exception of nbprod.errors, drawn in its hierarchy."""

import ast
import inspect
from pathlib import Path

import nbprod.errors as errors
import nbprod.jobs
from nbprod.errors import InputChanged, JobError, JobFailed, NbprodError

JOBS = Path(nbprod.jobs.__file__).parent


def _raised(tree: ast.AST) -> set[str]:
    """Names of the classes a module raises (``raise Name(...)`` / ``raise Name``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def test_every_raise_in_jobs_is_an_nbprod_error_from_errors_py():
    found = {}
    for path in sorted(JOBS.glob("*.py")):
        module = __import__(f"nbprod.jobs.{path.stem}", fromlist=["_"])
        for name in _raised(ast.parse(path.read_text())):
            if name in ("SystemExit", "_Terminated"):  # SIGTERM: recorded, then the process ends as asked
                continue
            cls = getattr(module, name, None)
            assert inspect.isclass(cls), f"{path.name} raises {name}, which is not a class there"
            found[name] = cls
    assert {"JobError", "JobFailed", "InputChanged"} <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, NbprodError) and cls.__module__ == "nbprod.errors", name


def test_the_job_errors_are_drawn_in_the_hierarchy_and_exported():
    tree = errors.__doc__
    for cls in (JobError, JobFailed, InputChanged):
        assert f"── {cls.__name__}" in tree and cls.__name__ in errors.__all__
    assert issubclass(JobFailed, JobError) and issubclass(InputChanged, JobError)
    assert nbprod.jobs.JobFailed is JobFailed and nbprod.jobs.InputChanged is InputChanged
    err = JobFailed("x failed", "open the copy", result="the job")
    assert err.result == "the job" and err.to_dict() == {"error": "JobFailed", "message": "x failed",
                                                          "fix": "open the copy"}
