"""The ipywidgets of the notebook panels: the sidebar's information and buttons, in a cell's output.

:class:`ProductionView` reads ``status(health=True)`` (and ``models()``) and draws one
:class:`DeploymentCard` per deployment: a health dot, a traffic bar per version, p95 against its
budget, error rate, drift, firing alerts, and the buttons Promote, Roll back and Set split. A
button opens a confirmation under the card that says exactly what will change (the sentences of
the sidebar's dialogs); Set split has a version dropdown and a percent slider. Confirm calls
``promote`` / ``rollback`` / ``set_split`` of :mod:`nbprod.deployments.api`, the functions behind
``%nbprod promote|rollback`` and the sidebar's handlers, so the audit row is the same. A refusal
(an :class:`~nbprod.errors.NbprodError`) is shown at the top of the panel as its problem and fix;
after every action the panel refreshes.

The action runs in the button's callback, in the kernel: the cell shows "working…" until the
deployment serves the change (seconds), as the magic would. Everything the test or a user needs
is on the objects: ``view.cards["credit"].rollback.click()``, ``view.error.value``.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from .. import _format
from ..deployments.api import promote, rollback, set_split, status
from ..errors import NbprodError
from ..registry import models
from ..registry.uris import parse_model_uri

__all__ = ["ProductionView", "DeploymentCard"]

_STATE_COLORS = {"running": "#1a7f37", "degraded": "#9a6700", "unhealthy": "#9a6700", "dead": "#cf222e",
                 "stopped": "#57606a", "starting": "#0969da"}
_ROLE_COLORS = {"stable": "#1f6feb", "canary": "#bf8700", "split": "#8250df", "shadow": "#57606a"}
_BADGE = "display:inline-block;padding:0 6px;margin:0 2px;border-radius:8px;font-size:11px"
_ERROR_STYLE = "background:#ffebe9;border:1px solid #cf222e;border-radius:4px;padding:4px 8px;color:#82071e"


def _share(route: dict) -> str:
    return "copy" if route["role"] == "shadow" else f"{route['weight']:g}%"


def _routes_text(routes: list[dict]) -> str:
    return ", ".join(f"v{r['version']} {r['role']} {_share(r)}" for r in routes) or "–"


def _model_of(row: dict) -> str | None:
    for r in row["routes"]:
        try:
            return parse_model_uri(r["uri"])[0]
        except (NbprodError, KeyError, TypeError):
            continue
    return None


def _stable(row: dict) -> dict | None:
    return next((r for r in row["routes"] if r["role"] == "stable"), None)


def _classed(widget: Any, *classes: str) -> Any:
    for c in classes:
        widget.add_class(c)
    return widget


def _shown(widget: Any, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


# -- what a card says ------------------------------------------------------------------------------
def _figures_html(row: dict) -> str:
    h = row.get("health")
    if not h:
        return ""
    p95 = h["figures"].get("p95_ms") or {"value": None, "status": "–"}
    budget = row.get("budget_p95_ms")
    p95_text = f"{p95['value']:.1f} ms" if p95.get("value") is not None else p95.get("status", "–")
    over = budget is not None and p95.get("value") is not None and p95["value"] > budget
    p95_part = f"p95 {escape(p95_text)}" + (f" / {budget:g} ms budget" if budget is not None else "")
    if over:
        p95_part = f"<b style='color:#cf222e'>{p95_part}</b>"
    err = h["figures"].get("error_rate") or {"value": None, "status": "–"}
    err_text = _format.percent(err["value"]) if err.get("value") is not None else err.get("status", "–")
    drift = h.get("drift", "–")
    drift_part = ("<span style='" + _BADGE + ";background:#ffebe9;color:#82071e'>DRIFT</span>" if drift == "drift"
                  else f"drift: {escape(str(drift))}")
    parts = [p95_part, f"errors {escape(err_text)}", drift_part]
    firing = [a for a in h.get("alerts", []) if a.get("firing")]
    alerts = "".join(f"<span class='nbprod-w-alert' title='{escape(a.get('message') or '')}' "
                     f"style='{_BADGE};background:#ffebe9;color:#82071e'>firing: {escape(a['rule'])}</span>"
                     for a in firing)
    return (f"<div class='nbprod-w-figures' style='font-size:12px;margin-top:2px'>{' · '.join(parts)}</div>"
            + (f"<div style='margin-top:2px'>{alerts}</div>" if alerts else ""))


def card_html(row: dict) -> str:
    """The card's text part: state, traffic bar, routes, health figures (everything from the row)."""
    color = _STATE_COLORS.get(row["state"], "#000")
    detail = f" — {escape(row['detail'])}" if row.get("detail") else ""
    head = (f"<div class='nbprod-w-head'><span style='color:{color}' title='{escape(row['state'])}'>●</span> "
            f"<b>{escape(row['name'])}</b> <span class='nbprod-w-state' style='color:{color}'>{escape(row['state'])}"
            f"</span> <small style='color:#57606a'>{escape(row.get('url') or '')}{detail}</small></div>")
    segs = "".join(
        f"<div class='nbprod-w-seg' data-version='{escape(r['version'])}' style='flex-grow:{max(r['weight'], 0.0001)};"
        f"background:{_ROLE_COLORS.get(r['role'], '#57606a')};padding:0 4px;white-space:nowrap;overflow:hidden'>"
        f"v{escape(r['version'])} {r['weight']:g}%</div>"
        for r in row["routes"] if r["role"] != "shadow")
    bar = (f"<div class='nbprod-w-traffic' title='{escape(_routes_text(row['routes']))}' style='display:flex;"
           f"width:420px;height:18px;border-radius:3px;overflow:hidden;color:white;font-size:11px;"
           f"line-height:18px;margin:4px 0'>{segs}</div>")
    routes = f"<div class='nbprod-w-routes' style='font-size:12px'>{escape(_routes_text(row['routes']))}</div>"
    return head + bar + routes + _on_alert_html(row) + _figures_html(row)


