"""Browser tests: a real JupyterLab on 127.0.0.1 driven through Debian's Chromium with Playwright.

Fixtures for any test that looks at the page (the quickstart here, the sidebar later):

- ``lab``: a JupyterLab server (``lab.url``, ``lab.token``, ``lab.root`` — a fresh copy of the
  project's ``notebooks/`` — and ``lab.home``, the ``NBPROD_HOME`` its kernels use). One per
  module; news and update checks are off (``overrides.json``), notebooks render every cell
  (``windowingMode: none``), so what is asserted is in the DOM.
- ``browser``: Chromium, headless, launched from ``/usr/bin/chromium`` (never a downloaded build).
- ``page``: a new browser page logged in to ``lab`` (the token is set as a cookie by ``/lab?token=``).
- ``screenshots``: the directory a test saves its screenshots in (``docs/`` under ``make screenshots``).

What a user does (open a notebook, Run All, type in a cell, take a screenshot) is in ``_lab.py``.

Without Chromium or Playwright these tests skip with the reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import kill_recorded_servers, require

from ._lab import PROJECT, Lab, screenshot_dir

CHROMIUM = os.environ.get("NBPROD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 1200}  # tall enough for the whole panel in a screenshot
# JupyterLab as a new user gets it, minus what reaches the network or hides cells from the DOM.
OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
    # every cell in the DOM; a notebook's kernel starts without the "Select Kernel" dialog
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(lab: Lab, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server we started and every kernel it started (its own process group)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except OSError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_deployments(home: Path) -> None:
    """Model servers a notebook deployed into ``home`` (if it failed before undeploying them)."""
    from nbprod.config import settings

    saved = {k: os.environ.get(k) for k in ("NBPROD_HOME", "NBPROD_DB_URL")}
    os.environ["NBPROD_HOME"] = str(home)
    os.environ.pop("NBPROD_DB_URL", None)
    settings.reset()
    try:
        kill_recorded_servers()
    finally:
        if "nbprod.state" in sys.modules:
            sys.modules["nbprod.state"].dispose()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.reset()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Any:
    """JupyterLab on 127.0.0.1 with a token, serving a fresh copy of ``notebooks/``, kernels on a fresh home."""
    require(_has_module("jupyterlab"), "JupyterLab is not installed: pip install 'nbprod[lab]'")
    base = tmp_path_factory.mktemp("lab")
    root, home, settings_dir = base / "root", base / "nbprod-home", base / "app-settings"
    shutil.copytree(PROJECT / "notebooks", root, ignore=shutil.ignore_patterns(".nbprod", ".ipynb_checkpoints"))
    settings_dir.mkdir()
    (settings_dir / "overrides.json").write_text(json.dumps(OVERRIDES, indent=1))
    token, port = secrets.token_hex(16), _free_port()
    unset = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(NBPROD_HOME=str(home), JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               f"--LabApp.app_settings_dir={settings_dir}", f"--LabApp.user_settings_dir={base / 'user-settings'}",
               f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.news_url=", "--ServerApp.open_browser=False"]
    log = base / "jupyter-lab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, home=home, log=log, process=process)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)
        _kill_deployments(home)


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def browser() -> Any:
    """Headless Chromium from Debian, driven by Playwright (no browser download)."""
    require(os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM}: apt-get install chromium")
    require(_has_module("playwright"), "Playwright is not installed: pip install 'nbprod[test]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser, lab, request, tmp_path) -> Any:
    """A page logged in to ``lab`` (JupyterLab's UI loaded), closed after the test; a failed test
    leaves a screenshot of the whole page in its tmp dir (the path is printed)."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    tab.goto(lab.url_for(f"lab?token={lab.token}"))
    tab.wait_for_selector("#jp-main-dock-panel", state="attached")
    try:
        yield tab
        if request.node.stash.get(_FAILED, False):
            shot = tmp_path / "failed-page.png"
            tab.screenshot(path=str(shot), full_page=True)
            print(f"page at failure: {shot}\nserver log: {lab.log}")
    finally:
        context.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """The directory this test's screenshots go to (``docs/`` under ``NBPROD_UPDATE_SCREENSHOTS=1``)."""
    return screenshot_dir(tmp_path / "screenshots")
