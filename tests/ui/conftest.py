"""Browser tests: a real JupyterLab on 127.0.0.1 driven through Debian's Chromium with Playwright.

Fixtures for any test that looks at the page (the quickstart here, the sidebar later):

- ``lab``: a JupyterLab server (``lab.url``, ``lab.token``, ``lab.root`` — a fresh copy of the
  project's ``notebooks/`` — and ``lab.home``, the ``NBPROD_HOME`` its kernels use). One per
  module; news and update checks are off (``overrides.json``), notebooks render every cell
  (``windowingMode: none``), so what is asserted is in the DOM.
- ``browser``: Chromium, headless, launched from ``/usr/bin/chromium`` (never a downloaded build).
- ``page``: a new browser page logged in to ``lab`` (the token is set as a cookie by ``/lab?token=``).
  A failed test leaves in its tmp dir what says where a hang is: ``failed-page.png``, ``console.log``
  (the browser console and the kernel messages the page sent and received) and ``kernels.txt`` (the
  front end's notebook session and cells, the server's kernels, their stacks with py-spy installed).
  The app is exposed as ``window.jupyterapp`` for that, and for ``_lab.wait_idle``.
- ``screenshots``: the directory a test saves its screenshots in (``docs/`` under ``make screenshots``).

What a user does (open a notebook, Run All, type in a cell, take a screenshot) is in ``_lab.py``.

Without Chromium or Playwright these tests skip with the reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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
TIMEZONE = "Asia/Kolkata"  # UTC+05:30: neither the hours nor the minutes of a local time match UTC's
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
               f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.news_url=", "--ServerApp.open_browser=False",
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: the front end's state on failure
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
    """A page logged in to ``lab`` (JupyterLab's UI loaded), closed after the test.

    The browser's console (messages and uncaught page errors) is recorded all along; a failed
    test leaves in its tmp dir a screenshot of the whole page, the console, and the lab's kernels
    with their execution state and, where py-spy is installed, each kernel's thread stacks, so a
    hang says whether the kernel is still executing or the page stopped drawing (paths printed)."""
    # a user away from UTC: a time drawn in the browser's zone under a "(UTC)" title shows here
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, timezone_id=TIMEZONE)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda m: console.append(f"{time.strftime('%H:%M:%S')} console.{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: console.append(f"{time.strftime('%H:%M:%S')} pageerror: {e}"))
    tab.on("websocket", lambda ws: _log_kernel_messages(ws, console))
    tab.goto(lab.url_for(f"lab?token={lab.token}"))
    tab.wait_for_selector("#jp-main-dock-panel", state="attached")
    try:
        yield tab
        if request.node.stash.get(_FAILED, False):
            _save_failure(tab, lab, console, tmp_path)
    finally:
        context.close()


_FRONT_END_STATE = """() => {
    const app = window.jupyterapp;
    const widget = app && app.shell.currentWidget;
    const context = widget && widget.sessionContext;
    if (!context) return app ? 'the current widget is not a notebook' : 'the app is not exposed';
    const kernel = context.session && context.session.kernel;
    return JSON.stringify({
        path: context.path, hasNoKernel: context.hasNoKernel, isReady: context.isReady,
        isTerminating: context.isTerminating, pendingInput: context.pendingInput,
        kernelDisplayStatus: context.kernelDisplayStatus,
        kernel: kernel && {id: kernel.id, status: kernel.status, connectionStatus: kernel.connectionStatus},
        cells: widget.content.widgets.map(c => ({type: c.model.type, state: c.model.executionState,
            count: c.model.executionCount, source: c.model.sharedModel.getSource().slice(0, 60)}))}, null, 1);
}"""
_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"(\w+)"')


def _log_kernel_messages(ws: Any, console: list[str]) -> None:
    """Kernel protocol messages on the page's kernel websockets, one line each (direction and
    ``msg_type``, never the content), in the console log: whether a cell's ``execute_request``
    left the page, and what the kernel answered."""
    if "/api/kernels/" not in ws.url:
        return
    kernel = ws.url.split("/api/kernels/", 1)[1][:8]

    def log(direction: str, payload: Any) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        found = _MSG_TYPE.search(data[:4096])
        if found and found.group(1) not in (b"status", b"comm_msg"):
            console.append(f"{time.strftime('%H:%M:%S')} kernel {kernel} {direction} {found.group(1).decode()}")

    ws.on("framesent", lambda payload: log("<-", payload))
    ws.on("framereceived", lambda payload: log("->", payload))
    ws.on("close", lambda _ws: console.append(f"{time.strftime('%H:%M:%S')} kernel {kernel} websocket closed"))
    console.append(f"{time.strftime('%H:%M:%S')} kernel {kernel} websocket opened")


def _save_failure(tab: Any, lab: Lab, console: list[str], directory: Path) -> None:
    """What a failed browser test leaves behind (each part on its own: one failing does not lose the rest)."""
    saved = []
    (directory / "console.log").write_text("\n".join(console) + "\n")
    saved.append(f"browser console ({len(console)} lines): {directory / 'console.log'}")
    try:  # what the front end believes: the notebook's session, kernel connection and cells
        front = tab.evaluate(_FRONT_END_STATE)
    except Exception as exc:  # noqa: BLE001 - playwright's errors: a frozen page does not evaluate
        front = f"not readable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    (directory / "kernels.txt").write_text(f"front end: {front}\n\n{kernel_state(lab)}")
    saved.append(f"kernels: {directory / 'kernels.txt'}")
    try:
        shot = directory / "failed-page.png"
        tab.screenshot(path=str(shot), full_page=True, timeout=30_000)  # a frozen page may not answer
        saved.append(f"page at failure: {shot}")
    except Exception as exc:  # noqa: BLE001 - playwright's errors: the page itself may be what hangs
        saved.append(f"no screenshot: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    saved.append(f"server log: {lab.log}")
    print("\n".join(saved))


def kernel_state(lab: Lab) -> str:
    """The lab's kernels as its REST API reports them (execution state, last activity) and, with
    py-spy installed, every thread's Python stack in each kernel process: busy in what, or idle."""
    lines = []
    try:
        with urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}", timeout=30) as answer:
            kernels = json.loads(answer.read())
    except OSError as exc:
        return f"GET /api/kernels failed: {exc}\n"
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    for k in kernels:
        lines.append(f"kernel {k['id']}: {k.get('execution_state')} (last activity {k.get('last_activity')}, "
                     f"connections {k.get('connections')})")
        pid = _kernel_pid(k["id"])
        if pid is None:
            lines.append("  process not found")
        elif spy is None:
            lines.append(f"  pid {pid} (pip install py-spy for its thread stacks)")
        else:
            try:
                dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
                lines.append(f"  pid {pid}, py-spy dump:\n{dump.stdout}{dump.stderr}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                lines.append(f"  pid {pid}, py-spy dump failed: {exc}")
    return "\n".join(lines or ["no kernels"]) + "\n"


def _kernel_pid(kernel_id: str) -> int | None:
    """The process whose command line names the kernel's connection file (``kernel-<id>.json``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"kernel-{kernel_id}.json" in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """The directory this test's screenshots go to (``docs/`` under ``NBPROD_UPDATE_SCREENSHOTS=1``)."""
    return screenshot_dir(tmp_path / "screenshots")
