"""A notebook written the way MLflow's examples are logs into the job's run, in nbprod's store."""

from pathlib import Path

import pytest

from nbprod.cli import main
from nbprod.jobs import JobWarning, get_run, run

FILES = Path(__file__).parent / "files"
pytestmark = pytest.mark.slow


def test_mlflow_calls_register_and_track_input_land_in_the_job(nbprod_home, tmp_path, monkeypatch, capsys):
    """The notebook calls mlflow.start_run / log_param / set_tag / log_metric / sklearn.log_model and a
    nested run, nbprod.register and nbprod.track_input; its kernelspec (conda-env-py37) is not installed."""
    import shutil

    from nbprod.registry import get_version
    from nbprod.registry.store import client

    folder = tmp_path / "project"
    folder.mkdir()
    notebook = folder / "train.ipynb"
    shutil.copy(FILES / "mlflow_example.ipynb", notebook)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(JobWarning, match="'conda-env-py37' is not installed here") as caught:
        result = run(notebook, {"C": 0.5}, progress=False)  # the notebook picks experiment "credit"
    assert len([w for w in caught if issubclass(w.category, JobWarning)]) == 1, "said once"
    assert result.kernel == "python3" and "conda-env-py37" in result.notes[0]

    c = client()
    job = c.get_run(result.run_id)
    assert job.data.params["C"] == "0.5" and job.data.tags["team"] == "risk"
    assert job.data.metrics["accuracy"] == result.metrics["accuracy"] > 0.5
    assert c.get_experiment(job.info.experiment_id).name == "credit"
    logged = c.search_logged_models([job.info.experiment_id], f"source_run_id = '{result.run_id}'")
    assert [m.name for m in logged] == ["model"], "log_model logged into the job's run"
    assert logged[0].artifact_location.startswith((nbprod_home.resolve() / "artifacts").as_uri())
    children = c.search_runs([job.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert [r.data.metrics for r in children] == [{"fold_accuracy": 1.0}]
    # nothing stray beside the notebook or in the caller's folder
    for place in (folder, tmp_path):
        assert not (place / "mlruns").exists() and not (place / "mlflow.db").exists(), place
    # the registered version and the job point at each other
    assert result.models == ["job-model/1"]
    version = get_version("job-model/1")
    assert version.to_dict()["job"] == result.run_id and "job" in dict(version._facts())
    assert get_run(result.run_id).models == ["job-model/1"]
    assert c.get_run(version.run_id).data.tags["mlflow.parentRunId"] == result.run_id
    # the tracked frame's hash is on the run
    assert len(result.inputs["train"]["sha256"]) == 64 and result.inputs["train"]["rows"] == 8
    # the executed copy records the kernel that ran
    import nbformat

    assert nbformat.read(result.output, as_version=4).metadata["kernelspec"]["name"] == "python3"
    assert main(["runs", "--json"]) == 0 and '"job-model/1"' in capsys.readouterr().out
