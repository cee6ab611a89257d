"""A remote MLflow tracking server works as well as the embedded store (one real server on 127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _registry_helpers import pipeline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("mlflow server exited: " + proc.stderr.read().decode()[-2000:])
                if time.monotonic() > deadline:
                    pytest.fail("mlflow server did not answer within 90 s")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_register_load_and_evaluate_on_a_remote_tracking_server(nbprod_home, mlflow_server, data_small=None):
    import numpy as np

    from nbprod.config import settings
    from nbprod.datasets import credit
    from nbprod.registry import evaluate, get_version, load_model, register

    X, y = credit(400, seed=8)
    model = pipeline(X, y)
    settings.set(tracking_uri=mlflow_server)
    version = register(model, "remote-model", X, y, alias="champion")
    assert not version.source.startswith("file:")  # artefacts live on the server
    assert get_version("models:/remote-model@champion").version == "1"
    loaded = load_model("remote-model@champion")  # downloaded to the cache, then verified
    assert str(loaded.path).startswith(str(nbprod_home)) and loaded.metadata["verified"]
    assert np.array_equal(np.asarray(loaded.predict(X.head())), model.predict(X.head()))
    assert evaluate("remote-model/1", X, y, against=None).ok
