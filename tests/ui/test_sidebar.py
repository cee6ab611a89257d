"""The "Production" sidebar in a real JupyterLab, clicked in Debian's Chromium (fixtures: conftest.py).

A model with two versions and a deployment "credit" (v1 stable, v2 as a 20 % canary, an alert rule
that fires, a retraining pipeline on another rule) are made in the JupyterLab's own nbprod home;
the test opens the sidebar, sees them, rolls the canary back through the dialog, checks through
nbprod's API that the traffic moved and the audit log has the row, and then sees the server's
refusal of a second rollback in the panel.
"Open monitor" runs the live monitoring panel in a notebook and the page keeps answering. The
notebook panel of ``%nbprod status`` (ipywidgets) does the same rollback and shows the same refusal.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import nbformat
import pytest
from _registry_helpers import pipeline

from ._lab import new_notebook, run_cell, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _until(condition, what: str, timeout_s: float = 60.0) -> Any:
    """Poll ``condition`` until it is truthy (returned), failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def production(lab):
    """credit-risk v1 (@champion) and v2 (@challenger), deployed as "credit" with v2 as a 20 % canary,
    in the nbprod home of the JupyterLab server (and so of its sidebar API); some traffic, so the
    panel has figures, and an alert rule that fires on it."""
    import nbprod
    from nbprod.config import settings
    from nbprod.datasets import credit

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBPROD_HOME", str(lab.home))
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "NBPROD_DB_URL"):
            mp.delenv(var, raising=False)
        settings.reset()

        X, y = credit(1500, 3)
        nbprod.register(pipeline(X, y), "credit-risk", X, y, alias="champion",
                        metrics={"roc_auc": 0.81, "accuracy": 0.77})
        nbprod.register(pipeline(X, y, C=0.05), "credit-risk", X, y, alias="challenger",
                        metrics={"roc_auc": 0.83, "accuracy": 0.78})
        # a retraining pipeline on a rule that does not fire here (the card names it; nothing starts)
        retrain = lab.home / "retrain.yaml"
        retrain.write_text("name: retrain\nparams:\n  deployment: none\nsteps:\n  look:\n    verb: wait\n"
                           "    deployment: ${params.deployment}\n    seconds: 0\n")
        first = nbprod.deploy("credit-risk@champion", name="credit", budget_p95_ms=250,
                              alerts={"rules": ["p95_ms > 0.01"], "interval": 1, "window": "5m"},
                              on_alert={"drift_share > 0.99": str(retrain)})
        nbprod.deploy("credit-risk@challenger", name="credit", canary=20)
        for i in range(8):
            first.predict(X.iloc[i * 10:(i + 1) * 10])
        nb = nbformat.v4.new_notebook()  # a notebook job, which the panel lists under "Jobs"
        nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
        nbformat.write(nb, lab.home / "tiny.ipynb")
        nbprod.run(lab.home / "tiny.ipynb", progress=False)
        yield first
        if "nbprod.state" in sys.modules:  # close pooled connections to the lab's state DB
            sys.modules["nbprod.state"].dispose()
        settings.reset()


def _restored(page: Any) -> None:
    """Until JupyterLab has restored its layout (it removes the splash screen then)."""
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)


def _open_sidebar(page: Any) -> Any:
    """Open the Production tab, unless the restored layout has it open already (a click would close it)."""
    _restored(page)
    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='nbprod-production']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.locator("#nbprod-production")
    panel.wait_for(state="visible")
    return panel


