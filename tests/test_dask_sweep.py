"""nbprod sweep: every combination of a grid as a tracked notebook job, in parallel on Dask."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow


def _notebook(path: Path) -> Path:
    nb = new_notebook(cells=[
        new_code_cell("alpha = 1.0\nl1_ratio = 0.5", metadata={"tags": ["parameters"]}),
        new_code_cell("import mlflow\nif alpha > 5:\n    raise ValueError('alpha too large')\n"
                      "mlflow.log_metric('score', 1.0 / (1.0 + alpha) + l1_ratio)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_sweep_runs_every_combination_and_reports_failures_without_stopping(nbprod_home, tmp_path, capsys):
    from nbprod.batch.sweep import sweep
    from nbprod.cli import main
    from nbprod.jobs import get_run

    nb = _notebook(tmp_path / "train.ipynb")
    result = sweep(nb, {"alpha": [0.5, 9.0], "l1_ratio": [0.2]}, progress=False)
    assert len(result.rows) == 2 and result.metric == "score" and result.ran_on.startswith("local")
    good = next(r for r in result.rows if r["params"]["alpha"] == 0.5)
    bad = next(r for r in result.rows if r["params"]["alpha"] == 9.0)
    assert good["status"] == "FINISHED" and good["metrics"]["score"] == pytest.approx(1 / 1.5 + 0.2)
    assert bad["status"] == "FAILED" and "alpha too large" in (bad["error"] or "")
    assert get_run(good["run_id"]).parameters["alpha"] in (0.5, "0.5")
    assert not result.ok and result.best()["params"] == {"alpha": 0.5, "l1_ratio": 0.2}
    assert result.chart() is not None and "<table" in result._repr_html_()

    assert main(["sweep", str(nb), "--grid", "alpha=0.1", "--grid", "l1_ratio=0.2,0.3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 jobs on local" in out and "0 failed" in out and "best score" in out
