"""The model service: the model server (nbprod.serving) wired to the registry, monitoring and deployments.

Serving is the bottom of the request path and knows nothing above it; this module, in the verbs
layer, is the one place that plugs the rest in, through ``create_app``'s keywords:

- the **model store** (:func:`model_store`): registered model URIs resolved and registered
  directories verified by nbprod.registry;
- the **prediction log** (nbprod.monitoring.predlog): its hooks and its writer's lifespan;
- ``POST /feedback`` (nbprod.monitoring.http);
- the **deployment events** of a deployment's workers (nbprod.deployments.events);
- the **alert loop** (nbprod.monitoring.loop), run in the process that runs ``nbprod serve`` —
  uvicorn's supervisor when ``workers > 1`` — so a server posts each alert once, never once per
  worker.

``nbprod.serve`` and ``nbprod serve`` (also the packaged image's ``CMD``) run :func:`serve`; with
``workers > 1`` every uvicorn worker builds its app with :func:`app_from_env`
(``nbprod.service:app_from_env``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import settings
from .monitoring.alerts import split_rules
from .monitoring.loop import PIPELINES_ENV, RULES_ENV, from_settings  # the supervisor has it (deployments.process)
from .monitoring.predlog import MAX_AGE_ENV, MAX_ROWS_ENV, deployment_of, retention, server_log, writer_lifespan
from .serving.server import PRELOAD as _SERVING_PRELOAD
from .serving.server import as_source, run, worker_settings
from .serving.spec import DbSource, DeploymentSpec, SpecSource

if TYPE_CHECKING:
    from .serving.app import ServingHooks
    from .serving.loader import ModelStore

# What a worker's app needs (the app, the registry's model store, the prediction log's writer, the
# deployment events, /feedback) is imported where the app is built, so importing this module stays
# light. With ``workers > 1`` uvicorn's supervisor — the process ``nbprod serve`` starts — imports it
# once (PRELOAD) and forks the workers from itself (nbprod.serving.server), so they answer sooner.

__all__ = ["serve", "check_models", "build_app", "app_from_env", "model_store", "load_version", "FACTORY"]

FACTORY = "nbprod.service:app_from_env"
#: What a worker of :func:`app_from_env` imports before it answers (the registry only on a start-up cache miss).
PRELOAD = _SERVING_PRELOAD + ("nbprod.serving.loader", "nbprod.monitoring.http", "nbprod.deployments.events")


def model_store() -> ModelStore:
    """What the server needs from nbprod's registry: a registered URI's local directory, and the
    sha256-verified load of a registered directory (None for a plain MLflow directory)."""
    from .serving.loader import NBPROD_DIR, ModelStore  # the app's side: not in uvicorn's supervisor (see above)

    def locate(uri: str) -> tuple[Path, str, str]:
        from .registry.versions import get_version, local_model_dir  # a deployment's routes are directories

        mv = get_version(uri)
        return Path(local_model_dir(mv)), mv.name, str(mv.version)

    def open_(path: Path) -> Any:
        from .registry.loading import load_model  # only on a start-up cache miss (scikit-learn, MLflow)

        return load_model(str(path), verify=True) if (path / NBPROD_DIR).is_dir() else None

    return ModelStore(locate=locate, open=open_)


def load_version(source: str, version: str | None = None, **options: Any):
    """:func:`nbprod.serving.loader.load_version` with the registry's model store: loads (and so
    verifies and caches) a model directory or registered URI the way a server will."""
    from .serving.loader import load_version as _load_version  # the app's side (see above)

    return _load_version(source, version, store=model_store(), **options)


def check_models(source: SpecSource | DeploymentSpec | str) -> None:
    """Raise unless every model of a fixed spec is there: a model directory holding an MLmodel file, or a
    registered URI that resolves. A server runs this before it starts, so ``nbprod serve --model`` with a
    typo is one clear error (exit 2) rather than each worker's start-up traceback. A deployment's
    versions were checked when they were deployed, and its spec may change while it runs: not here."""
    from .serving.loader import model_dir  # the app's side (see above)
    from .serving.spec import StaticSource

    source = as_source(source)
    if isinstance(source, StaticSource):
        store = model_store()
        for route in source.spec.routes:
            model_dir(route.uri, store)


def _deployment_hooks(source: SpecSource) -> ServingHooks | None:
    """A deployment's workers report applied generations and canary fallbacks (nbprod.deployments.events)."""
    from .deployments.events import serving_hooks  # in a worker: the app's side (see above)

    if isinstance(source, DbSource):
        return serving_hooks(source.name)
    return None


