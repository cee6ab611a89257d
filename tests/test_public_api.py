"""Every public verb stays callable, whatever nbprod's own imports bind to the package's names."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_verbs_stay_callable_after_their_subpackages_are_imported():
    """Importing a subpackage binds its name on ``nbprod``: no verb may share a name with one. The
    drift statistics are ``nbprod.driftstats``, so ``nbprod.drift`` stays the plain function (no
    module posing as one). Checked in a fresh interpreter, where nothing is imported yet."""
    code = """
import nbprod
verbs = [n for n in nbprod.__all__ if n[0].islower() and callable(getattr(nbprod, n))]
import nbprod.driftstats.report, nbprod.monitoring.monitor, nbprod.registry, nbprod.deployments.api
import nbprod.data.validate
not_callable = [n for n in verbs if not callable(getattr(nbprod, n))]
assert not not_callable, not_callable
import types
assert isinstance(nbprod.drift, types.FunctionType), type(nbprod.drift)
import pandas as pd
frame = pd.DataFrame({"x": [float(i) for i in range(100)]})
assert nbprod.drift(frame, frame).dataset_drift is False
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


INTERNALS = {"OodChecker": "nbprod.data.ood", "row_flags": "nbprod.data.validate", "create_app": "nbprod.serving.app",
             "DeploymentSpec": "nbprod.serving.spec", "parse_model_uri": "nbprod.registry.uris"}


def test_internals_are_not_top_level_names_but_stay_importable_from_their_modules():
    """The top level is what users call: the verbs, what they return, what they build (Profile, Rules)."""
    import importlib

    import nbprod

    for name, module in INTERNALS.items():
        assert name not in nbprod.__all__ and name not in dir(nbprod)
        assert getattr(importlib.import_module(module), name) is not None
    assert {"profile", "validate", "register", "deploy", "drift", "monitor", "feedback", "run", "Profile",
            "Rules"} <= set(nbprod.__all__)


def test_results_print_readably_in_a_terminal(nbprod_home, tmp_path):
    """A terminal (IPython, a log) shows repr(): the readable text, not a dump of dataclass fields."""
    from nbprod.deployments.results import Deployment, StatusTable
    from nbprod.jobs import JobResult
    from nbprod.monitoring.alerts import AlertCheck
    from nbprod.packaging import Bundle

    results = [Deployment(name="credit", url="http://127.0.0.1:1", action="deployed", routes=[], pid=1, workers=1,
                          generation=1, token="secret-token"),
               StatusTable(rows=[]), AlertCheck("credit"),
               JobResult(tmp_path / "a.ipynb", tmp_path / "b.ipynb", {}, 1.0)]
    results.append(Bundle(tmp_path, "models:/credit/1", "credit", "1", "credit:1",
                          files=["model/MLmodel", "k8s/x.yaml"]))
    for result in results:
        shown = str(result).replace("secret-token  (shown once: store it now)",
                                    "…oken  (hidden so that a saved notebook does not keep it: "
                                    "read this result's .token, or print() it, and store it now)")
        assert repr(result) == shown, type(result).__name__  # repr (what a notebook saves) hides the token
        assert f"{type(result).__name__}(" not in repr(result)
