from pathlib import Path

import pytest

from nbprod.config import Settings
from nbprod.errors import ConfigError, NbprodError


def test_defaults_follow_home(nbprod_home):
    s = Settings()
    assert s.home == str(nbprod_home.resolve())
    assert s.tracking_uri == f"sqlite:///{nbprod_home.resolve() / 'mlflow.db'}"
    assert s.db_url == f"sqlite:///{nbprod_home.resolve() / 'nbprod.db'}"
    assert s.registry_uri == s.tracking_uri


def test_environment_wins_over_default(nbprod_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("NBPROD_MAX_EXAMPLES", "9")
    s = Settings()
    assert s.tracking_uri == "http://127.0.0.1:5999"
    assert s.max_examples == 9


def test_pyproject_table_and_override_order(nbprod_home, tmp_path, monkeypatch):
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.nbprod]\ntop_k = 7\nrange_tolerance = 0.25\n")
    monkeypatch.chdir(project / "sub")
    s = Settings()
    assert s.top_k == 7 and s.range_tolerance == 0.25
    monkeypatch.setenv("NBPROD_TOP_K", "8")
    assert s.top_k == 8
    s.set(top_k=9)
    assert s.top_k == 9
    s.reset()
    assert s.top_k == 8


def test_relative_home_in_pyproject_is_relative_to_that_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NBPROD_HOME", raising=False)
    project = tmp_path / "proj"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.nbprod]\nhome = "state"\n')
    monkeypatch.chdir(project / "notebooks")
    assert Settings().home == str((project / "state").resolve())


@pytest.mark.parametrize("toml", ["[tool.nbprod]\nbogus = 1\n", "[tool.nbprod\n"])
def test_bad_pyproject_is_a_clear_error(nbprod_home, tmp_path, monkeypatch, toml):
    (tmp_path / "pyproject.toml").write_text(toml)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        Settings().top_k  # noqa: B018 - reading the option is what raises
    assert "Fix:" in str(err.value)


def test_bad_values_are_config_errors(nbprod_home):
    s = Settings()
    with pytest.raises(ConfigError, match="unknown nbprod option"):
        s.set(colour="red")
    with pytest.raises(ConfigError, match="not a int"):
        s.set(top_k="many")


def test_errors_carry_problem_and_fix():
    err = NbprodError("the thing is broken", "mend the thing")
    assert err.problem == "the thing is broken" and err.fix == "mend the thing"
    assert str(err) == "the thing is broken\n  Fix: mend the thing"
    assert err.to_dict() == {"error": "NbprodError", "message": "the thing is broken", "fix": "mend the thing"}


def test_error_hierarchy_matches_builtins():
    from nbprod import errors

    assert issubclass(errors.ModelNotFoundError, LookupError)
    assert issubclass(errors.TrackingServerError, ConnectionError)
    assert issubclass(errors.DataError, ValueError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), NbprodError)


def test_pyproject_is_read_with_tomli_where_there_is_no_tomllib(nbprod_home, tmp_path, monkeypatch):
    import sys
    import types

    import tomllib

    from nbprod import config

    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10: `import tomllib` fails
    monkeypatch.setitem(sys.modules, "tomli", types.SimpleNamespace(load=tomllib.load))
    (tmp_path / "pyproject.toml").write_text("[tool.nbprod]\ntop_k = 7\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().top_k == 7
    monkeypatch.setitem(sys.modules, "tomli", None)  # neither: say so rather than ignore the table
    (tmp_path / "pyproject.toml").write_text("[tool.nbprod]\ntop_k = 8\n")
    config._TABLE_CACHE.clear()  # the file may keep its mtime within a coarse clock tick
    with pytest.raises(ConfigError, match="no TOML parser") as err:
        Settings().top_k  # noqa: B018 - reading the option is what raises
    assert "tomli" in err.value.fix
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    config._TABLE_CACHE.clear()
    assert Settings().top_k == 50


def test_pyproject_declares_tomli_for_python_3_10():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert "tomli>=2; python_version<'3.11'" in text


def test_sqlite_path_names_the_database_file_of_a_sqlite_uri(tmp_path):
    from nbprod._files import sqlite_path

    assert sqlite_path(f"sqlite:///{tmp_path}/mlflow.db") == tmp_path / "mlflow.db"
    assert sqlite_path("sqlite:///rel/m.db") == Path("rel/m.db")
    assert sqlite_path("SQLite:///rel/m.db") == Path("rel/m.db")  # a URI scheme is case-insensitive
    for other in ("sqlite:///:memory:", "sqlite://", "http://127.0.0.1:5000", "postgresql://u@h/db", "/tmp/mlruns"):
        assert sqlite_path(other) is None, other