def build_app(source: SpecSource | DeploymentSpec | str, *, token: str | None = None, auth: bool = True,
              hooks: ServingHooks | None = None):
    """The server's app: ``create_app`` with the model store, the deployment events, the prediction
    log (unless ``NBPROD_PREDICTION_LOG=off``) and ``POST /feedback``."""
    from .monitoring.http import feedback_route  # the app's side: not in uvicorn's supervisor
    from .serving.app import create_app  # the app's side

    source = as_source(source)
    hooks = hooks or _deployment_hooks(source)
    log = server_log(source)
    lifespans = []
    if log is not None:
        hooks = log.hooks(hooks)
        lifespans.append(writer_lifespan(log))
    return create_app(source, token=token, auth=auth, hooks=hooks, routes=[feedback_route()], lifespan=lifespans,
                      models=model_store())


def app_from_env():
    """uvicorn factory for worker processes (``nbprod.service:app_from_env``)."""
    source, auth, token_sha256 = worker_settings()
    app = build_app(source, auth=auth)
    app.state.serving.token_sha256 = token_sha256
    return app


def _alert_loop(source: SpecSource, rules, webhook, interval, window, pipelines=None):
    """The server's background alert loop (nbprod.monitoring.loop), or None without rules."""
    # a deployment's recorded pipeline files were checked when they were deployed: one removed since
    # is reported when its rule fires, it does not keep the deployment from restarting
    rules, on_fire = _retraining(rules, pipelines, check_files=not isinstance(source, DbSource))
    return from_settings(deployment_of(source), rules=rules, webhook=webhook, interval=interval, window=window,
                         on_fire=on_fire)


# --- retraining from an alert: the alert loop starts pipelines (nbprod.pipelines.trigger) ------------


def _retraining(rules: Any, pipelines: Any, *, check_files: bool = True) -> tuple[Any, Any]:
    """``(rules, on_fire)`` for the loop: the on-alert pipelines (``pipelines``, else
    ``NBPROD_ALERT_PIPELINES``: a deployment's recorded ones) add their rules to the loop's, and its
    hook starts them once per incident. Without any: ``(rules, None)``, unchanged. A bad rule raises
    here, and a bad pipeline file given as ``pipelines`` (or, with ``check_files``, in the variable)."""
    if pipelines is None and not os.environ.get(PIPELINES_ENV):
        return rules, None  # the common case: a server's start-up does not import the pipelines
    from .pipelines.trigger import from_env, on_fire, parse  # only servers with on-alert pipelines load them

    pairs = parse(pipelines) if pipelines is not None else from_env(check_files=check_files)
    if not pairs:
        return rules, None
    if rules is None:
        rules = os.environ.get(RULES_ENV, "")
    base = split_rules(rules) if isinstance(rules, str) else list(rules)
    # the pairs are checked above (files read once): the hook only canonicalises them again
    return base + [rule for rule, _ in pairs], on_fire(pairs, check_files=False)


def _retention_env(max_age: Any, max_rows: Any) -> None:
    """Prediction-log retention for this server and its workers (read by predlog.server_log)."""
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
          prediction_log_max_rows: int | None = None, alert_pipelines: Any = None) -> None:
    """Serve until interrupted (blocking). ``token``: bearer token clients must send.

    ``alert_rules`` (a list, or text with rules separated by ``;``): a background loop checks them
    every ``alert_interval`` seconds (default 60) exactly as ``nbprod monitor --check`` does and
    posts firings to ``alert_webhook`` — one loop per server, whatever ``workers`` is; defaults
    come from ``NBPROD_ALERT_RULES`` / ``_WEBHOOK`` / ``_INTERVAL`` / ``_WINDOW``.
    ``prediction_log_max_age`` (``"30d"`` or seconds) and ``prediction_log_max_rows``: retention
    of the prediction log (default ``NBPROD_PREDICTION_LOG_MAX_AGE`` / ``_MAX_ROWS``, else 30 days
    and 1,000,000 rows per deployment).
    ``alert_pipelines``: ``[(rule, pipeline file), …]`` — a firing of the rule starts the pipeline
    (retraining from an alert, :mod:`nbprod.pipelines.trigger`); default ``NBPROD_ALERT_PIPELINES``.
    """
    source = as_source(source)
    check_models(source)
    _retention_env(prediction_log_max_age, prediction_log_max_rows)
    alerts = _alert_loop(source, alert_rules, alert_webhook, alert_interval, alert_window,
                         alert_pipelines)  # bad rules fail here
    try:  # the loop's thread starts once the workers are forked (never copy a running thread into a child)
        run(source, lambda: build_app(source, token=token, auth=auth, hooks=hooks), factory=FACTORY, host=host,
            port=port, workers=workers, token=token, auth=auth, log_level=log_level, preload=PRELOAD,
            on_started=alerts.start if alerts is not None else None)
    finally:
        if alerts is not None:
            alerts.stop(timeout=2.0)  # a check in progress never holds up the shutdown (daemon thread)
