"""The model server's background alert loop: ``nbprod monitor --check``, every ``interval`` seconds.

Why it is built this way:

- **One code path.** Each tick calls :func:`nbprod.monitoring.alerts.check_deployment` — what
  ``nbprod monitor NAME --check`` runs — so a rule fires, deduplicates and resolves the same way
  whether cron or the server evaluates it, and both can run at once (the dedup state is per
  incident in the state DB, claimed under a lock before the webhook is posted).
- **One loop per server, not per worker.** :func:`nbprod.service.serve` starts it in the
  process that runs ``nbprod serve`` (the one recorded as the deployment's pid); with
  ``--workers N`` that is uvicorn's supervisor, which serves no request, and the workers never
  start one.
- **Never in the way of a prediction.** The loop is a daemon thread that only reads the log and
  posts to the webhook; a failing check (DB away, webhook down) is logged on the ``nbprod.alerts``
  logger, counted in :attr:`AlertLoop.failures` and retried at the next tick. A model's server with
  no logged prediction yet has nothing to check: that is said once, at INFO, and is no failure.
  It stops when the server stops (:meth:`AlertLoop.stop`, also at interpreter exit).

Settings, keyword first, then the server's environment: ``NBPROD_ALERT_RULES`` (rules separated
by ``;`` or new lines), ``NBPROD_ALERT_WEBHOOK`` (the same variable ``nbprod monitor --check``
reads), ``NBPROD_ALERT_INTERVAL`` (seconds or a duration, default 60 s) and
``NBPROD_ALERT_WINDOW`` (the monitor window, default 1h). No rules: no loop.
``NBPROD_ALERT_PIPELINES`` (JSON ``[[rule, pipeline file], …]``) names the rules whose firing starts
a pipeline: :mod:`nbprod.service` reads it and hands the loop its ``on_fire`` hook
(:mod:`nbprod.pipelines.trigger`); the name is beside the others, because a deployment's
server gets it from :mod:`nbprod.deployments.process` like the rest of its recorded settings.
The names and :func:`~.loopsettings.starts_loop` (do recorded settings start a loop) live in the
light :mod:`.loopsettings`, re-exported here.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any, Iterable

from ..errors import ConfigError, NbprodError, RuleError
from .alerts import check_deployment, parse_rules, split_rules
from .loopsettings import (
    DEFAULT_INTERVAL_S,
    INTERVAL_ENV,
    PIPELINES_ENV,
    RULES_ENV,
    WEBHOOK_ENV,
    WINDOW_ENV,
    starts_loop,
)

__all__ = ["AlertLoop", "from_settings", "check_webhook", "check_interval", "starts_loop", "RULES_ENV", "WEBHOOK_ENV",
           "INTERVAL_ENV", "WINDOW_ENV", "PIPELINES_ENV", "DEFAULT_INTERVAL_S"]

logger = logging.getLogger("nbprod.alerts")

#: The shortest time between two checks. Each check reads the window's log from the state DB, so a
#: smaller interval only turns the loop into a busy reader beside the server it watches.
MIN_INTERVAL_S = 0.1


def check_interval(value: Any) -> float:
    """``value`` (seconds or a duration such as ``"1m"``) as seconds, at least :data:`MIN_INTERVAL_S`."""
    from .windows import parse_duration

    seconds = parse_duration(value)
    if seconds < MIN_INTERVAL_S:
        raise ConfigError(f"the alert interval {value!r} is shorter than {MIN_INTERVAL_S:g} s",
                          "check at most ten times a second, e.g. --alert-interval 60 (the default) or 10s")
    return seconds


def check_webhook(url: Any, where: str = "the alert webhook") -> str:
    """``url`` if it is an http(s) URL, else a ConfigError naming ``where`` it came from (not the
    URL itself: a webhook URL is a credential)."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{where} is not an http(s) URL",
                          "pass the Slack-compatible webhook URL, e.g. https://hooks.slack.com/services/…")
    return url


