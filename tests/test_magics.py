"""The %nbprod front end itself, on a real IPython shell."""

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def ip(nbprod_home):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    yield shell
    shell.run_line_magic("unload_ext", "nbprod")


def test_bare_magic_and_question_mark_show_generated_help(ip, capsys):
    ip.run_line_magic("nbprod", "")
    out = capsys.readouterr().out
    assert "usage: %nbprod" in out and "validate" in out and "run" in out
    info = ip.object_inspect("%nbprod")
    assert "usage: %nbprod" in info["docstring"]


def test_command_help_comes_from_the_argument_definitions(ip, capsys):
    ip.run_line_magic("nbprod", "run --help")
    out = capsys.readouterr().out
    assert "usage: %nbprod run" in out and "--parameter NAME VALUE" in out


def test_unknown_command_is_a_usage_error_with_a_hint(ip):
    with pytest.raises(UsageError, match="unknown command 'deplyo'.*use one of"):
        ip.run_line_magic("nbprod", "deplyo x")


def test_bad_arguments_are_usage_errors(ip):
    with pytest.raises(UsageError, match="unrecognized arguments: --frob"):
        ip.run_line_magic("nbprod", "run x.ipynb --frob")
    with pytest.raises(UsageError, match="cannot parse"):
        ip.run_line_magic("nbprod", 'run "unclosed')


def test_usage_error_in_a_cell_shows_no_traceback(ip, capsys):
    result = ip.run_cell("%nbprod deplyo")
    assert isinstance(result.error_in_exec, UsageError)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err


def test_config_sets_options(ip):
    from nbprod.config import settings

    ip.run_line_magic("config", "Nbprod.max_examples = 3")
    assert settings.max_examples == 3
    ip.run_line_magic("config", "Nbprod.max_examples = 5")
    assert settings.max_examples == 5


def test_config_lists_options_with_help(ip, capsys):
    ip.run_line_magic("config", "Nbprod")
    out = capsys.readouterr().out
    assert "Nbprod.range_tolerance" in out and "Slack on the seen" in out


def test_unload_removes_the_magics():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    assert "nbprod" in shell.magics_manager.magics["line"]
    shell.run_line_magic("unload_ext", "nbprod")
    assert "nbprod" not in shell.magics_manager.magics["line"]
    assert "nbprod" not in shell.magics_manager.magics["cell"]
    with pytest.raises(UsageError):
        shell.run_line_magic("nbprod", "")
