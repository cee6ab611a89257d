"""How a server starts (issue 13: a first deploy ready in 1.5 s): what its workers import before they
answer, and one full load per model version however many loaders miss its start-up cache at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _servers import NBPROD, cmdline, free_port, request, server_workers, stop_group, wait_until
from _serving_models import rows


def _imported(stderr: str, module: str) -> int:
    """How many processes imported ``module`` (``-X importtime`` prints one line per process that does)."""
    return sum(1 for line in stderr.splitlines()
               if line.startswith("import time:") and line.split("|")[-1].strip() == module)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker command lines from /proc")
def test_a_multi_worker_server_imports_its_stack_once_and_forks_its_workers(serving_models, env, tmp_path):
    """Each spawned worker imported SQLAlchemy, numpy, Starlette and the app again (~0.5 CPU-s each)
    before it could answer, after the supervisor's own start. The supervisor imports them once and
    forks its workers, which answer with nothing of it left to import."""
    port = free_port()
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([NBPROD, "serve", "--model-dir", serving_models["clf"], "--workers", "2", "--no-auth",
                                 "--port", str(port)], env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
    try:
        def serving() -> bool:
            assert proc.poll() is None, err_path.read_text()[-2000:]
            try:
                return request(port, "POST", "/invocations", rows(serving_models, 1))[0] == 200
            except OSError:
                return False

        def workers() -> set[int]:
            found = server_workers(proc.pid)
            return found if len(found) == 2 else set()

        wait_until(serving, 120, "the server answering a prediction")
        for pid in wait_until(workers, 60, "two workers"):  # forked: the supervisor's command line, no spawn_main
            assert cmdline(pid) == cmdline(proc.pid)
        for _ in range(10):  # fresh connections land on either worker: both answer
            assert request(port, "POST", "/invocations", rows(serving_models, 1))[0] == 200
    finally:
        stop_group(proc)
    stderr = err_path.read_text()
    for module in ("sqlalchemy", "numpy", "starlette", "nbprod.serving.app", "uvicorn"):
        assert _imported(stderr, module) == 1, (module, _imported(stderr, module))


def _frames(thread: threading.Thread) -> list[str]:
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def test_loaders_that_miss_the_start_up_cache_together_load_the_version_once(serving_models, nbprod_home):
    """A deploy fills the cache while its server starts, and a worker that misses meanwhile must wait
    for that fill (it would otherwise import scikit-learn and MLflow and load the version beside it)."""
    from nbprod.serving.loader import ModelStore, load_version

    opened: list[str] = []
    inside = threading.Event()
    go_on = threading.Event()

    def open_(path: Path):
        opened.append(threading.current_thread().name)
        inside.set()
        assert go_on.wait(60)
        return None  # a plain MLflow directory: loaded with mlflow.pyfunc

    store = ModelStore(locate=lambda uri: (Path(uri), "", ""), open=open_)
    results: dict[str, object] = {}

    def load(who: str) -> None:
        results[who] = load_version(serving_models["clf"], store=store)

    first = threading.Thread(target=load, args=("first",), name="first", daemon=True)
    first.start()
    assert inside.wait(60)  # the first loader is in its full load
    second = threading.Thread(target=load, args=("second",), name="second", daemon=True)
    second.start()
    # the second either waits for the first's fill (_filling) or, as before, starts a full load itself
    wait_until(lambda: "_filling" in _frames(second) or len(opened) > 1 or not second.is_alive(), 60,
               "the second loader waiting or loading")
    go_on.set()
    first.join(60)
    second.join(60)
    assert opened == ["first"], opened
    one, two = results["first"], results["second"]
    assert two.plan is not None and two.fastpath_reason == one.fastpath_reason  # type: ignore[attr-defined]


def test_serve_names_a_missing_model_before_it_starts(env, nbprod_home, tmp_path):
    """A typo in ``nbprod serve --model`` printed the bearer token, then each worker's start-up traceback and
    uvicorn's "Application startup failed" (exit 3); a missing ``--model-dir`` was read as a model URI. Now
    each is one error with its fix (exit 2) before anything starts, and ``nbprod.serve`` raises it."""
    from nbprod.errors import ModelNotFoundError, ServingError
    from nbprod.service import serve

    empty = tmp_path / "empty"
    empty.mkdir()
    for args, says in [(["--model", "nosuch@champion"], "no registered model called 'nosuch'"),
                       (["--model-dir", str(tmp_path / "gone")], f"no model directory at {tmp_path / 'gone'}"),
                       (["--model-dir", str(empty)], f"{empty} is not an MLflow model directory (no MLmodel file)")]:
        done = subprocess.run([NBPROD, "serve", *args, "--port", "1", "--workers", "2"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "Fix:" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "bearer token" not in done.stderr, done.stderr
    done = subprocess.run([NBPROD, "serve", "--model-dir", str(empty), "--workers", "1000"], env=env,
                          capture_output=True, text=True, timeout=120)  # forked until the machine stalled
    assert done.returncode == 2 and "workers must be a whole number from 1 to" in done.stderr, done.stderr
    with pytest.raises(ModelNotFoundError, match="no registered model called 'nosuch'"):
        serve("nosuch@champion", port=1)
    with pytest.raises(ServingError, match="no model directory at"):
        serve(str(tmp_path / "gone"), port=1)


def test_serve_refuses_an_address_it_cannot_listen_on(env, tmp_path):
    """A port out of range raised uvicorn's OverflowError (or, with one worker, exited without a word), and a
    port in use ended in uvicorn's bind error, each after the token and the address were printed as if the
    server were up. Now one error with its fix (exit 2), before anything is printed or loaded."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, says in [(["--port", "70000"], "port must be an integer between 1 and 65535, got 70000"),
                           (["--port", "70000", "--workers", "2"], "port must be an integer between 1 and 65535"),
                           (["--port", str(port)], f"cannot serve on 127.0.0.1:{port}: Address already in use"),
                           (["--host", "192.0.2.1"], "cannot serve on 192.0.2.1:8080")]:  # TEST-NET-1: no host has it
            done = subprocess.run([NBPROD, "serve", "--model-dir", str(tmp_path), *args], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 2 and says in done.stderr and "Fix:" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr and "bearer token" not in done.stderr, done.stderr
