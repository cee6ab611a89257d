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
    with pytest.raises(UsageError, match="unknown command .deplyo.*did you mean `%nbprod deploy`"):
        ip.run_line_magic("nbprod", "deplyo x")


def test_bad_arguments_are_usage_errors(ip):
    with pytest.raises(UsageError, match="unrecognized arguments: --frob"):
        ip.run_line_magic("nbprod", "run x.ipynb --frob")
    # said for the verb, whose help lists its options (it pointed at `%nbprod --help`), with a typo's nearest
    with pytest.raises(UsageError, match=r"%nbprod status: unrecognized arguments: --frob.*`%nbprod status --help`"):
        ip.run_line_magic("nbprod", "status --frob")
    with pytest.raises(UsageError, match=r"%nbprod deploy: .*--canery 5.*did you mean `--canary`\? See `%nbprod"):
        ip.run_line_magic("nbprod", "deploy credit@champion --name credit --canery 5")
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


def test_a_verb_error_shows_its_problem_and_fix_without_a_traceback(ip, capsys):
    from nbprod.errors import DataError

    result = ip.run_cell("%nbprod validate no_such_frame")
    assert isinstance(result.error_in_exec, DataError)  # still the typed error, for code and papermill
    out = capsys.readouterr()
    shown = out.out + out.err
    assert "DataError: no variable and no file called 'no_such_frame'" in shown
    assert "Fix: " in shown and "Traceback" not in shown and "site-packages" not in shown


def test_config_shows_and_overrides_the_values_in_force(nbprod_home, tmp_path, monkeypatch, capsys):
    """[tool.nbprod] sets top_k = 7: %config Nbprod shows 7, and setting the default (50) takes effect."""
    from nbprod.config import settings

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.nbprod]\ntop_k = 7\n")
    monkeypatch.chdir(project)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    try:
        assert settings.top_k == 7
        capsys.readouterr()
        shell.run_line_magic("config", "Nbprod")
        listing = capsys.readouterr().out
        assert "Current: 7" in listing.split("Nbprod.top_k", 1)[1].split("Nbprod.", 1)[0]
        shell.run_line_magic("config", "Nbprod.top_k = 50")
        assert settings.top_k == 50
    finally:
        shell.run_line_magic("unload_ext", "nbprod")
        settings.reset()


def test_a_mistyped_command_suggests_the_nearest(ip):
    with pytest.raises(UsageError, match=r"unknown command 'valdate' \(hint: did you mean `%nbprod validate`\?\)"):
        ip.run_line_magic("nbprod", "valdate df")
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("nbprod", "zzzzzz")
    assert "see `%nbprod --help`" in str(err.value) and "validate, profile" not in str(err.value)


def test_two_unknown_names_are_both_named(ip):
    from nbprod.errors import DataError

    with pytest.raises(DataError) as err:
        ip.run_line_magic("nbprod", "validate nosuchvar --against nosuchprof")
    assert "'nosuchvar'" in err.value.problem and "'nosuchprof'" in err.value.problem
    assert "--against" in err.value.fix


def test_command_descriptions_start_alike():
    from nbprod.commands import all_commands

    helps = {c.name: c.help for c in all_commands().values()}
    lower = {name for name, text in helps.items() if text[:1].islower()}
    assert lower == set(helps), f"start these with a small letter like the rest: {sorted(set(helps) - lower)}"
    assert not [name for name, text in helps.items() if text.endswith(".")]
