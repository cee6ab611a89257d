"""Notebook jobs on a real kernel through papermill: each job is one MLflow run in nbprod's store."""

import json
from pathlib import Path

import nbformat
import pytest

from nbprod.cli import main
from nbprod.errors import JobError
from nbprod.jobs import JobFailed, get_run, run, runs

FILES = Path(__file__).parent / "files"
pytestmark = pytest.mark.slow


def _artifacts(run_id: str) -> set[str]:
    from nbprod.registry.store import client

    return {f.path for f in client().list_artifacts(run_id, "job")}


def test_a_job_is_one_mlflow_run_with_everything_recorded(nbprod_home):
    result = run(FILES / "params.ipynb", {"alpha": 21, "name": "answer"}, progress=False)
    assert result.output.parent == nbprod_home.resolve() / "runs"
    assert result.output.name.startswith("params-") and result.output.exists()
    assert result.tagged_output("summary") == "answer: 42"
    executed = nbformat.read(result.output, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "alpha = 21" in injected[0].source
    assert executed.metadata["nbprod"]["status"] == "FINISHED"
    assert result.to_dict()["parameters"] == {"alpha": 21, "name": "answer"}

    from nbprod.registry.store import client

    recorded = client().get_run(result.run_id)
    assert recorded.info.status == "FINISHED" and result.status == "FINISHED" and result.ok
    assert recorded.data.params == {"alpha": "21", "name": "answer"}
    tags = recorded.data.tags
    assert tags["nbprod.kind"] == "job" and tags["nbprod.kernel"] == "python3"
    assert tags["nbprod.notebook"] == str((FILES / "params.ipynb").resolve())
    assert tags["mlflow.source.git.commit"] == tags["nbprod.git_commit"] and len(tags["nbprod.git_commit"]) == 40
    assert tags["nbprod.git_dirty"] in ("true", "false")
    assert _artifacts(result.run_id) == {"job/source.ipynb", "job/executed.ipynb", "job/executed.html",
                                         "job/cells.json", "job/environment.json"}
    env = result.environment
    assert env["packages"]["nbprod"] and env["packages"]["papermill"] and len(env["digest"]) == 64
    assert tags["nbprod.env_digest"] == env["digest"] and tags["nbprod.python"] == env["python"]
    timed = [c for c in result.cells if not c["injected"]]
    assert [c["source"] for c in timed] == ["alpha = 1", "result = alpha * 2"]
    assert all(c["seconds"] is not None and c["seconds"] >= 0 and c["status"] == "completed" for c in timed)
    # per-cell wall times are MLflow metrics too (step: the user's cell number, 0 the injected cell) ...
    history = client().get_metric_history(result.run_id, "nbprod.cell_seconds")
    assert sorted(m.step for m in history) == [0, 1, 2] and "nbprod.cell_seconds" not in result.metrics
    # ... and a table of the job read back
    shown = get_run(result.run_id)
    assert [(c["cell"], c["source"]) for c in shown.cells if not c["injected"]] == [(1, "alpha = 1"),
                                                                                    (2, "result = alpha * 2")]
    assert "cell times (wall)" in str(shown) and "result = alpha * 2" in str(shown)
    assert ">wall time</th>" in shown._repr_html_()
    assert shown.to_dict()["cells"][0]["seconds"] >= 0

    # read back: by id, by a unique prefix, in the table and as JSON lines
    assert get_run(result.run_id[:6]).parameters == {"alpha": 21, "name": "answer"}
    table = runs()
    assert [j.run_id for j in table] == [result.run_id]
    assert result.run_id[:8] in str(table) and "alpha=21" in str(table)
    assert json.loads(str(runs(as_json=True)))["run_id"] == result.run_id


def test_a_failing_cell_is_a_failed_job_naming_the_users_cell(nbprod_home, capsys):
    with pytest.raises(JobFailed, match=r"cell 2 \(`raise ValueError\('broken on purpose'\)`\) raised ValueError: "
                                        r"broken on purpose") as err:
        run(FILES / "fails.ipynb", progress=False)
    assert isinstance(err.value, JobError) and "executed copy" in err.value.fix
    result = err.value.result
    assert result.status == "FAILED" and not result.ok and result.error["cell"] == 2
    executed = nbformat.read(result.output, as_version=4)
    assert executed.metadata["nbprod"]["error"]["ename"] == "ValueError"
    assert "job/executed.ipynb" in _artifacts(result.run_id)
    from nbprod.registry.store import client

    assert client().get_run(result.run_id).info.status == "FAILED"
    # the CLI: 1 for a failed notebook, 2 for a usage error, 0 for a finished one
    assert main(["run", str(FILES / "fails.ipynb"), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "FAILED" in out.out and "cell 2" in out.err
    assert main(["run", str(FILES / "params.ipynb"), "-p", "nope", "1", "--no-progress"]) == 2
    assert "declares no parameter 'nope'" in capsys.readouterr().err


def test_missing_notebook_is_a_clear_error(nbprod_home, tmp_path):
    with pytest.raises(JobError, match="no notebook at"):
        run(tmp_path / "nope.ipynb")
    (tmp_path / "data.csv").write_text("a\n1\n")
    with pytest.raises(JobError, match="not a notebook"):
        run(tmp_path / "data.csv")
def test_cli_run_parses_parameter_values_as_yaml(nbprod_home, tmp_path, capsys):
    out = tmp_path / "out.ipynb"
    assert main(["run", str(FILES / "params.ipynb"), "-p", "alpha", "0.5", "-p", "name", "half",
                 "-o", str(out), "--no-progress"]) == 0
    assert "executed copy" in capsys.readouterr().out
    executed = nbformat.read(out, as_version=4)
    assert any("half: 1.0" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert main(["run", str(FILES / "fails.ipynb"), "--no-progress"]) == 1


def test_the_job_uses_the_callers_nbprod_home(nbprod_home, tmp_path, monkeypatch):
    """The kernel runs in the notebook's folder; its nbprod home must still be the caller's, even
    when the caller set it in Python (%config Nbprod.home) rather than in the environment."""
    import nbformat

    from nbprod.config import settings

    monkeypatch.delenv("NBPROD_HOME")
    home = tmp_path / "callers-home"
    settings.set(home=str(home))
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("from nbprod.config import settings\nprint(settings.home)")])
    nb.cells[0].metadata["tags"] = ["summary"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "home.ipynb"
    nbformat.write(nb, path)
    result = run(path, progress=False)
    assert result.tagged_output("summary") == str(home.resolve())


def test_a_notebook_without_a_kernelspec_runs_on_the_default_kernel(nbprod_home, tmp_path):
    """nbformat.v4.new_notebook() writes no kernelspec; papermill alone refuses such a notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    result = run(path, progress=False)
    assert result.kernel == "python3"
    executed = nbformat.read(result.output, as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "42\n"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(JobError, match="cannot read .* as a notebook"):
        run(path, progress=False)


def test_a_demo_that_fails_after_deploying_stops_the_server_it_started(nbprod_home, tmp_path):
    """The quickstart's last cells undeploy; a cell failing before them must not leave a detached
    server running. A deployment that ran before the demo is left alone."""
    from conftest import kill_recorded_servers

    from nbprod.deployments import process, store

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "import nbprod\nfrom nbprod.datasets import credit\nfrom sklearn.linear_model import LogisticRegression\n"
        "X, y = credit(300)\nX = X[['age', 'income']].fillna(0)\n"
        "nbprod.register(LogisticRegression().fit(X, y), 'demo-model', X, y)\n"
        "nbprod.deploy('demo-model/1', name='demo', server={'auth': False})"),
        nbformat.v4.new_code_cell("raise ValueError('broken after deploying')")]
    path = tmp_path / "failing-demo.ipynb"
    nbformat.write(nb, path)
    try:
        from sklearn.linear_model import LogisticRegression

        import nbprod
        from nbprod.datasets import credit

        X, y = credit(300)
        X = X[["age", "income"]].fillna(0)
        nbprod.register(LogisticRegression().fit(X, y), "kept-model", X, y)
        kept = nbprod.deploy("kept-model/1", name="kept", server={"auth": False})
        assert main(["demo", "--notebook", str(path)]) != 0
        spec, cols, meta = store.read("demo")
        assert cols["status"] == "stopped" and (cols["pid"] is None or not process.alive(cols["pid"]))
        assert store.read("kept")[1]["status"] != "stopped" and process.alive(kept.pid)
    finally:
        kill_recorded_servers()


def test_a_job_prints_no_kernel_transport_warning(nbprod_home, tmp_path):
    """`make demo` showed the kernel's "running over TCP without encryption" warning (issue 12, point 4)."""
    import os
    import subprocess
    import sys

    notebook = tmp_path / "nb" / "quiet.ipynb"
    notebook.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)
    out = subprocess.run([sys.executable, "-m", "nbprod.cli", "run", str(notebook), "--no-progress"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "without encryption" not in out.stderr, out.stderr
    assert sorted(p.name for p in notebook.parent.iterdir()) == ["quiet.ipynb"]  # no socket files left beside it


def test_runs_of_a_notebook_are_its_own_not_every_name_ending_like_it(nbprod_home, tmp_path):
    """`runs(notebook="train.ipynb")` matched the tag with LIKE '%train.ipynb': retrain.ipynb's jobs too."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    for name in ("train.ipynb", "retrain.ipynb", "it's_1.ipynb"):
        nbformat.write(nb, tmp_path / name)
        run(tmp_path / name, progress=False)
    assert [j.notebook.name for j in runs(notebook="train.ipynb")] == ["train.ipynb"]
    assert [j.notebook.name for j in runs(notebook=str(tmp_path / "retrain.ipynb"))] == ["retrain.ipynb"]
    assert [j.notebook.name for j in runs(notebook="it's_1.ipynb")] == ["it's_1.ipynb"]  # a quote, LIKE's _
    assert runs(notebook="its_1.ipynb").jobs == [] and len(runs().jobs) == 3


def test_usage_errors_are_refused_before_a_job_is_recorded(nbprod_home, tmp_path):
    """An --output that would overwrite the notebook (papermill wrote its error cells into it), a folder, a
    missing folder, and a parameter name the injected cell cannot assign: each an error, no job recorded."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    (tmp_path / "a-folder.ipynb").mkdir()
    cases = [({"output": path}, "would overwrite the notebook itself"),
             ({"output": tmp_path / "." / "mine.ipynb"}, "would overwrite the notebook itself"),
             ({"output": tmp_path / "a-folder.ipynb"}, "is a folder"),
             ({"output": tmp_path / "nope" / "out.ipynb"}, "does not exist"),
             ({"parameters": {"my-param": 1}}, r"'my-param' cannot be Python variables"),
             ({"parameters": {"class": 1}}, r"'class' cannot be Python variables")]
    for kwargs, message in cases:
        with pytest.raises(JobError, match=message):
            run(path, progress=False, **kwargs)
    assert path.read_bytes() == before and runs().jobs == []


def test_a_notebook_without_kernel_metadata_takes_parameters(nbprod_home, tmp_path, capsys):
    """jupytext and scripts write notebooks with empty metadata: papermill alone refused their parameters
    ("No kernel name found") and their run ("No language found")."""
    from nbprod.jobs import inspect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("k = 1"), nbformat.v4.new_code_cell("print(k * 7)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["answer"]
    nb.metadata = {}
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    assert [p.name for p in inspect(path).declared] == ["k"]
    result = run(path, {"k": 6}, progress=False)
    assert result.tagged_output("answer") == "42"
