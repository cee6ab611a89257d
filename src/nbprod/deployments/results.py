"""What the deploy verbs return: a :class:`Deployment` card and a :class:`StatusTable`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._display import Cell, Display, Facts, Table, View, text
from ..errors import DeploymentError, ServingError
from ..monitoring.loopsettings import starts_loop
from .prediction import PredictionResult

__all__ = ["Deployment", "DeploymentStatus", "StatusTable"]

_COLORS = {"running": "#1a7f37", "degraded": "#9a6700", "unhealthy": "#9a6700", "dead": "#cf222e",
           "stopped": "#57606a", "starting": "#0969da"}


def _routes_text(routes: list[dict]) -> str:
    parts = []
    for r in routes:
        share = "copy" if r["role"] == "shadow" else f"{r['weight']:g}%"
        parts.append(f"v{r['version']} {r['role']} {share}")
    return ", ".join(parts) or "–"


def _alerts_text(alerts: dict | None, *, short: bool = False) -> str:
    """The alert rules a deployment checks, how often, the pipelines a firing starts, and whether
    firings reach a webhook (never its URL)."""
    if not alerts:
        return "–" if short else "none"
    pipelines = alerts.get("on_alert") or {}
    checks = starts_loop(alerts)
    rules = "; ".join(alerts.get("rules") or []) or ("" if pipelines else "none")
    every = f"{alerts['interval_s']:g}s" if alerts.get("interval_s") is not None else None
    if short:
        retrain = "; ".join(f"{rule} → {Path(path).name}" for rule, path in pipelines.items())
        parts = ["; ".join(p for p in (rules, retrain) if p) + (f" every {every}" if every and checks else "")]
        if alerts.get("webhook") is False and checks:
            parts.append("no webhook")
        if alerts.get("pending"):
            parts.append("restart pending")
        return ", ".join(parts)
    when = f"every {every}, window {alerts.get('window')}"
    text = rules if not checks else f"{rules} ({when})" if rules else when
    if pipelines:
        text += "; on alert, start " + "; ".join(f"{path} when {rule} fires" for rule, path in pipelines.items())
    if checks and alerts.get("webhook") is True:
        text += "; firings posted to the webhook"
    elif checks and alerts.get("webhook") is False:
        text += "; no webhook: firings recorded, not posted (set NBPROD_ALERT_WEBHOOK where the server starts)"
    if alerts.get("pending"):
        text += "; the running server checks the settings it started with until it restarts"
    return text


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


@dataclass(repr=False)
class Deployment(Display):
    """A running deployment as a deploy / promote / rollback call left it.

    ``token`` is only set by the call that created the deployment: it is shown once and only its
    sha256 is stored. ``print()`` (and so the CLI) shows it; the repr and the HTML card, which a
    notebook saves with its outputs, show its last 4 characters only. ``last_change_s``: seconds
    from the call until every worker served the change (acknowledged by the workers themselves);
    ``ready_s``: start until ready.
    ``alerts``: the recorded alert rules (``rules``, ``interval_s``, ``window``; ``on_alert``: rule →
    pipeline file a firing starts, when there are any), whether the
    server has a webhook (``webhook``, never its URL) and whether new settings wait for a
    restart (``pending``); None without rules.
    """

    name: str
    url: str
    action: str
    routes: list[dict]
    pid: int | None
    workers: int
    generation: int
    token: str | None = None
    auth: bool = True
    ready_s: float | None = None
    last_change_s: float | None = None
    latency: dict | None = None
    warnings: list[str] = field(default_factory=list)
    alerts: dict | None = None
    ok: bool = True

    @property
    def versions(self) -> list[str]:
        return [r["version"] for r in self.routes]

    @property
    def weights(self) -> dict[str, float]:
        return {r["version"]: r["weight"] for r in self.routes if r["role"] != "shadow"}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers a client sends (the bearer token when this object holds it)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def predict(self, X, *, token: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """POST ``X`` (a DataFrame) to the deployment's ``/invocations`` as ``dataframe_split``.

        Returns the server's answer: ``predictions``, ``model_version``, ``prediction_ids`` and
        ``ood``. A refused request raises :class:`ServingError` with the server's own message.
        """
        token = token or self.token
        body = X.to_json(orient="split", index=False, date_format="iso")
        request = urllib.request.Request(
            f"{self.url}/invocations", data=f'{{"dataframe_split": {body}}}'.encode(), method="POST",
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return PredictionResult(json.loads(answer.read()), deployment=self.name)
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
            except ValueError:
                error = {"message": str(exc), "fix": None}
            raise ServingError(f"{self.name} answered {exc.code}: {error.get('message')}", error.get("fix"),
                               status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServingError(f"cannot reach deployment {self.name!r} at {self.url}: {exc}",
                               f"check it runs: nbprod status {self.name}", status=503) from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "action": self.action, "routes": self.routes,
                "versions": self.versions, "weights": self.weights, "pid": self.pid, "workers": self.workers,
                "generation": self.generation, "token": self.token, "auth": self.auth, "ready_s": self.ready_s,
                "last_change_s": self.last_change_s, "latency": self.latency, "warnings": list(self.warnings),
                "alerts": self.alerts}

    def _facts(self, reveal: bool = True) -> list[tuple[str, str]]:
        facts = [("url", self.url), ("traffic", _routes_text(self.routes)),
                 ("process", f"pid {self.pid}, {self.workers} worker(s), generation {self.generation}")]
        if not self.auth:
            facts.append(("auth", "none (--no-auth: local experiments only)"))
        elif self.token and reveal:
            facts.append(("token", f"{self.token}  (shown once: store it now)"))
        elif self.token:
            facts.append(("token", f"…{self.token[-4:]}  (hidden so that a saved notebook does not keep it: "
                                   f"read this result's .token, or print() it, and store it now)"))
        else:
            facts.append(("token", "unchanged (shown when the deployment was created)"))
        if self.ready_s is not None:
            facts.append(("ready in", _fmt_s(self.ready_s)))
        if self.last_change_s is not None:
            facts.append(("applied to every worker in", _fmt_s(self.last_change_s)))
        if self.latency:
            lat = self.latency
            budget = f", budget p95 {lat['budget_p95_ms']:g} ms" if lat.get("budget_p95_ms") is not None else ""
            facts.append(("latency gate", f"p50 {lat['p50_ms']:.2f} / p95 {lat['p95_ms']:.2f} / "
                                          f"p99 {lat['p99_ms']:.2f} ms{budget}"))
        if self.alerts:
            facts.append(("alerts", _alerts_text(self.alerts)))
        for w in self.warnings:
            facts.append(("warning", w))
        return facts

    def _view(self, reveal: bool = False) -> View:
        """The card with the token hidden: the repr and the HTML, what a notebook stores as the
        cell's output (and an echo in a terminal)."""
        return View(f"deployment {self.name}:", [Facts(self._facts(reveal), code=True)], card=True,
                    subtitle=self.action, tone="ok" if self.ok else "bad")

    def __str__(self) -> str:
        """The one exception to the display rule (``nbprod._display``): ``print()`` and the CLI show
        the token in full, once, so that it can be stored."""
        return text(self._view(reveal=True))


