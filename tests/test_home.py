"""One home per project, found the way git finds .git; `nbprod info` says which and why (issue 12, point 2 and 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nbprod.config import Settings, find_home


@pytest.fixture
def no_home_env(monkeypatch):
    for var in ("NBPROD_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL",
                "NBPROD_EXPORTED_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


def test_a_notebook_folder_and_the_project_root_share_one_home(tmp_path, monkeypatch, no_home_env):
    project = tmp_path / "proj"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    monkeypatch.chdir(project / "notebooks")
    in_notebooks = Settings().home
    monkeypatch.chdir(project)
    at_root = Settings().home
    assert in_notebooks == at_root == str((project / ".nbprod").resolve())
    assert "project root" in Settings().source("home")


def test_a_git_folder_is_a_project_root_too(tmp_path, monkeypatch, no_home_env):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "nb").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "nb")
    assert Settings().home == str((tmp_path / "repo" / ".nbprod").resolve())


def test_the_nearest_existing_home_wins_over_the_project_root(tmp_path, monkeypatch, no_home_env):
    project = tmp_path / "proj"
    (project / "notebooks" / ".nbprod").mkdir(parents=True)
    (project / "notebooks" / "deep").mkdir()
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert Settings().home == str((project / "notebooks" / ".nbprod").resolve())
    assert "nearest existing .nbprod" in Settings().source("home")


def test_without_a_project_the_working_directory_is_home(tmp_path, no_home_env):
    folder = tmp_path / "loose"
    folder.mkdir()
    home, how = find_home(folder)
    # /tmp may itself sit in a project or under a .nbprod on some machine: only assert when it does not
    if not any((p / ".nbprod").is_dir() or (p / "pyproject.toml").is_file() or (p / ".git").exists()
               for p in folder.resolve().parents):
        assert home == folder.resolve() / ".nbprod" and "working directory" in how


def test_nbprod_home_and_pyproject_still_win(tmp_path, monkeypatch, no_home_env):
    project = tmp_path / "proj"
    (project / "notebooks" / ".nbprod").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.nbprod]\nhome = "state"\n')
    monkeypatch.chdir(project / "notebooks")
    s = Settings()
    assert s.home == str((project / "state").resolve()) and "[tool.nbprod]" in s.source("home")
    monkeypatch.setenv("NBPROD_HOME", str(tmp_path / "elsewhere"))
    assert s.home == str((tmp_path / "elsewhere").resolve()) and s.source("home") == "environment variable NBPROD_HOME"


def test_info_names_home_stores_sources_and_versions_and_hides_passwords(tmp_path, monkeypatch, no_home_env):
    import nbprod
    from nbprod.config import settings

    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBPROD_DB_URL", "postgresql+psycopg://nbprod:s3cret@127.0.0.1:5432/nbprod_x")
    settings.reset()
    shown = nbprod.info()
    text, html = str(shown), shown._repr_html_()
    assert str((tmp_path / ".nbprod").resolve()) in text
    assert "s3cret" not in text + html + json.dumps(shown.to_dict())
    assert "postgresql+psycopg://nbprod:***@127.0.0.1:5432/nbprod_x" in text
    assert "environment variable NBPROD_DB_URL" in text
    assert "project root" in text
    versions = shown.to_dict()["versions"]
    assert versions["nbprod"] == nbprod.__version__ and versions["mlflow"] and versions["python"]
    assert shown.mlflow_ui.startswith("mlflow ui --backend-store-uri sqlite:///")


def test_info_is_a_cli_verb(tmp_path, no_home_env):
    env = {**os.environ, "NBPROD_HOME": str(tmp_path / "h")}
    out = subprocess.run([sys.executable, "-m", "nbprod.cli", "info"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str((tmp_path / "h").resolve()) in out.stdout and "environment variable NBPROD_HOME" in out.stdout


LOAD_EXT = """
import json, os, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "nbprod")
import mlflow
from nbprod.config import settings
first = (mlflow.get_tracking_uri(), settings.tracking_uri)
ip.run_line_magic("config", "Nbprod.home = " + repr(sys.argv[1]))
second = (mlflow.get_tracking_uri(), settings.tracking_uri)
shown = ip.run_line_magic("nbprod", "info")
print(json.dumps({"first": first, "second": second, "info": str(shown), "mlflow_loaded_by_ext": False}))
"""


def test_load_ext_points_mlflows_own_api_at_nbprods_store(tmp_path, no_home_env):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBPROD_EXPORTED_TRACKING_URI")}
    env["NBPROD_HOME"] = str(tmp_path / "one")
    other = tmp_path / "two"
    out = subprocess.run([sys.executable, "-c", LOAD_EXT, str(other)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    mlflow_uri, nbprod_uri = seen["first"]
    assert mlflow_uri == nbprod_uri == f"sqlite:///{(tmp_path / 'one').resolve() / 'mlflow.db'}"
    # a later %config Nbprod.home moves both: nbprod does not mistake its own export for the user's choice
    assert seen["second"][0] == seen["second"][1] == f"sqlite:///{other.resolve() / 'mlflow.db'}"
    assert "set by %load_ext nbprod" in seen["info"]


def test_a_users_own_tracking_uri_is_left_alone(tmp_path, no_home_env):
    env = {k: v for k, v in os.environ.items() if k != "NBPROD_EXPORTED_TRACKING_URI"}
    env.update(NBPROD_HOME=str(tmp_path / "one"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mine.db'}")
    probe = ("from IPython.core.interactiveshell import InteractiveShell\n"
             "ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'nbprod')\n"
             "import os; print(os.environ['MLFLOW_TRACKING_URI'])\n"
             "print(ip.run_line_magic('nbprod', 'info'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"sqlite:///{tmp_path / 'mine.db'}"
    assert "your MLFLOW_TRACKING_URI" in out.stdout