def test_sidebar_rolls_back_a_canary_and_shows_a_refusal(page, lab, production, screenshots):
    import nbprod

    panel = _open_sidebar(page)
    card = panel.locator(".nbprod-deployment[data-name='credit']")
    card.wait_for()
    # the registered model, its versions and alias badges
    model = panel.locator(".nbprod-model[data-name='credit-risk']")
    assert model.locator(".nbprod-version[data-version='1'] .nbprod-alias").inner_text() == "@champion"
    assert model.locator(".nbprod-version[data-version='2'] .nbprod-alias").inner_text() == "@challenger"
    assert "roc_auc 0.810" in model.locator(".nbprod-version[data-version='1']").inner_text()
    # the notebook job: its file name and status, the full path in its tooltip
    job = panel.locator(".nbprod-job")
    assert job.locator(".nbprod-name").inner_text() == "tiny.ipynb"
    assert job.locator(".nbprod-badge").inner_text() == "finished"
    assert job.get_attribute("title").startswith(str(lab.home / "tiny.ipynb"))
    # the running deployment with its split, health and budget
    assert card.locator(".nbprod-dot").get_attribute("class").endswith("nbprod-state-running")
    assert card.locator(".nbprod-seg").all_inner_texts() == ["v1 80%", "v2 20%"]
    assert "/ 250 ms budget" in card.locator(".nbprod-figures").inner_text()
    on_alert = card.locator(".nbprod-on-alert")
    assert on_alert.inner_text() == "on alert: drift_share > 0.99 → retrain.yaml"
    assert on_alert.get_attribute("title") == str(lab.home / "retrain.yaml")
    # the server's alert loop marks the rule firing; the panel shows it on a later refresh
    card.locator(".nbprod-alert", has_text="p95_ms > 0.01").wait_for(timeout=60_000)
    card.locator(".nbprod-fig", has_text="p95 ").filter(has_text=" ms /").wait_for()
    screenshot(panel, "sidebar", screenshots)

    # Roll back: the dialog names the change; confirming moves the traffic
    card.get_by_role("button", name="Roll back").click()
    dialog = page.locator(".jp-Dialog")
    assert "drop v2 (canary, 20%); v1 gets 100% of traffic" in dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    _until(lambda: [(r["version"], r["weight"]) for r in nbprod.status("credit")["credit"].routes] == [("1", 100)],
           "the rollback reached the deployment")
    row = next(e for e in nbprod.audit.history("credit-risk").entries if e.action == "rollback")
    assert row.details["what"] == "dropped v2 (canary)" and row.details["to"] == "1"
    card.locator(".nbprod-seg", has_text="v1 100%").wait_for()
    assert panel.locator(".nbprod-error").is_hidden()

    # a second rollback has nothing to return to: the panel shows the server's problem and fix
    card.get_by_role("button", name="Roll back").click()
    assert "no earlier version is recorded" in dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    error = panel.locator(".nbprod-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert "Roll back credit refused" in text
    assert "has no previous version to roll back to" in text
    assert "Fix: rollback returns to the version served before the last promote or switch" in text
    assert [(r["version"], r["weight"]) for r in nbprod.status("credit")["credit"].routes] == [("1", 100)]


def test_open_monitor_runs_the_monitor_in_the_notebook_and_the_panel_survives_a_reload(page, lab, production):
    """"Open monitor" clicked in a notebook that has just opened, its kernel session not created
    yet (held here until after the click; under load that window lasts seconds): the cell runs
    once the kernel is there. It used to be dropped by JupyterLab's run, its prompt left ``[ ]``
    and nothing sent to the kernel (the hang of the full parallel runs)."""
    _restored(page)
    held: list[Any] = []

    def hold_new_sessions(route: Any) -> None:
        if route.request.method == "POST":
            held.append(route)  # the new notebook's session and kernel: created when the test lets it
        else:
            route.continue_()

    sessions = re.compile(r"/api/sessions(\?.*)?$")
    page.route(sessions, hold_new_sessions)
    notebook = new_notebook(page, wait_kernel=False)
    _until_page(page, lambda: held, "JupyterLab asked for the new notebook's session")
    panel = _open_sidebar(page)
    panel.locator(".nbprod-deployment[data-name='credit']").get_by_role("button", name="Open monitor").click()
    cell = notebook.locator(".jp-CodeCell").last
    cell.locator(".cm-content", has_text="%nbprod monitor credit").wait_for()
    for route in held:
        route.continue_()
    page.unroute(sessions)
    # bounded, not timed: a new kernel imports nbprod, MLflow and Altair and computes the report first
    cell.locator(".jp-InputPrompt", has_text="[1]:").wait_for(timeout=300_000)
    assert cell.locator(".cm-content").inner_text() == "%load_ext nbprod\n%nbprod monitor credit"
    output = cell.locator(".jp-Cell-outputArea")
    output.get_by_text("Latency", exact=True).first.wait_for(timeout=300_000)  # the live panel's tabs
    shown = output.inner_text()
    assert "UsageError" not in shown and "Traceback" not in shown, shown
    # the sidebar is part of the layout: a reload brings it back open, with no click
    page.reload()
    _restored(page)
    page.locator("#nbprod-production .nbprod-deployment[data-name='credit']").wait_for(state="visible")


def _until_page(page: Any, condition, what: str, timeout_s: float = 120.0) -> Any:
    """:func:`_until` for a condition the page's events make true (Playwright dispatches them
    while the page waits, not while Python sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}")
        page.wait_for_timeout(100)
    return condition()


def test_status_panel_in_a_notebook_rolls_back_after_confirmation_and_shows_a_refusal(page, lab, production,
                                                                                      screenshots):
    """``%nbprod status credit`` in a notebook: the ipywidgets panel (for classic Notebook and VS Code
    users too) rolls the canary back through its confirmation, and shows nbprod's refusal."""
    import nbprod

    nbprod.deploy("credit-risk@challenger", name="credit", canary=20)  # a canary to roll back, whatever ran before
    assert [(r["version"], r["weight"]) for r in nbprod.status("credit")["credit"].routes] == [("1", 80), ("2", 20)]
    _restored(page)
    notebook = new_notebook(page)
    cell = run_cell(page, "%load_ext nbprod\n%nbprod status credit")
    output = cell.locator(".jp-Cell-outputArea")
    card = output.locator(".nbprod-w-card-credit")
    card.wait_for(timeout=120_000)
    assert card.locator(".nbprod-w-seg").all_inner_texts() == ["v1 80%", "v2 20%"]
    assert "/ 250 ms budget" in card.locator(".nbprod-w-figures").inner_text()
    assert output.locator(".nbprod-w-error").is_hidden()

    card.get_by_role("button", name="Roll back", exact=True).click()
    question = card.locator(".nbprod-w-question")
    question.get_by_text("drop v2 (canary, 20%); v1 gets 100% of traffic").wait_for()
    screenshot(notebook.locator(".jp-Cell").last, "notebook-panel", screenshots)
    card.get_by_role("button", name="Confirm roll back").click()
    _until(lambda: [(r["version"], r["weight"]) for r in nbprod.status("credit")["credit"].routes] == [("1", 100)],
           "the rollback reached the deployment")
    row = nbprod.audit.history("credit-risk").entries[0]
    assert row.action == "rollback" and row.details["what"] == "dropped v2 (canary)", row
    card.locator(".nbprod-w-seg", has_text="v1 100%").wait_for()  # the panel refreshed itself
    output.locator(".nbprod-w-message", has_text="Roll back credit done").wait_for()

    # nothing left to roll back to: the refusal's problem and fix appear in the panel
    card.get_by_role("button", name="Roll back", exact=True).click()
    question.get_by_text("no earlier version is recorded").wait_for()
    card.get_by_role("button", name="Confirm roll back").click()
    error = output.locator(".nbprod-w-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert "Roll back credit refused" in text and "has no previous version to roll back to" in text, text
    assert "Fix: rollback returns to the version served before the last promote or switch" in text
    assert [(r["version"], r["weight"]) for r in nbprod.status("credit")["credit"].routes] == [("1", 100)]

