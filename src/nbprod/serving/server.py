"""Run the app under uvicorn: ``nbprod serve`` and the packaged image's entry point.

With ``workers=1`` the app object is built here and handed to uvicorn. With ``workers > 1`` uvicorn
spawns processes that each import :func:`app_from_env`, so the spec source (and the token's hash,
never the token) travel in environment variables; each worker loads the models and polls the
state DB on its own, and the kernel balances connections between them.

The optional alert loop (``alert_rules=``, ``NBPROD_ALERT_RULES``) runs in this process only —
uvicorn's supervisor when ``workers > 1`` — so a server posts each alert once, never once per worker.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .spec import ENV_VAR, DeploymentSpec, SpecSource, StaticSource, hash_token, source_from_env, source_to_env

__all__ = ["serve", "app_from_env", "AUTH_ENV"]

AUTH_ENV = "NBPROD_SERVE_AUTH"  # JSON: {"auth": bool, "token_sha256": str | null}


def app_from_env():
    """uvicorn factory for worker processes (``nbprod.serving.server:app_from_env``)."""
    from .app import create_app

    auth = json.loads(os.environ.get(AUTH_ENV) or "{}")
    source = source_from_env()
    app = create_app(source, auth=bool(auth.get("auth", True)), hooks=_deployment_hooks(source))
    app.state.serving.token_sha256 = auth.get("token_sha256")
    return _with_prediction_log(app, source)


def _with_prediction_log(app, source: SpecSource):
    """Monitoring: log every answer of ``app`` to the state DB (nbprod.monitoring.predlog)."""
    from ..monitoring.predlog import attach

    attach(app, source)
    return app


def _deployment_hooks(source: SpecSource) -> Any:
    """A deployment's workers report applied generations and canary fallbacks (nbprod.deployments.events)."""
    from .spec import DbSource

    if isinstance(source, DbSource):
        from ..deployments.events import serving_hooks

        return serving_hooks(source.name)
    return None


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401

        return "httptools"
    except ImportError:
        return "h11"


def _alert_loop(source: SpecSource, rules, webhook, interval, window):
    """The server's background alert loop (nbprod.monitoring.loop), or None without rules."""
    from ..monitoring.loop import from_settings
    from ..monitoring.predlog import deployment_of

    return from_settings(deployment_of(source), rules=rules, webhook=webhook, interval=interval, window=window)


def _retention_env(max_age: Any, max_rows: Any) -> None:
    """Prediction-log retention for this server and its workers (read by predlog.attach)."""
    from ..config import settings
    from ..monitoring.predlog import MAX_AGE_ENV, MAX_ROWS_ENV, retention

    # the environment reaches uvicorn's worker processes; the override wins in this one
    if max_age is not None:
        os.environ[MAX_AGE_ENV] = str(max_age)
        settings.set(prediction_log_max_age=str(max_age))
    if max_rows is not None:
        os.environ[MAX_ROWS_ENV] = str(max_rows)
        settings.set(prediction_log_max_rows=max_rows)
    retention()  # a bad value fails here, before the server starts


def serve(source: SpecSource | DeploymentSpec | str, *, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 1, token: str | None = None, auth: bool = True, log_level: str = "warning",
          hooks: Any = None, alert_rules: Any = None, alert_webhook: str | None = None,
          alert_interval: Any = None, alert_window: Any = None, prediction_log_max_age: Any = None,
          prediction_log_max_rows: int | None = None) -> None:
    """Serve until interrupted (blocking). ``token``: bearer token clients must send.

    ``alert_rules`` (a list, or text with rules separated by ``;``): a background loop checks them
    every ``alert_interval`` seconds (default 60) exactly as ``nbprod monitor --check`` does and
    posts firings to ``alert_webhook`` — one loop per server, whatever ``workers`` is; defaults
    come from ``NBPROD_ALERT_RULES`` / ``_WEBHOOK`` / ``_INTERVAL`` / ``_WINDOW``.
    ``prediction_log_max_age`` (``"30d"`` or seconds) and ``prediction_log_max_rows``: retention
    of the prediction log (default ``NBPROD_PREDICTION_LOG_MAX_AGE`` / ``_MAX_ROWS``, else 30 days
    and 1,000,000 rows per deployment).
    """
    import uvicorn

    if isinstance(source, str):
        source = StaticSource.model(source)
    elif isinstance(source, DeploymentSpec):
        source = StaticSource(source)
    _retention_env(prediction_log_max_age, prediction_log_max_rows)
    alerts = _alert_loop(source, alert_rules, alert_webhook, alert_interval, alert_window)  # bad rules fail here
    common = dict(host=host, port=port, log_level=log_level, access_log=False, http=_http_impl(),
                  timeout_graceful_shutdown=5, lifespan="on")
    if alerts is not None:
        alerts.start()
    try:
        if workers <= 1:
            from .app import create_app

            hooks = hooks or _deployment_hooks(source)
            uvicorn.run(_with_prediction_log(create_app(source, token=token, auth=auth, hooks=hooks), source), **common)
            return
        os.environ[ENV_VAR] = source_to_env(source)
        os.environ[AUTH_ENV] = json.dumps({"auth": auth, "token_sha256": hash_token(token) if token else None})
        uvicorn.run("nbprod.serving.server:app_from_env", factory=True, workers=workers, **common)
    finally:
        if alerts is not None:
            alerts.stop(timeout=2.0)  # a check in progress never holds up the shutdown (daemon thread)