def _on_alert_html(row: dict) -> str:
    """The retraining pipelines the deployment starts when a rule fires, as the sidebar shows them: the file's
    name on the card, its whole path on hover."""
    pairs = ((row.get("alerts") or {}).get("on_alert") or {}).items()
    return "".join(f"<div class='nbprod-w-on-alert' title='{escape(str(path))}' style='font-size:12px;"
                   f"color:#57606a'>on alert: {escape(rule)} → {escape(Path(path).name)}</div>"
                   for rule, path in pairs)


def promote_text(row: dict, target: dict) -> str:
    stable = _stable(row)
    text = (f"{row['name']}: v{target['version']} ({target['role']}, {_share(target)}) "
            "gets 100% of traffic and @champion; ")
    if stable:
        text += f"v{stable['version']} (stable, {_share(stable)}) stops serving and is kept for a roll back."
    return text


def rollback_text(row: dict) -> str:
    stable = _stable(row)
    others = [r for r in row["routes"] if r["role"] != "stable"]
    if others and stable:
        dropped = ", ".join(f"v{r['version']} ({r['role']}, {_share(r)})" for r in others)
        return f"{row['name']}: drop {dropped}; v{stable['version']} gets 100% of traffic."
    if row.get("previous_version") and stable:
        prev = row["previous_version"]
        return (f"{row['name']}: v{stable['version']} → v{prev} (100% of traffic); "
                f"@champion moves back to v{prev} if it points at v{stable['version']}.")
    return f"{row['name']}: no earlier version is recorded, so nbprod will refuse and say what to do instead."


def split_of(row: dict, version: str, percent: int) -> dict[str, float]:
    """The split the slider asks for: ``percent`` to ``version``, the rest to the stable version."""
    stable = _stable(row)
    if stable is None or stable["version"] == version:
        return {version: 100.0}
    return {stable["version"]: float(100 - percent), version: float(percent)}


def split_text(row: dict, split: dict[str, float]) -> str:
    now = {r["version"]: r["weight"] for r in row["routes"] if r["role"] != "shadow"}
    changes = [f"v{v} {now.get(v, 0):g}% → {w:g}%" for v, w in split.items()]
    changes += [f"v{v} {now[v]:g}% → removed" for v in now if v not in split]
    return f"{row['name']}: {', '.join(changes)}."


