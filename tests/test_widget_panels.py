"""The notebook panels of ``%nbprod status`` / ``%nbprod models``: their buttons clicked in-process.

A real registry (credit-risk v1 @champion, v2 @challenger) and a real detached model server
("credit": v1 stable, v2 a 20 % canary). The tests click the ipywidgets buttons the way a
front end's click arrives in the kernel (``Button.click()``), confirm, and check through nbprod's
API that the traffic moved and the audit log has the row — the same row the magic leaves.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _routes(name: str = "credit") -> list[tuple[str, float]]:
    from nbprod.deployments.api import status

    return [(r["version"], r["weight"]) for r in status(name)[name].routes]


def _actions(model: str = "credit-risk") -> list[str]:
    from nbprod import audit

    return [e.action for e in audit.history(model).entries]


@pytest.fixture
def ip(credit_shell):
    """credit_shell (credit-risk v1/v2, nbprod loaded) with "credit" serving v1 and v2 as a 20 % canary."""
    from nbprod.deployments.api import deploy

    deploy("credit-risk@champion", name="credit", server={"auth": False})
    deploy("credit-risk@challenger", name="credit", canary=20)
    return credit_shell


def test_status_panel_rolls_back_after_confirmation_and_shows_a_refusal(ip):
    from nbprod.deployments.results import StatusTable
    from nbprod.widgets import StatusPanel

    panel = ip.run_line_magic("nbprod", "status")
    assert isinstance(panel, StatusPanel) and isinstance(panel.result, StatusTable)
    # outside a kernel (a terminal) the result shows as the table it always was
    assert panel._repr_mimebundle_() is None
    assert str(panel) == str(panel.result) and repr(panel) == repr(panel.result) and "credit" in str(panel)
    assert panel["credit"].state == "running" and len(panel) == 1 and panel.to_dict() == panel.result.to_dict()

    view = panel.view
    card = view.cards["credit"]
    assert "v1 80%" in card.info.value and "v2 20%" in card.info.value and "running" in card.info.value
    assert not card.promote.disabled and not card.rollback.disabled

    # Roll back asks first: nothing changes until Confirm; Cancel closes the question
    card.rollback.click()
    assert "drop v2 (canary, 20%); v1 gets 100% of traffic" in card.question.value
    assert card.confirm_box.layout.display is None and card.confirm.description == "Confirm roll back"
    card.cancel.click()
    assert card.confirm_box.layout.display == "none" and _routes() == [("1", 80.0), ("2", 20.0)]
    assert "rollback" not in _actions()

    card.rollback.click()
    card.confirm.click()
    assert _routes() == [("1", 100.0)]
    assert _actions()[0] == "rollback"  # the row %nbprod rollback leaves, newest first
    assert "Roll back credit done" in view.message.value and view.error.layout.display == "none"
    assert "v1 100%" in card.info.value and "v2" not in card.info.value  # refreshed after the action
    assert card.promote.disabled  # nothing left to promote

    # a second rollback has nothing to return to: the panel shows nbprod's problem and fix
    card.rollback.click()
    assert "no earlier version is recorded" in card.question.value
    card.confirm.click()
    assert view.error.layout.display is None
    assert "Roll back credit refused" in view.error.value
    assert "has no previous version to roll back to" in view.error.value
    assert "Fix: rollback returns to the version served before the last promote or switch" in view.error.value
    assert _routes() == [("1", 100.0)]


def test_split_slider_then_promote(ip):
    from nbprod import registry

    view = ip.run_line_magic("nbprod", "status credit").view
    card = view.cards["credit"]
    card.split.click()
    assert card.version.value == "2" and card.percent.value == 20  # the canary and its current share
    card.percent.value = 50
    assert "credit: v1 80% → 50%, v2 20% → 50%." in card.question.value
    card.confirm.click()
    assert _routes() == [("1", 50.0), ("2", 50.0)], view.error.value
    assert "v1 50%" in card.info.value and "v2 50%" in card.info.value

    card.promote.click()
    assert "v2 (canary, 50%) gets 100% of traffic and @champion" in card.question.value, card.question.value
    card.confirm.click()
    assert _routes() == [("2", 100.0)], view.error.value
    assert "promote" in _actions()[:3]
    assert registry.get_version("credit-risk@champion").version == "2"
    assert "Promote credit done" in view.message.value


def test_models_panel_shows_versions_aliases_and_the_deployments_buttons(ip, monkeypatch):
    from nbprod.registry.versions import ModelTable
    from nbprod.widgets import ModelsPanel

    panel = ip.run_line_magic("nbprod", "models credit-risk")
    assert isinstance(panel, ModelsPanel) and isinstance(panel.result, ModelTable)
    assert str(panel) == str(panel.result) and "@champion" in str(panel)
    html = panel.view.models_html.value
    assert "@champion" in html and "@challenger" in html and "roc_auc 0.8100" in html
    assert "serving: credit 80%" in html and "serving: credit 20%" in html
    assert list(panel.view.cards) == ["credit"]

    # in a kernel the panel shows the widget, with the table's text and HTML for viewers without widgets
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"] == str(panel.result) and "@champion" in bundle["text/html"]

    # the CLI keeps the plain table
    from nbprod.commands import Context, parse

    command, args = parse("nbprod", ["models"])
    assert isinstance(command.run(args, Context()), ModelTable)