@dataclass(repr=False)
class DeploymentStatus(Display):
    """One deployment's recorded spec and live health."""

    name: str
    url: str | None
    state: str  # running | degraded | unhealthy | dead | stopped | starting
    pid: int | None
    workers: str
    routes: list[dict]
    generation: int
    served_generation: int | None = None
    detail: str = ""
    alerts: dict | None = None  # as on Deployment.alerts
    budget_p95_ms: float | None = None  # the latency budget of the last deploy that gave one
    previous_version: str | None = None  # where a rollback without a canary returns to (None: it is refused)
    health: dict | None = None  # status(health=True): HealthSummary.to_dict() (p95, error rate, drift, alert states)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "state": self.state, "pid": self.pid, "workers": self.workers,
                "routes": self.routes, "generation": self.generation, "served_generation": self.served_generation,
                "detail": self.detail, "alerts": self.alerts, "budget_p95_ms": self.budget_p95_ms,
                "previous_version": self.previous_version, "health": self.health}

    def _cells(self) -> list[str]:
        gen = str(self.generation) if self.served_generation in (None, self.generation) \
            else f"{self.served_generation} → {self.generation}"
        return [self.name, self.state, self.url or "–", str(self.pid or "–"), self.workers,
                _routes_text(self.routes), gen, _alerts_text(self.alerts, short=True), self.detail]

    def _view(self) -> View:
        """One row of ``nbprod status`` as a card (``status()["credit"]``)."""
        facts = [(k, v) for k, v in zip(_HEAD[2:], self._cells()[2:], strict=True) if v]
        return View(f"deployment {self.name}:", [Facts(facts, code=True)], card=True, subtitle=self.state,
                    tone=_TONES.get(self.state))


_HEAD = ["name", "state", "url", "pid", "workers", "traffic", "generation", "alerts", "detail"]
_TONES = {"running": "ok", "degraded": "warn", "unhealthy": "warn", "dead": "bad"}


@dataclass(repr=False)
class StatusTable(Display):
    """``nbprod status``: every recorded deployment with live health. ``ok`` is False if one is dead."""

    rows: list[DeploymentStatus]
    title: str = "deployments"

    @property
    def ok(self) -> bool:
        return all(r.state not in ("dead", "unhealthy", "degraded") for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> DeploymentStatus:
        if isinstance(key, str):
            for r in self.rows:
                if r.name == key:
                    return r

            raise DeploymentError(f"no deployment called {key!r} in this table",
                                  f"use one of: {', '.join(r.name for r in self.rows) or 'none'}")
        return self.rows[key]

    def to_dict(self) -> dict[str, Any]:
        return {"deployments": [r.to_dict() for r in self.rows], "ok": self.ok}

    def _view(self) -> View:
        if not self.rows:
            return View(f"{self.title}: none yet (`nbprod deploy MODEL --name NAME`; "
                        "`%nbprod deploy MODEL --name NAME` in a notebook)")
        rows = []
        for r in self.rows:
            cells: list[Any] = r._cells()
            cells[1] = Cell(cells[1], style=f"color:{_COLORS.get(r.state, 'inherit')};font-weight:bold")
            rows.append(cells)
        return View(f"{self.title}: {len(self.rows)}", [Table(_HEAD, rows, all_in_text=True)],
                    tone=None if self.ok else "bad")
