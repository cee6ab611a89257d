"""The registry verbs through both front ends: a real IPython shell and the ``nbprod`` CLI."""

from __future__ import annotations

import json

import pytest
from _registry_helpers import pipeline
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbprod.errors import ModelNotFoundError, RegistrationError

pytestmark = pytest.mark.slow  # registers and evaluates real models through the magics and the CLI


@pytest.fixture
def ip(nbprod_home, tmp_path):
    from nbprod.datasets import credit

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    X, y = credit(400, seed=5)
    notebook = tmp_path / "train.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "model.fit(X, y)", "metadata": {},
                                               "outputs": [{"output_type": "stream", "name": "stdout", "text": "big"}],
                                               "execution_count": 3}],
                                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    shell.user_ns.update(X_train=X, y_train=y, model=pipeline(X, y), __session__=str(notebook))
    yield shell
    for name in ("X_train", "y_train", "model", "__session__"):
        shell.user_ns.pop(name, None)
    shell.run_line_magic("unload_ext", "nbprod")


def test_magics_register_models_alias_evaluate(ip, tmp_path):
    from nbprod.registry.versions import local_model_dir

    v = ip.run_line_magic("nbprod", "register model --name credit-risk --data X_train y_train --metrics auc=0.91 "
                                    "--params C=1 --alias challenger --description 'from a notebook'")
    assert (v.version, v.aliases, v.metrics) == ("1", ["challenger"], {"auc": 0.91})
    assert v.description == "from a notebook" and "credit-risk" in v._repr_html_()
    # The notebook snapshot travels with the model, outputs stripped.
    path = local_model_dir(v)
    lineage = json.loads((path / "nbprod/lineage.json").read_text())
    assert lineage["notebook_snapshot"] == "nbprod/notebook.ipynb" and lineage["notebook_path"].endswith("train.ipynb")
    snapshot = json.loads((path / "nbprod/notebook.ipynb").read_text())
    assert snapshot["cells"][0]["source"] == "model.fit(X, y)" and snapshot["cells"][0]["outputs"] == []
    assert v.to_dict()["notebook"].endswith("train.ipynb")

    change = ip.run_line_magic("nbprod", "alias credit-risk@challenger champion")
    assert change.action == "set" and change.version == "1"
    table = ip.run_line_magic("nbprod", "models")
    assert "@champion" in str(table) and "auc=0.91" in str(table)
    ip.run_line_magic("nbprod", "register model --name credit-risk --data X_train y_train --alias challenger")
    result = ip.run_line_magic("nbprod", "evaluate credit-risk@challenger --data X_train y_train "
                                         "--threshold roc_auc:min_absolute_change=0 accuracy:threshold=0.5")
    assert result.ok and result.champion_uri == "models:/credit-risk/1"
    deleted = ip.run_line_magic("nbprod", "alias --delete credit-risk challenger")
    assert deleted.action == "delete" and deleted.previous == "2"


def test_magic_errors_are_clear(ip):
    with pytest.raises(RegistrationError, match="no notebook variable and no file called 'nope'"):
        ip.run_line_magic("nbprod", "register nope --name x --data X_train y_train")
    with pytest.raises(UsageError, match="cannot read metric"):
        ip.run_line_magic("nbprod", "register model --name x --data X_train y_train --metrics auc")
    with pytest.raises(UsageError, match="needs labels"):
        ip.run_line_magic("nbprod", "evaluate x@champion --data X_train")
    with pytest.raises(ModelNotFoundError):
        ip.run_line_magic("nbprod", "alias x/1 champion")


def test_cli_register_a_model_file_then_evaluate(nbprod_home, tmp_path, capsys):
    import skops.io as sio

    from nbprod.cli import main
    from nbprod.datasets import credit

    X, y = credit(400, seed=6)
    frame = X.assign(default=y)
    frame.to_parquet(tmp_path / "train.parquet")
    sio.dump(pipeline(X, y), tmp_path / "model.skops")
    assert main(["register", str(tmp_path / "model.skops"), "--name", "cli-model", "--data",
                 str(tmp_path / "train.parquet"), "default", "--alias", "champion"]) == 0
    assert "cli-model v1" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "@champion" in capsys.readouterr().out
    assert main(["evaluate", "cli-model/1", "--data", str(tmp_path / "train.parquet"), "default", "--against", "none",
                 "--threshold", "accuracy:threshold=0.999"]) == 1  # a failed check exits 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["alias", "cli-model/1", "bad alias"]) == 2
    assert "illegal alias" in capsys.readouterr().err
    # a label column with a typo: said to be neither a column nor a file (it was "no file called 'defualt'")
    assert main(["evaluate", "cli-model/1", "--data", str(tmp_path / "train.parquet"), "defualt"]) == 2
    err = capsys.readouterr().err
    assert f"'defualt' is not a column of {tmp_path / 'train.parquet'} or a file" in err and "default" in err
