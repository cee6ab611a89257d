"""What real notebooks bring: dead kernels, timeouts, kills, parameters they ignore."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbprod.cli import main
from nbprod.errors import JobError
from nbprod.jobs import JobFailed, JobWarning, get_run, run

pytestmark = pytest.mark.slow


def _notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    cells = [new_code_cell(s) for s in sources]
    if parameters is not None:
        cells.insert(0, new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_dead_kernel_is_retried_with_backoff_and_recorded(nbprod_home, tmp_path, monkeypatch):
    from nbprod.jobs import execute

    monkeypatch.setattr(execute, "BACKOFF", 0.1)
    once = _notebook(tmp_path / "once.ipynb", "import os\nif not os.path.exists('died'):\n"
                     "    open('died', 'w').close()\n    os._exit(1)", "print('second attempt')")
    result = run(once, progress=False, retries=1)
    assert result.status == "FINISHED" and result.attempts == 2
    assert get_run(result.run_id).attempts == 2

    always = _notebook(tmp_path / "always.ipynb", "x = 1", "import os\nos._exit(1)", "y = 2")
    with pytest.raises(JobFailed, match=r"kernel died: cell 2 \(`import os`\)") as err:
        run(always, progress=False)
    died = err.value.result
    assert died.status == "KERNEL_DIED" and not died.ok and "kernelspec" not in err.value.fix
    assert "--retries" in err.value.fix
    executed = nbformat.read(died.output, as_version=4)
    statuses = [c.metadata["papermill"]["status"] for c in executed.cells]
    assert statuses == ["completed", "failed", "pending"], "the copy does not claim every cell completed"
    assert executed.metadata["papermill"]["exception"] is True
    assert executed.metadata["nbprod"]["status"] == "KERNEL_DIED"


def test_a_cell_timeout_from_the_cli_is_recorded_as_a_timeout(nbprod_home, tmp_path, capfd):
    slow = _notebook(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(120)", "y = 2")
    assert main(["run", str(slow), "--timeout", "2", "--no-progress"]) == 1
    err = capfd.readouterr().err  # the kernel's own stderr too (it is this process's)
    assert "timeout" in err and "cell 2 (`import time`)" in err and "kernelspec" not in err
    # the stopped cell's reply was sent after the kernel closed its sockets: a ZMQError traceback from the kernel
    assert "Traceback" not in err and "ZMQError" not in err
    job = _latest()
    assert job.status == "TIMEOUT" and job.error["cell"] == 2
    executed = nbformat.read(job.output, as_version=4)
    assert [c.metadata["papermill"]["status"] for c in executed.cells] == ["completed", "failed", "pending"]


def _latest():
    from nbprod.jobs import runs

    return runs(limit=1)[0]


def _wait(condition, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_job_is_recorded_as_killed_never_finished(nbprod_home, tmp_path, sig, request):
    slow = _notebook(tmp_path / "slow.ipynb", "print('started', flush=True)", "import time\ntime.sleep(300)")
    # where the job's kernel keeps its sockets and connection file (its signing key): a short path, as a socket's is
    temp = Path(tempfile.mkdtemp(prefix="nbk-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    env = {**os.environ, "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, "-m", "nbprod.cli", "run", str(slow), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def sleeping():
            from nbprod.jobs import runs

            found = runs(limit=1)
            if not found or found[0].output is None or not found[0].output.exists():
                return False
            try:
                nb = nbformat.read(found[0].output, as_version=4)
            except ValueError:  # papermill is rewriting the copy (it truncates, then writes): look again
                return False
            return nb.cells[-1].metadata.get("papermill", {}).get("status") == "running"

        _wait(sleeping)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    job = _latest()
    assert job.status == "KILLED" and not job.ok
    from nbprod.registry.store import client

    # even after SIGKILL the MLflow run itself is closed as KILLED (by the store's helper process,
    # which sees the job's process go), not left RUNNING for MLflow's UI
    _wait(lambda: client().get_run(job.run_id).info.status == "KILLED", 60)
    if sig == signal.SIGTERM:  # it had the time to write its end: run status and the copy's metadata say so
        from nbprod.registry.store import client

        assert client().get_run(job.run_id).info.status == "KILLED"
        executed = nbformat.read(job.output, as_version=4)
        assert executed.metadata["nbprod"]["status"] == "KILLED"
        assert executed.cells[-1].metadata["papermill"]["status"] == "failed"
    else:  # it never reached its end, where the notebook is recorded: a rerun says so and how to run it again
        from nbprod.jobs import rerun

        with pytest.raises(JobError, match="was killed before it ended, so its notebook was not recorded") as err:
            rerun(job.run_id, progress=False)
        assert f"nbprod run {slow}" in err.value.fix
        # nothing shut its kernel down: its private folder stayed, and the next job deletes it
        (left,) = [p for p in temp.iterdir() if ".nbprod-kernel-" in p.name]
        assert "kernel.json" in {p.name for p in left.iterdir()} and left.stat().st_mode & 0o077 == 0
        quick = _notebook(tmp_path / "quick.ipynb", "print(1)")
        subprocess.run([sys.executable, "-m", "nbprod.cli", "run", str(quick), "--no-progress"], env=env,
                       capture_output=True, timeout=300, check=True)
        assert list(temp.iterdir()) == []


def test_injected_parameters_the_notebook_ignores_are_named(nbprod_home, tmp_path, capsys):
    """No parameters cell: papermill injects at the top; nbprod names what the notebook overwrites or never reads."""
    nb = _notebook(tmp_path / "plain.ipynb", "alpha = 0.9\nprint(alpha)", "print(beta * 2)")
    params = tmp_path / "params.yaml"
    params.write_text("alpha: 0.3\nbeta: 2\ngamma: x\n")
    assert main(["run", str(nb), "-f", str(params), "-p", "beta", "5", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "overwrites alpha before reading it" in captured.err and "never reads gamma" in captured.err
    assert "beta" not in captured.err.split("never reads")[1]
    job = _latest()
    assert job.parameters == {"alpha": 0.3, "beta": 5, "gamma": "x"}
    assert any("overwrites alpha" in n for n in job.notes)
    executed = nbformat.read(job.output, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "10\n"
    with pytest.warns(JobWarning, match="never reads gamma"):
        run(nb, {"gamma": 1, "beta": 1}, progress=False)


def test_the_command_line_shows_a_warning_as_one_line(nbprod_home, tmp_path):
    """Python's own form added nbprod's file, line and source line: "…/execute.py:133: JobWarning: …" and
    "  warnings.warn(note, JobWarning, stacklevel=2)"."""
    nb = _notebook(tmp_path / "plain.ipynb", "print(1)")
    done = subprocess.run([sys.executable, "-m", "nbprod.cli", "run", str(nb), "-p", "gamma", "x", "--no-progress"],
                          capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if "never reads gamma" in ln]
    assert line == f"nbprod: warning: {nb} never reads gamma: the values given have no effect"
    assert "Warning:" not in done.stderr and "warnings.warn" not in done.stderr
    # papermill said the same in its words next to it ("Passed unknown parameter: gamma", "… no cell with tag
    # 'parameters'"): once is enough
    assert "Passed unknown parameter" not in done.stderr and "does not contain a cell" not in done.stderr


def test_a_job_killed_in_a_process_that_writes_its_own_run_is_closed_killed(nbprod_home, tmp_path):
    """A process with MLflow loaded (a pipeline's runner, a notebook) writes the job's run itself: when it was
    SIGKILLed mid-job the run stayed RUNNING in MLflow for good, with no end time (`nbprod runs`: 0.0 s)."""
    slow = _notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(300)")
    code = f"import mlflow; from nbprod.jobs import run; run({str(slow)!r}, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    try:
        from nbprod.jobs import runs

        job = _wait(lambda: next(iter(runs(limit=1)), None), 120)
        _wait(lambda: job.output is not None and job.output.exists(), 60)
        started = time.time()
        time.sleep(1.0)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    from nbprod.registry.store import client

    closed = _wait(lambda: (lambda r: r if r.info.status == "KILLED" else None)(client().get_run(job.run_id)), 60)
    assert closed.info.end_time / 1000 >= started and closed.data.tags["nbprod.status"] == "KILLED"
    assert _latest().seconds >= 1.0
