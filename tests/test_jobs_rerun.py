"""Re-run and compare: notebooks/train.ipynb as a job, re-run from its recorded copy, diffed."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbprod.cli import main
from nbprod.jobs import InputChanged, JobFailed, diff, rerun, run

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


def test_train_notebook_reruns_to_the_same_metrics_and_diffs(nbprod_home, tmp_path, capsys):
    """The quickstart's training part as a job: run, re-run (same metrics, exactly), re-run with
    another C, diffed. The re-run uses the recorded notebook, not the file as it is now."""
    notebook = tmp_path / "train.ipynb"
    shutil.copy(ROOT / "notebooks" / "train.ipynb", notebook)
    assert main(["run", str(notebook), "-p", "n_rows", "1500", "-p", "C", "0.5", "--no-progress"]) == 0
    capsys.readouterr()
    from nbprod.jobs import runs

    first = runs()[0]
    assert first.status == "FINISHED" and set(first.metrics) == {"roc_auc", "accuracy"}
    assert first.models == ["credit-risk/1"] and len(first.inputs["credit"]["sha256"]) == 64
    notebook.write_text("{broken on purpose}")  # the re-run must not read the file

    again = rerun(first.run_id[:7], progress=False)
    assert again.result.metrics == first.metrics, "seeded: the same metrics, exactly"
    assert again.result.parameters == first.parameters and again.result.rerun_of == first.run_id
    assert again.diff.same_metrics and not again.diff.parameters and not again.diff.inputs
    assert not (again.diff.added or again.diff.removed or again.diff.changed)
    assert again.result.models == ["credit-risk/2"]

    assert main(["rerun", first.run_id[:8], "-p", "C", "0.01", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "compared with the original" in out and "parameter" in out and "0.5" in out and "0.01" in out
    third = runs()[0]
    changed = diff(first.run_id, third.run_id[:8])
    assert changed.parameters == [("C", 0.5, 0.01)]
    auc = next(m for m in changed.metrics if m[0] == "roc_auc")
    assert auc[3] == pytest.approx(auc[2] - auc[1]) and auc[4] == pytest.approx(auc[3] / abs(auc[1]))
    assert "<table>" in changed._repr_html_() and "roc_auc" in str(changed)
    assert main(["diff", first.run_id[:8], third.run_id[:8]]) == 0
    assert "C" in capsys.readouterr().out


def test_a_changed_input_is_refused_naming_both_hashes(nbprod_home, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n2\n")
    nb = new_notebook(cells=[new_code_cell("import nbprod\nimport pandas as pd\n"
                                           "nbprod.track_input('data.csv', name='data')\n"
                                           "total = pd.read_csv('data.csv').a.sum()\nprint(total)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "sum.ipynb")
    first = run(tmp_path / "sum.ipynb", progress=False)
    old = first.inputs["data"]["sha256"]
    data.write_text("a\n1\n5\n")
    with pytest.raises(InputChanged, match=f"input 'data'.*it was sha256 {old}, it is now [0-9a-f]{{64}}") as err:
        rerun(first.run_id, progress=False)
    assert "--allow-changed-inputs" in err.value.fix
    assert main(["rerun", first.run_id[:8], "--no-progress"]) == 2
    allowed = rerun(first.run_id, allow_changed_inputs=True, progress=False)
    assert allowed.result.status == "FINISHED" and allowed.diff.inputs[0][0] == "data"
    assert allowed.result.inputs["data"]["sha256"] != old


def test_a_changed_frame_stops_the_rerun_in_the_kernel(nbprod_home, tmp_path):
    """A frame's hash is only known when the notebook computes it: track_input raises there."""
    nb = new_notebook(cells=[
        new_code_cell("rows = 3", metadata={"tags": ["parameters"]}),
        new_code_cell("import nbprod\nimport pandas as pd\ndf = pd.DataFrame({'a': range(rows)})\n"
                      "nbprod.track_input(df, name='frame')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "frame.ipynb")
    first = run(tmp_path / "frame.ipynb", progress=False)
    with pytest.raises(JobFailed, match="InputChanged: input 'frame' changed since the recorded job"):
        rerun(first.run_id, {"rows": 4}, progress=False)
