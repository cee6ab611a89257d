import subprocess
import sys

from nbprod import __version__
from nbprod.cli import main


def test_help_and_version(capsys):
    assert main([]) == 0
    assert "usage: nbprod" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nbprod {__version__}"


def test_unknown_command_exits_2_with_a_hint(capsys):
    assert main(["deplyo"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'deplyo'" in err and "Fix:" in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "nbprod.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: nbprod" in out.stdout


def test_every_verb_has_working_help(capsys):
    from nbprod.commands import all_commands

    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for name in all_commands():
        assert name in top
        assert main([name, "--help"]) == 0, name
        assert f"usage: nbprod {name}" in capsys.readouterr().out


def test_top_level_help_shows_the_cell_magic_escaped_once(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "(the %%nbprod expect cell body" in top and "%%%%" not in top
    from nbprod.magics import _help_text

    assert "(the %%nbprod expect cell body" in _help_text() and "%%%%" not in _help_text()
