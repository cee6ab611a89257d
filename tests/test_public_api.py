"""Every public verb stays callable, whatever nbprod's own imports bind to the package's names."""

import subprocess
import sys


def test_verbs_stay_callable_after_their_subpackages_are_imported():
    """``nbprod.drift`` is a verb and a subpackage: importing the subpackage (monitor() does) binds
    the package to that name. Checked in a fresh interpreter, where nothing is imported yet."""
    code = """
import nbprod
verbs = [n for n in nbprod.__all__ if n[0].islower() and callable(getattr(nbprod, n))]
import nbprod.drift.report, nbprod.monitoring.monitor, nbprod.registry, nbprod.deployments.api, nbprod.data.validate
not_callable = [n for n in verbs if not callable(getattr(nbprod, n))]
assert not not_callable, not_callable
import pandas as pd
frame = pd.DataFrame({"x": [float(i) for i in range(100)]})
assert nbprod.drift(frame, frame).dataset_drift is False
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