class AlertLoop:
    """Check ``rules`` on ``deployment`` every ``interval`` seconds on a daemon thread.

    ``run_once()`` is one tick (what the thread calls); ``checks``, ``failures``, ``last_error``
    and ``last_check`` (the latest :class:`~nbprod.monitoring.alerts.AlertCheck`) say what it did.
    """

    def __init__(self, deployment: str, rules: Iterable[str] | str, *, webhook: str | None = None,
                 interval: Any = DEFAULT_INTERVAL_S, window: Any = "1h", min_rows: int = 30,
                 on_fire: Any = None) -> None:
        from .windows import parse_duration

        self.on_fire = on_fire  # alerts.check's hook for a new incident (the server wires retraining in)
        self.deployment = deployment
        self.rules = parse_rules(rules)
        if not self.rules:
            raise RuleError("the alert loop has no rules",
                            f"pass rules, e.g. {RULES_ENV}='p95_ms > 100; error_rate > 1%'")
        self.webhook = None if webhook is None else check_webhook(webhook)
        self.interval = check_interval(interval)
        self.window = window
        parse_duration(window)
        self.min_rows = int(min_rows)
        self.checks = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_check = None
        self._said_waiting = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one tick ---------------------------------------------------------------------------------
    def run_once(self):
        """One check of every rule (never raises): the AlertCheck, or None when the check failed or
        there is nothing to check yet."""
        try:
            if not self.checks and self._waiting():
                return None
            report = check_deployment(self.deployment, self.rules, webhook=self.webhook, window=self.window,
                                      min_rows=self.min_rows, on_fire=self.on_fire)
        except Exception as exc:  # noqa: BLE001 - logged and retried at the next tick
            text = exc.problem if isinstance(exc, NbprodError) else f"{type(exc).__name__}: {exc}"
            self.failures += 1
            if text != self.last_error:  # the same failure every tick is logged once
                logger.warning("nbprod alert check of %r failed (retried every %gs): %s", self.deployment,
                               self.interval, text)
            self.last_error = text
            return None
        self.checks += 1
        self.last_error = None
        self.last_check = report.alerts
        for out in report.alerts.outcomes:
            if out.notification and out.notification.startswith("failed"):
                logger.warning("nbprod alert %r on %r: webhook %s (retried at the next check)", out.rule,
                               self.deployment, out.notification)
            elif out.notification in ("sent", "resolved sent"):
                logger.info("nbprod alert %r on %r: %s", out.rule, self.deployment, out.notification)
        return report.alerts

    def _waiting(self) -> bool:
        """Is this a server of a model (not a deployment) before its first logged prediction? Then there is
        nothing to check yet, which is not a failure: said once, at INFO."""
        from .monitor import known

        if known(self.deployment):
            return False
        if not self._said_waiting:
            logger.info("nbprod alert checks of %r start with its first logged prediction", self.deployment)
            self._said_waiting = True
        return True

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> "AlertLoop":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"nbprod-alerts-{self.deployment}", daemon=True)
            self._thread.start()
            atexit.register(self.stop)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop (idempotent); a check in progress finishes first, up to ``timeout``."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def to_dict(self) -> dict:
        return {"deployment": self.deployment, "rules": [r.text for r in self.rules], "interval_s": self.interval,
                "window": self.window, "webhook": self.webhook is not None, "running": self.running,
                "checks": self.checks, "failures": self.failures, "last_error": self.last_error}

    def __repr__(self) -> str:
        return (f"<AlertLoop {self.deployment} rules={[r.text for r in self.rules]} every {self.interval:g}s "
                f"checks={self.checks} failures={self.failures}>")


def from_settings(deployment: str, *, rules: Iterable[str] | str | None = None, webhook: str | None = None,
                  interval: Any = None, window: Any = None, on_fire: Any = None) -> AlertLoop | None:
    """The server's loop from keywords, else ``NBPROD_ALERT_*`` (module docstring); None without rules.

    Bad settings raise here (RuleError, ConfigError), before the server starts.
    """
    if rules is None:
        rules = split_rules(os.environ.get(RULES_ENV, ""))
    elif isinstance(rules, str):
        rules = split_rules(rules)
    rules = list(rules)
    if not rules:
        if interval is not None or webhook is not None:
            raise RuleError("an alert webhook or interval was given without alert rules",
                            f"add rules (--alert-rule 'p95_ms > 100' or {RULES_ENV}), or leave the alert options out")
        return None
    webhook = webhook or os.environ.get(WEBHOOK_ENV) or None
    if interval is None:
        interval = os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_S
    window = window or os.environ.get(WINDOW_ENV) or "1h"
    return AlertLoop(deployment, rules, webhook=webhook, interval=interval, window=window, on_fire=on_fire)
