"""The job's kernel starts before its MLflow run exists (it boots while MLflow is imported and the
run created) and learns its run before the first cell; a job refused meanwhile leaves no kernel."""

import json
import os
import sys
from pathlib import Path

import pytest
from nbformat import write
from nbformat.v4 import new_code_cell, new_notebook

from nbprod.errors import JobError
from nbprod.jobs import run

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")]

_PROBE = """import json, os
launched = dict(v.split("=", 1) for v in open("/proc/self/environ").read().split("\\0") if "=" in v)
keys = ["MLFLOW_RUN_ID", "NBPROD_JOB_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "NBPROD_HOME"]
print(json.dumps({"launched": {k: launched.get(k) for k in keys}, "now": {k: os.environ.get(k) for k in keys},
                  "count": get_ipython().execution_count}))"""


def _notebook(path: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write(nb, path)
    return path


def _children() -> set[int]:
    """This process's child processes (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_the_kernel_starts_before_the_run_and_learns_it_before_the_first_cell(nbprod_home, tmp_path):
    result = run(_notebook(tmp_path / "probe.ipynb", _PROBE), progress=False)
    seen = json.loads(_first_output(result))
    # started before the run existed: its launch environment has the store, not the run ...
    assert seen["launched"]["MLFLOW_RUN_ID"] is None and seen["launched"]["NBPROD_JOB_RUN_ID"] is None
    assert seen["launched"]["NBPROD_HOME"] == str(nbprod_home) and seen["launched"]["MLFLOW_TRACKING_URI"]
    # ... and the run was set in it before the first cell, without an execution of its own
    assert seen["now"]["MLFLOW_RUN_ID"] == seen["now"]["NBPROD_JOB_RUN_ID"] == result.run_id
    assert seen["now"]["MLFLOW_EXPERIMENT_ID"] == result.experiment
    import nbformat

    assert nbformat.read(result.output, as_version=4).cells[0].execution_count == 1


def _first_output(result) -> str:
    import nbformat

    return nbformat.read(result.output, as_version=4).cells[0].outputs[0]["text"]


def test_a_job_refused_after_its_kernel_started_leaves_no_kernel(nbprod_home, tmp_path):
    before = _children()
    with pytest.raises(JobError, match="cannot create the MLflow experiment") as err:
        run(_notebook(tmp_path / "x.ipynb", "x = 1"), experiment="x" * 600, progress=False)
    assert "another --experiment name" in err.value.fix
    assert _children() - before == set(), "the kernel started early was shut down"


_ONE_JOB = """
import sys
from nbprod.jobs import run
result = run(sys.argv[1], progress=False)
print("nbconvert here:", "nbconvert" in sys.modules)
print("html:", result.html)
"""


def test_a_one_job_process_gets_its_html_from_a_helper_process(nbprod_home, tmp_path):
    """The first job of a process renders its HTML in a helper process that loaded nbconvert while
    the run was being created: the job's own process never imports it."""
    import subprocess

    nb = _notebook(tmp_path / "one.ipynb", "print('rendered ' + 'here')")
    out = subprocess.run([sys.executable, "-c", _ONE_JOB, str(nb)], capture_output=True, text=True, timeout=600,
                         env={**os.environ}, check=True).stdout
    assert "nbconvert here: False" in out
    html = Path(out.split("html: ", 1)[1].strip().removeprefix("file://"))
    assert html.name == "executed.html" and "rendered here" in html.read_text(encoding="utf-8")


_AT_EXIT = """import atexit, os
from mlflow import MlflowClient
client, run_id = MlflowClient(), os.environ["MLFLOW_RUN_ID"]
atexit.register(lambda: client.set_tag(run_id, "written_at_exit", str(os.getpid())))"""


def test_what_the_kernel_writes_as_it_exits_is_in_the_run_and_no_kernel_is_left(nbprod_home, tmp_path):
    """The job asks its kernel to shut down after the last cell but waits for the exit only once it
    has written the executed copy, just before reading its run back: what the kernel flushes at
    exit (an atexit handler here, MLflow's async logging in real notebooks) is still in the run
    when the job reads it back, and the kernel is gone."""
    from nbprod.registry.store import client

    before = _children()
    result = run(_notebook(tmp_path / "bye.ipynb", _AT_EXIT, "x = 1"), progress=False)
    assert result.status == "FINISHED"
    pid = client().get_run(result.run_id).data.tags.get("written_at_exit")
    assert pid and not Path(f"/proc/{pid}").exists()
    assert _children() - before == set()


def test_a_job_refused_for_its_parameters_leaves_no_kernel_and_no_helper(nbprod_home, tmp_path):
    """The kernel and the HTML helper start before the parameters are checked (papermill is
    imported meanwhile); a refusal stops both."""
    nb = new_notebook(cells=[new_code_cell("alpha = 1", metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write(nb, tmp_path / "p.ipynb")
    before = _children()
    with pytest.raises(JobError, match="declares no parameter 'beta'"):
        run(tmp_path / "p.ipynb", {"beta": 2}, progress=False)
    assert _children() - before == set()
    assert not list(nbprod_home.glob("runs/p-*.ipynb")), "no executed copy is started for a refused job"


_ONE_JOB_STORE = """
import json, sys
from nbprod.jobs import JobFailed, run
try:
    result = run(sys.argv[1], {"alpha": 0.5}, progress=False, experiment=sys.argv[2] or None)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc), "mlflow": "mlflow" in sys.modules}))
    raise SystemExit(0)
print(json.dumps({"mlflow": "mlflow" in sys.modules, "run_id": result.run_id, "status": result.status,
                  "metrics": result.metrics, "html": result.html, "parameters": result.parameters}))
"""

_OWN_LOGGING = """import mlflow
with mlflow.start_run():
    mlflow.log_metric("auc", 0.75)
    mlflow.log_param("own", "yes")
print(alpha)"""


def _one_job(nb: Path, experiment: str = "") -> dict:
    import subprocess

    out = subprocess.run([sys.executable, "-c", _ONE_JOB_STORE, str(nb), experiment], capture_output=True, text=True,
                         timeout=600, env={**os.environ}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_one_job_process_never_imports_mlflow_and_its_run_is_recorded_all_the_same(nbprod_home, tmp_path):
    """A process's first job writes its MLflow run through a helper process that imported MLflow
    while papermill was imported and the kernel booted: the job's own process never imports it,
    and the run holds what an in-process job records (parameters, the notebook's own logging into
    the job's run, cell times, artefacts, the closed status)."""
    from nbprod.jobs import get_run
    from nbprod.registry.store import client

    nb = new_notebook(cells=[new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell(_OWN_LOGGING)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write(nb, tmp_path / "own.ipynb")
    seen = _one_job(tmp_path / "own.ipynb")
    assert seen["mlflow"] is False, "the job's process imported MLflow"
    assert seen["status"] == "FINISHED" and seen["metrics"] == {"auc": 0.75} and seen["parameters"] == {"alpha": 0.5}
    run_ = client().get_run(seen["run_id"])
    assert run_.info.status == "FINISHED" and run_.data.params == {"alpha": "0.5", "own": "yes"}
    assert run_.data.tags["nbprod.status"] == "FINISHED" and run_.data.tags["nbprod.kind"] == "job"
    names = {a.path for a in client().list_artifacts(seen["run_id"], "job")}
    assert names == {f"job/{n}" for n in ("source.ipynb", "executed.ipynb", "executed.html", "cells.json",
                                          "environment.json")}
    assert seen["html"].endswith("/job/executed.html")
    job = get_run(seen["run_id"])
    assert [c["cell"] for c in job.cells] == [1, 0, 2] and job.status == "FINISHED"
    assert len(client().get_metric_history(seen["run_id"], "nbprod.cell_seconds")) == 3


def test_a_store_refusal_in_the_helper_is_raised_as_in_process(nbprod_home, tmp_path):
    """When the helper's store refuses (an experiment name MLflow will not create), the job's own
    process redoes the step and raises what it always raised; no run is left behind."""
    from nbprod.registry.store import client, experiment_id

    seen = _one_job(_notebook(tmp_path / "x.ipynb", "x = 1"), "x" * 600)
    assert seen["error"] == "JobError" and "cannot create the MLflow experiment" in seen["message"]
    c = client()
    assert not c.search_runs([experiment_id(c)])


def test_the_early_kernel_is_connected_while_the_run_is_created_and_papermill_takes_that_client(
        nbprod_home, tmp_path, monkeypatch):
    """nbclient's own connection waits for the kernel's answer and then 0.2 s of IOPub silence
    before the first cell; the job does that for its early kernel while the run is being created,
    and papermill's client runs the cells on that connection instead of opening its own."""
    import nbclient.client

    from nbprod.jobs.kernel import EarlyKernel

    connected, own = [], []
    real_connect, real_start = EarlyKernel.connect, nbclient.client.NotebookClient.async_start_new_kernel_client

    def connect(self):
        real_connect(self)
        connected.append(self.kc)

    async def start_new_kernel_client(self):
        own.append(self)
        return await real_start(self)

    monkeypatch.setattr(EarlyKernel, "connect", connect)
    monkeypatch.setattr(nbclient.client.NotebookClient, "async_start_new_kernel_client", start_new_kernel_client)
    result = run(_notebook(tmp_path / "c.ipynb", "print(6 * 7)"), progress=False)
    assert result.status == "FINISHED" and _first_output(result) == "42\n"
    assert len(connected) == 1 and connected[0] is not None
    assert own == [], "papermill opened a connection of its own"