# -- one deployment ---------------------------------------------------------------------------------
class DeploymentCard:
    """One deployment: its figures and buttons, and the confirmation of the action asked for."""

    def __init__(self, row: dict, versions: list[str], act: Callable[[str, str, Callable[[], Any]], None]) -> None:
        self._act = act
        self.row = row
        self.versions = versions
        self._pending: tuple[str, Callable[[], Any]] | None = None
        self._what = ""  # the question open under the card ("Promote", "Roll back", "Set split" or none)
        self.info = _classed(w.HTML(), "nbprod-w-info")
        self.promote = w.Button(description="Promote", tooltip="send 100% to the candidate and set @champion")
        self.rollback = w.Button(description="Roll back", tooltip="all traffic back to the previous stable version")
        self.split = w.Button(description="Set split", tooltip="share the traffic between two versions")
        self.question = _classed(w.HTML(), "nbprod-w-question")
        self.candidate = w.Dropdown(description="version", options=[], layout=w.Layout(width="220px"))
        self.version = w.Dropdown(description="version", options=[], layout=w.Layout(width="220px"))
        self.percent = w.IntSlider(description="its share %", min=0, max=100, step=1, value=10,
                                   continuous_update=True, style={"description_width": "initial"})
        self.confirm = _classed(w.Button(description="Confirm", button_style="danger"), "nbprod-w-confirm")
        self.cancel = w.Button(description="Cancel")
        self.split_box = w.HBox([self.version, self.percent])
        self.confirm_box = _classed(w.VBox([self.question, self.candidate, self.split_box,
                                            w.HBox([self.cancel, self.confirm])]), "nbprod-w-confirm-box")
        self.widget = _classed(w.VBox([self.info, w.HBox([self.promote, self.rollback, self.split]),
                                       self.confirm_box],
                                      layout=w.Layout(border="1px solid #d0d7de", padding="4px 8px", margin="4px 0")),
                               "nbprod-w-card")
        self.widget.add_class(f"nbprod-w-card-{row['name']}")
        self.promote.on_click(lambda _: self.ask_promote())
        self.rollback.on_click(lambda _: self.ask_rollback())
        self.split.on_click(lambda _: self.ask_split())
        self.cancel.on_click(lambda _: self.close_question())
        self.confirm.on_click(lambda _: self.confirmed())
        self.candidate.observe(lambda _: self._promote_question(), names="value")
        self.version.observe(lambda _: self._split_question(), names="value")
        self.percent.observe(lambda _: self._split_question(), names="value")
        self.update(row, versions)

    @property
    def name(self) -> str:
        return self.row["name"]

    def update(self, row: dict, versions: list[str]) -> None:
        """Redraw from a fresh status row; a question left open is closed (it may no longer hold)."""
        self.row, self.versions = row, versions
        self.info.value = card_html(row)
        running = row["state"] != "stopped"
        self.promote.disabled = not running or not [r for r in row["routes"] if r["role"] != "stable"]
        self.rollback.disabled = not running
        self.split.disabled = not running
        self.close_question()

    # -- the questions --------------------------------------------------------------------------------
    def close_question(self) -> None:
        self._pending = None
        self._what = ""
        self.question.value = ""
        _shown(self.confirm_box, False)

    def _open(self, what: str, *, candidate: bool = False, split: bool = False) -> None:
        self._what = what
        self.confirm.description = f"Confirm {what.lower()}"
        _shown(self.candidate, candidate)
        _shown(self.split_box, split)
        _shown(self.confirm_box, True)

    def ask_promote(self) -> None:
        candidates = [r for r in self.row["routes"] if r["role"] != "stable"]
        if not candidates:
            return
        self.candidate.options = [(f"v{r['version']} ({r['role']}, {_share(r)})", r["version"]) for r in candidates]
        self.candidate.value = candidates[0]["version"]
        self._open("Promote", candidate=len(candidates) > 1)
        self._promote_question()

    def _promote_question(self) -> None:
        if self._what != "Promote":
            return
        target = next(r for r in self.row["routes"] if r["version"] == self.candidate.value and r["role"] != "stable")
        name, version = self.name, target["version"]
        self.question.value = f"<b>Promote v{escape(version)}?</b> {escape(promote_text(self.row, target))}"
        self._pending = ("Promote", lambda: promote(name, version=version))

    def ask_rollback(self) -> None:
        self._open("Roll back")
        name = self.name
        self.question.value = f"<b>Roll back {escape(name)}?</b> {escape(rollback_text(self.row))}"
        self._pending = ("Roll back", lambda: rollback(name))

    def ask_split(self) -> None:
        stable = _stable(self.row)
        others = [v for v in self.versions if stable is None or v != stable["version"]]
        candidates = [r["version"] for r in self.row["routes"] if r["role"] != "stable"]
        options = list(dict.fromkeys(candidates + others))
        if not options:
            self._open("Set split")
            self.question.value = (f"<b>Set the split of {escape(self.name)}?</b> its model has no other registered "
                                   "version to share the traffic with: register one first.")
            self._pending = None
            _shown(self.split_box, False)
            return
        self._what = "Set split"
        self.version.options = [(f"v{v}", v) for v in options]
        self.version.value = options[0]
        weight = next((r["weight"] for r in self.row["routes"] if r["version"] == options[0]), 0)
        self.percent.value = int(round(weight)) or 10
        self._open("Set split", split=True)
        self._split_question()

    def _split_question(self) -> None:
        if self._what != "Set split" or self.version.value is None:
            return
        split = split_of(self.row, self.version.value, self.percent.value)
        name = self.name
        self.question.value = (f"<b>Set the split of {escape(name)}?</b> "
                               f"{escape(split_text(self.row, split))}")
        self._pending = ("Set split", lambda: set_split(name, split))

    def confirmed(self) -> None:
        pending = self._pending
        self.close_question()
        if pending is not None:
            self._act(pending[0], self.name, pending[1])


