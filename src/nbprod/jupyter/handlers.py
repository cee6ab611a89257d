"""REST handlers under ``/nbprod/api/``: each one calls one function of nbprod's public API.

GET ``models``, ``deployments``, ``audit``, ``jobs``; POST ``deployments/<name>/<action>`` with
``action`` one of ``promote`` (body ``{"version": "4"}`` optional), ``rollback``, ``split`` (body
``{"split": {"3": 50, "4": 50}}``) and ``undeploy``. The calls go to the modules behind
``nbprod.<verb>`` (the public ``nbprod`` package re-exports them; a front end does not import it).
Every handler requires Jupyter's
authentication (token or cookie) and every POST its XSRF check, both enforced by
``jupyter_server``'s :class:`APIHandler`. Answers are the results' ``to_dict()``.

A refused action is an :class:`~nbprod.errors.NbprodError`: it is answered as
``{"error", "problem", "fix"}`` with a 4xx status, the same problem and fix the magic prints.
The library calls block (a rollback waits until every worker serves the change), so they run in
a worker thread and the Jupyter server stays responsive meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbprod import audit, deployments, jobs, registry
from nbprod.errors import DeploymentError, ModelNotFoundError, NbprodError

__all__ = ["setup_handlers", "ACTIONS"]

AUDIT_LIMIT = 50
JOBS_LIMIT = 20
SLOW_S = 5.0
"""A call that takes longer is logged as a warning: jupyter_server logs a successful request at debug
level only, so a sidebar that waits a minute for its first data would otherwise leave no trace."""
ACTIONS = ("promote", "rollback", "split", "undeploy")


def _status_of(exc: NbprodError) -> int:
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, DeploymentError):
        return 409  # the deployment's current state refuses the change (e.g. a second rollback)
    return 422


class _Base(APIHandler):
    """Runs one API call in a thread and answers JSON; an NbprodError becomes ``{error, problem, fix}``."""

    async def _answer(self, call: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(call)
        except NbprodError as exc:
            self._error(_status_of(exc), type(exc).__name__, exc.problem, exc.fix)
            return
        finally:
            took = time.perf_counter() - started
            if took > SLOW_S:
                self.log.warning("nbprod: %s %s took %.1f s", self.request.method, self.request.path, took)
        self.finish(json.dumps(result, default=str))

    def _error(self, status: int, error: str, problem: str, fix: str | None) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": error, "problem": problem, "fix": fix}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (403 without auth or XSRF, 404, an unexpected exception) as the same
        JSON shape, never a traceback."""
        self.set_header("Content-Type", "application/json")
        reason = self._reason or "error"
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        fix = {403: "open JupyterLab with its token (the sidebar sends it and the XSRF cookie itself)",
               404: f"use GET /nbprod/api/models|deployments|audit|jobs or POST deployments/NAME/{'|'.join(ACTIONS)}",
               405: "GET reads, POST acts"}.get(status_code, "see the Jupyter server's log")
        self.finish(json.dumps({"error": f"http {status_code}", "problem": reason, "fix": fix}))


class ModelsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: registry.models().to_dict())


class DeploymentsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: deployments.status(health=True).to_dict())


class AuditHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        model = self.get_query_argument("model", None)
        await self._answer(lambda: audit.history(model, limit=AUDIT_LIMIT).to_dict())


class JobsHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: {"jobs": jobs.runs(limit=JOBS_LIMIT).to_dict()})


class ActionHandler(_Base):
    """POST deployments/<name>/<action>: the same call as ``%nbprod <action> <name>``, answered as its result."""

    @tornado.web.authenticated
    async def post(self, name: str, action: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(400, "bad request", "the request body is not a JSON object",
                        'send {} or e.g. {"split": {"3": 50, "4": 50}}')
            return
        calls: dict[str, Callable[[], Any]] = {
            "promote": lambda: deployments.promote(name, body.get("version")).to_dict(),
            "rollback": lambda: deployments.rollback(name).to_dict(),
            "split": lambda: deployments.set_split(name, body.get("split")).to_dict(),
            "undeploy": lambda: deployments.undeploy(name).to_dict(),
        }
        await self._answer(lambda: _without_token(calls[action]()))


def _without_token(result: dict) -> dict:
    """A deployment's bearer token never travels to the browser (only a deploy returns one anyway)."""
    return {**result, "token": None} if "token" in result else result


def setup_handlers(web_app: Any) -> None:
    base = url_path_join(web_app.settings["base_url"], "nbprod", "api")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "models"), ModelsHandler),
        (url_path_join(base, "deployments"), DeploymentsHandler),
        (url_path_join(base, "audit"), AuditHandler),
        (url_path_join(base, "jobs"), JobsHandler),
        (url_path_join(base, "deployments", r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})", f"({'|'.join(ACTIONS)})"),
         ActionHandler),
    ])
