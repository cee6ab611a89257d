"""nbprod sweep: every combination of a grid as a tracked notebook job, in parallel on Dask."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from _batch_helpers import local_cluster
from _registry_helpers import module_home
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


@pytest.fixture(scope="module")
def cluster_home(tmp_path_factory):
    """A 2-worker LocalCluster started inside a module-scoped nbprod home (the workers inherit it)."""
    with module_home(tmp_path_factory, "sweep-cluster") as home, local_cluster() as client:
        yield home, client


def test_sweep_on_a_local_cluster_runs_real_kernels_on_both_workers(cluster_home, tmp_path):
    """The issue's test set-up: a real distributed.LocalCluster on 127.0.0.1 with 2 worker processes; each
    combination a papermill job with its own kernel on a worker, a failing one reported, not raised."""
    import os

    from nbprod.batch.sweep import sweep
    from nbprod.jobs import get_run

    home, client = cluster_home
    nb = _notebook(tmp_path / "train.ipynb")
    with open(nb) as fh:
        source = nbformat.read(fh, as_version=4)
    source.cells.append(new_code_cell("import os\nmlflow.log_metric('kernel_pid', os.getpid())"))
    nbformat.write(source, nb)
    result = sweep(nb, {"alpha": [0.1, 0.5, 9.0], "l1_ratio": [0.2]}, dask=client, metric="score",
                   progress=False)
    assert "2 workers" in result.ran_on and len(result.rows) == 3
    by_alpha = {r["params"]["alpha"]: r for r in result.rows}
    assert by_alpha[9.0]["status"] == "FAILED" and "alpha too large" in (by_alpha[9.0]["error"] or "")
    for alpha in (0.1, 0.5):
        row = by_alpha[alpha]
        assert row["status"] == "FINISHED" and row["metrics"]["score"] == pytest.approx(1 / (1 + alpha) + 0.2)
        run = get_run(row["run_id"])  # tracked in the test's own store: the workers used its NBPROD_HOME
        assert str(run.parameters["alpha"]) == str(alpha)
        assert int(row["metrics"]["kernel_pid"]) != os.getpid()  # a kernel of its own, not this process
    assert result.best()["params"] == {"alpha": 0.1, "l1_ratio": 0.2}
    kernels = {int(by_alpha[a]["metrics"]["kernel_pid"]) for a in (0.1, 0.5)}
    assert len(kernels) == 2 and not kernels & set(client.run(os.getpid).values())  # kernels, not the workers
