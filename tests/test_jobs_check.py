"""Before a job runs: declared parameters (``nbprod inspect``), refusals, and the reproducibility lint.

None of these start a kernel."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbprod.cli import main
from nbprod.errors import JobError
from nbprod.jobs import check, inspect, run

FILES = Path(__file__).parent / "files"
ROOT = Path(__file__).parent.parent


def _write(path: Path, cells) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_inspect_lists_the_declared_parameters(capsys):
    found = inspect(FILES / "params.ipynb")
    assert [(p.name, p.type, p.default) for p in found.declared] == [("alpha", "int", "1"), ("name", "str", "'x'")]
    assert main(["inspect", str(FILES / "params.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "declares 2 parameter(s)" in out and "alpha" in out and "'x'" in out
    assert not inspect(FILES / "fails.ipynb").has_cell
    assert "no cell tagged 'parameters'" in str(inspect(FILES / "fails.ipynb"))


def test_an_unknown_parameter_is_refused_with_the_declared_ones(nbprod_home, tmp_path):
    with pytest.raises(JobError, match="declares no parameter 'alpah'") as err:
        run(FILES / "params.ipynb", {"alpah": 0.3})
    assert "alpha, name" in err.value.fix
    params = tmp_path / "p.yaml"
    params.write_text("- not a mapping\n")
    with pytest.raises(JobError, match="not a mapping"):
        run(FILES / "params.ipynb", parameters_file=params)
    with pytest.raises(JobError, match="cannot read the parameter file"):
        run(FILES / "params.ipynb", parameters_file=tmp_path / "missing.yaml")
    assert not (nbprod_home / "runs").exists() or not list((nbprod_home / "runs").iterdir()), "nothing ran"


def test_check_finds_what_makes_a_notebook_unreproducible(tmp_path, capsys):
    cell_a = new_code_cell("import numpy as np\nimport random\nimport pandas as pd\n"
                           "df = pd.read_csv('https://example.org/data.csv')\n"
                           "noise = np.random.normal(size=3)\nrandom.shuffle([1, 2])", execution_count=4)
    cell_b = new_code_cell("from sklearn.model_selection import train_test_split\n"
                           "from sklearn.ensemble import RandomForestClassifier\n"
                           "X_train, X_test = train_test_split(df)\n"
                           "model = RandomForestClassifier(n_estimators=10)\n"
                           "out = '/home/alice/models/out.pkl'", execution_count=2)
    path = _write(tmp_path / "messy.ipynb", [new_markdown_cell("# messy"), cell_a, cell_b])
    report = check(path)
    assert report.rules() == {"out-of-order", "unseeded-random", "absolute-path", "untracked-url", "no-parameters-cell"}
    by_message = {f.message: f for f in report.findings}
    assert any("train_test_split" in m for m in by_message) and any("RandomForestClassifier" in m for m in by_message)
    assert any("np.random.normal" in m for m in by_message) and any("random.shuffle" in m for m in by_message)
    absolute = next(f for f in report.findings if f.rule == "absolute-path")
    assert (absolute.cell, absolute.line) == (2, 5)
    assert all(f.fix for f in report.findings)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "cell 2, line 3  [unseeded-random]" in out and "fix: pass random_state=" in out
    assert "<table>" in report._repr_html_()


def test_a_seeded_tracked_notebook_passes_check(tmp_path):
    clean = _write(tmp_path / "clean.ipynb", [
        new_code_cell("seed = 0\nurl = 'https://example.org/data.csv'", metadata={"tags": ["parameters"]}),
        new_code_cell("import numpy as np\nimport pandas as pd\nimport nbprod\nnp.random.seed(seed)\n"
                      "df = pd.read_csv('https://example.org/data.csv')\nnbprod.track_input(df, name='data')\n"
                      "x = np.random.normal(size=3)"),
        new_code_cell("from sklearn.model_selection import train_test_split\n"
                      "a, b = train_test_split(df, random_state=seed)")])
    assert check(clean).ok and main(["check", str(clean)]) == 0
    assert check(ROOT / "notebooks" / "train.ipynb").ok, str(check(ROOT / "notebooks" / "train.ipynb"))


def test_an_experiment_the_notebook_contradicts_and_bad_job_ids_are_refused(nbprod_home, tmp_path):
    from nbprod.jobs import get_run

    own = _write(tmp_path / "own.ipynb", [new_code_cell("import mlflow\nmlflow.set_experiment('credit')")])
    with pytest.raises(JobError, match=r"calls mlflow.set_experiment\('credit'\), but the job was asked to record "
                                       r"in 'other'"):
        run(own, experiment="other")
    with pytest.raises(JobError, match="is not a job id"):
        get_run("not-hex")
    with pytest.raises(JobError, match="'27' is too short to name a job"):  # matched any job whose id starts 27
        get_run("27")
    with pytest.raises(JobError, match="no job with id 'abc123'"):
        get_run("abc123")
