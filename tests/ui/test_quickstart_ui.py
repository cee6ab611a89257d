"""The quickstart as a user sees it: Run All in JupyterLab, in Chromium, and look at the page.

Asserts what only a page shows: no cell shows an error or stderr, every chart nbprod shows is drawn
(Vega's marks, not the ``<Chart>`` text a front end falls back to), the monitoring panel's tabs
switch and draw, and ``%nbprod`` mistakes in a fresh notebook read as one line of problem and fix.
The screenshots it takes are the README's pictures (``make screenshots`` writes them to docs/).
"""

from __future__ import annotations

import re

import pytest

from ._lab import new_notebook, open_notebook, run_all, run_cell, screenshot

# JupyterLab, a kernel and Chromium: slow. (The pytestmark in tests/ui/conftest.py marks nothing:
# pytest reads pytestmark from test modules only, so this module ran in `make test-fast`.)
pytestmark = pytest.mark.slow

STDERR = "application/vnd.jupyter.stderr"
VEGA = ".jp-RenderedVegaLite"  # JupyterLab's Vega-Lite 5 renderer, also inside the panel's Output widgets
PLACEHOLDERS = re.compile(r"<(Chart|LayerChart|VConcatChart|HConcatChart|FacetChart)>|VegaLite \d object|\[chart: ")
MARKS = "canvas.marks, svg.marks"  # what Vega draws into; its menu's icons are svg too, so not any svg


def _cell(panel, source_start: str):
    """The code cell whose source starts with ``source_start`` (its outputs: ``.jp-Cell-outputArea``)."""
    cells = panel.locator(".jp-CodeCell")
    for i in range(cells.count()):
        text = cells.nth(i).locator(".jp-InputArea .cm-content").inner_text()
        if text.lstrip().startswith(source_start):
            return cells.nth(i)
    raise AssertionError(f"no cell starts with {source_start!r}")


def _drawn(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["width"] > 50 and box["height"] > 50


@pytest.mark.timeout(900)
def test_quickstart_run_all_in_jupyterlab(page, lab, screenshots):
    panel = open_notebook(page, lab, "quickstart.ipynb")
    errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    for _attempt in range(2):
        run_all(page)
        summary = _cell(panel, "def failing(r):").locator(".jp-Cell-outputArea").inner_text()
        # A page whose first kernel connection failed (jupyter_server answers the channels request
        # with a 500 while the kernel is still starting) can drop Run All with no cell run and no
        # error shown: run it again then. A cell that raised is a failure, never retried.
        if summary or errors.count():
            break

    # Read now, asserted last: the pictures and the other checks still come out when this fails.
    stderr = panel.locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']")
    shown = [stderr.nth(i).inner_text()[:400] for i in range(stderr.count())]
    shown += [errors.nth(i).inner_text()[:400] for i in range(errors.count())]
    assert "audit: chain verified" in summary, "the run stopped early:\n" + "\n---\n".join(shown)

    # Every chart is drawn by Vega; no output fell back to a chart's text.
    charts = panel.locator(VEGA)
    assert charts.count() >= 6, f"expected the evaluation chart and the panel's five, found {charts.count()}"
    for i in range(charts.count()):
        assert charts.nth(i).locator(MARKS).count() == 1, f"chart {i} is not drawn: {charts.nth(i).inner_html()[:300]}"
    texts = panel.locator(".jp-OutputArea-output").all_inner_texts()
    fallbacks = [t[:200] for t in texts if PLACEHOLDERS.search(t)]
    assert not fallbacks, f"outputs show a chart's placeholder text instead of the chart: {fallbacks}"

    evaluation = _cell(panel, "result = nbprod.evaluate(").locator(".jp-Cell-outputArea")
    assert "PASSED" in evaluation.inner_text() and _drawn(evaluation.locator(MARKS).first)
    validation = _cell(panel, "new_market, _ = credit(").locator(".jp-Cell-outputArea")
    screenshot(validation, "quickstart-validation", screenshots)
    screenshot(evaluation, "quickstart-evaluation", screenshots)

    # The live panel: live from its first drawing; each tab switches and draws.
    monitor = _cell(panel, "panel = %nbprod monitor").locator(".jp-Cell-outputArea")
    assert "live, every 30 s" in monitor.inner_text()
    tabs = monitor.locator(".jupyter-widget-tab, .widget-tab").first
    for title, charts_in_tab in (("Performance", 1), ("Latency", 2), ("Alerts", 0), ("Drift", 2)):
        tabs.locator(".lm-TabBar-tab", has_text=title).click()
        visible = tabs.locator(".widget-tab-contents > .lm-Widget:not(.lm-mod-hidden)")
        assert visible.count() == 1, f"tab {title}: {visible.count()} panes shown"
        drawn = visible.locator(MARKS)
        assert drawn.count() == charts_in_tab, f"tab {title}: {drawn.count()} charts drawn, expected {charts_in_tab}"
        for i in range(charts_in_tab):
            assert _drawn(drawn.nth(i)), f"tab {title}: chart {i} has no size"
        if title == "Alerts":
            assert re.search(r"firing", visible.inner_text(), re.I), visible.inner_text()
        if title in ("Performance", "Drift"):
            screenshot(monitor, f"monitor-{title.lower()}", screenshots)

    # No cell shows an error or stderr (a traceback is rendered as stderr too).
    assert not shown, "cells show stderr or errors:\n" + "\n---\n".join(shown)


def test_nbprod_mistakes_in_a_fresh_notebook_read_as_problem_and_fix(page):
    new_notebook(page)
    run_cell(page, "%load_ext nbprod")
    mistakes = {
        "%nbprod validate nosuchvar --against nosuchprof": "nosuchvar",  # unknown variables
        "%nbprod validate data --no-such-option": "--no-such-option",     # a bad option
    }
    for source, named in mistakes.items():
        page.keyboard.press("Escape")
        page.keyboard.press("b")  # a new cell below, as a user adds one
        cell = run_cell(page, source)
        error = cell.locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']")
        assert error.count() == 1, f"{source}: expected one error output"
        text = error.inner_text().strip()
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Fix:")), f"{source}: not one line:\n{text}"
        assert named in text and ("hint:" in text or "Fix:" in text), f"{source}: no problem and fix:\n{text}"
        assert "Traceback" not in text and 'File "' not in text, text
