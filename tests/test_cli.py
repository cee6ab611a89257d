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


_EXIT = """
import atexit, sys, threading, time
from pathlib import Path
from nbprod.cli import exit_now

out = Path(sys.argv[1])
class Teardown:
    def __del__(self):
        print("teardown ran")
kept = Teardown()  # freed only by the interpreter's teardown
atexit.register(lambda: out.joinpath("atexit").write_text("ran"))
if sys.argv[2] == "thread":
    def late():
        time.sleep(0.5)
        out.joinpath("thread").write_text("done")
    threading.Thread(target=late).start()
sys.stdout.write("x" * 100000)  # buffered, no newline
exit_now(3)
"""


def test_the_command_line_exits_without_the_interpreters_teardown(tmp_path):
    """``nbprod`` ends its process once the atexit handlers ran and the streams are flushed: the
    seconds of teardown after importing MLflow are skipped, nothing written is lost."""
    done = subprocess.run([sys.executable, "-c", _EXIT, str(tmp_path), "-"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3 and done.stdout == "x" * 100000, "exit code kept, buffered output flushed"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert "teardown ran" not in done.stdout


def test_the_command_line_waits_for_a_running_thread_before_it_exits(tmp_path):
    done = subprocess.run([sys.executable, "-c", _EXIT, str(tmp_path), "thread"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3 and (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran" and done.stdout.startswith("x" * 100000)


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