# -- the panel --------------------------------------------------------------------------------------
class ProductionView:
    """Deployments (all, one by name, or those serving one model) with their cards; the models
    section when ``show_models``. ``refresh()`` re-reads; every action ends with one."""

    def __init__(self, *, deployment: str | None = None, model: str | None = None, show_models: bool = False) -> None:
        self.deployment = deployment
        self.model = parse_model_uri(model)[0] if model else None  # models:/credit-risk or credit-risk
        self.show_models = show_models
        self.cards: dict[str, DeploymentCard] = {}
        self.rows: list[dict] = []
        self.versions: list[dict] = []
        self.refreshes = 0
        self.header = _classed(w.HTML(), "nbprod-w-header")
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="110px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.error = _classed(w.HTML(), "nbprod-w-error")
        self.message = _classed(w.HTML(), "nbprod-w-message")
        self.models_html = _classed(w.HTML(), "nbprod-w-models")
        self.cards_box = _classed(w.VBox(), "nbprod-w-deployments")
        self.working = _classed(w.HTML(), "nbprod-w-working")
        parts = [w.HBox([self.header, self.refresh_button]), self.error, self.message, self.working]
        if show_models:
            parts += [self.models_html, w.HTML("<b>Deployments</b>")]
        self.widget = _classed(w.VBox([*parts, self.cards_box]), "nbprod-w-panel")
        _shown(self.error, False)
        self.refresh()

    # -- data ------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the deployments (with health) and the registered versions, and redraw."""
        problems = []
        try:
            table = models()
            self.versions = [v.to_dict() for v in table]
        except Exception as exc:  # noqa: BLE001 - one section failing leaves the other on screen
            problems.append(f"models: {_problem(exc)}")
        try:
            rows = status(self.deployment, health=True).to_dict()["deployments"]
            if self.model is not None:
                rows = [r for r in rows if _model_of(r) == self.model]
            self.rows = rows
        except Exception as exc:  # noqa: BLE001
            problems.append(f"deployments: {_problem(exc)}")
        self.refreshes += 1
        self._draw(problems)

    def _draw(self, problems: list[str]) -> None:
        what = "models and deployments" if self.show_models else "deployments"
        stamp = time.strftime("%H:%M:%S")
        failed = "".join(f"<br><span style='color:#cf222e'>{escape(p)}</span>" for p in problems)
        self.header.value = f"<b>nbprod {what}</b> <small style='color:#57606a'>refreshed {stamp}</small>{failed}"
        if self.show_models:
            self.models_html.value = self._models_html()
        names = [r["name"] for r in self.rows]
        for gone in [n for n in self.cards if n not in names]:
            self.cards.pop(gone).widget.close()
        for row in self.rows:
            versions = self._versions_of(_model_of(row))
            if row["name"] in self.cards:
                self.cards[row["name"]].update(row, versions)
            else:
                self.cards[row["name"]] = DeploymentCard(row, versions, self.act)
        children = [self.cards[n].widget for n in names]
        if not children:
            where = f" of {self.model}" if self.model else ""
            children = [w.HTML(f"<i>No deployments{escape(where)} yet: "
                               "<code>%nbprod deploy MODEL@champion --name NAME</code></i>")]
        self.cards_box.children = children

    def _versions_of(self, model: str | None) -> list[str]:
        return [v["version"] for v in self.versions if v["name"] == model]

    def _models_html(self) -> str:
        shown = [v for v in self.versions if self.model is None or v["name"] == self.model]
        if not shown:
            return "<p><i>No registered models yet: <code>%nbprod register model --name NAME --data X y</code></i></p>"
        serving: dict[tuple[str, str], list[str]] = {}
        for row in self.rows:
            model = _model_of(row)
            for r in row["routes"]:
                serving.setdefault((model or "", r["version"]), []).append(f"{row['name']} {_share(r)}")
        html, current = "<b>Models</b>", None
        for v in shown:
            if v["name"] != current:
                if current is not None:
                    html += "</div>"
                current = v["name"]
                html += (f"<div class='nbprod-w-model' data-name='{escape(current)}' style='margin:4px 0'>"
                         f"<b>{escape(current)}</b>")
            badges = "".join(f"<span class='nbprod-w-alias' style='{_BADGE};background:#ddf4ff;color:#0969da'>"
                             f"@{escape(a)}</span>" for a in v["aliases"])
            metrics = " · ".join(f"{escape(k)} {_format.score(m)}" for k, m in v["key_metrics"].items())
            where = ", ".join(serving.get((v["name"], v["version"]), []))
            created = (v.get("created_at") or "")[:16].replace("T", " ")
            html += (f"<div class='nbprod-w-version' data-version='{escape(v['version'])}' style='font-size:12px;"
                     f"margin-left:12px'>v{escape(v['version'])} {badges} {metrics}"
                     f"{' — serving: ' + escape(where) if where else ''}"
                     f" <span style='color:#57606a'>{escape(created)} {escape(v.get('created_by') or '')}</span></div>")
        return html + "</div>"

    # -- actions ---------------------------------------------------------------------------------------
    def act(self, label: str, name: str, call: Callable[[], Any]) -> None:
        """Run a confirmed action; show its outcome (or the refusal's problem and fix); refresh."""
        self.error.value, self.message.value = "", ""
        _shown(self.error, False)
        self.working.value = f"<i>{escape(label)} {escape(name)}: working…</i>"
        try:
            result = call()
        except NbprodError as exc:
            self.show_error(f"{label} {name} refused", exc.problem, exc.fix)
        except Exception as exc:  # noqa: BLE001 - a widget callback's exception would only reach the log
            self.show_error(f"{label} {name} failed", f"{type(exc).__name__}: {exc}", None)
        else:
            routes = getattr(result, "routes", None)
            done = f": now {_routes_text(routes)}" if routes else ""
            self.message.value = f"<span style='color:#1a7f37'>{escape(label)} {escape(name)} done{escape(done)}</span>"
        finally:
            self.working.value = ""
            self.refresh()

    def show_error(self, head: str, problem: str, fix: str | None) -> None:
        fix_html = f"<div class='nbprod-w-fix'>Fix: {escape(fix)}</div>" if fix else ""
        self.error.value = (f"<div style='{_ERROR_STYLE}'><b>{escape(head)}</b>"
                            f"<div class='nbprod-w-problem'>{escape(problem)}</div>{fix_html}</div>")
        _shown(self.error, True)

    def close(self) -> None:
        for card in self.cards.values():
            card.widget.close()
        self.widget.close()


def _problem(exc: Exception) -> str:
    if isinstance(exc, NbprodError):
        return exc.problem + (f" (fix: {exc.fix})" if exc.fix else "")
    return f"{type(exc).__name__}: {exc}"
