"""Runs inside the server: tells the deploy side what each worker did.

``serving_hooks(name)`` returns the :class:`~nbprod.serving.app.ServingHooks` a server started with
``--deployment NAME`` uses. Hooks run on the event loop and must be quick, so every state-DB write
goes through one background thread:

- on start, the worker registers its pid (``deployment_workers``) and, when it is a worker of the
  deployment's server process (``--workers`` > 1), arranges to die with it (:func:`die_with_parent`):
  workers left serving after their master was killed would be out of every command's reach;
- ``spec_applied`` → the worker acknowledges the generation, which is how ``deploy``/``promote``
  know that every worker serves a change, and how long it took;
- ``canary_failed`` / ``version_load_failed`` / ``shadow_failed`` (the server already fell back to
  the stable version and counted it in ``/metrics``) → one ``deploy.fallback`` audit row per
  version and kind per minute (the rest are counted in the next row's ``suppressed``).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from .. import audit
from ..serving.app import ServingHooks
from ..serving.spec import load_spec
from . import process, store

__all__ = ["serving_hooks", "die_with_parent", "FAILURE_EVENTS"]

FAILURE_EVENTS = ("canary_failed", "version_load_failed", "shadow_failed", "spec_rejected")
_AUDIT_EVERY_S = 60.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_ORPHAN_POLL_S = 0.5
_ORPHAN_GRACE_S = 10.0


def die_with_parent(name: str) -> bool:
    """In a worker of deployment ``name``'s server: exit when that server process dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` — the kernel sends SIGTERM the moment the parent
    dies, and uvicorn's worker shuts down gracefully (in-flight requests finish). Everywhere, as a
    fallback, a thread polls the parent pid: reparented means orphaned, so SIGTERM, and a hard exit
    if the graceful shutdown has not ended after ``_ORPHAN_GRACE_S``. A single-process server (its
    parent is whoever started it, not a server of ``name``) is left alone. True if armed.
    """
    parent = os.getppid()
    if not process.is_server_of(parent, name):
        return False
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the polling thread below still works
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_ORPHAN_POLL_S)
        print(f"nbprod deployments: worker {os.getpid()} lost its server process {parent}; exiting",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(_ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name=f"nbprod-orphan-watch-{name}", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
    return True


class _Reporter:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.last: dict[tuple[str, str], float] = {}
        self.suppressed: dict[tuple[str, str], int] = {}
        threading.Thread(target=self._run, name=f"nbprod-deploy-events-{name}", daemon=True).start()
        self.queue.put(("register", {}))
        die_with_parent(name)

    def on_event(self, kind: str, info: dict) -> None:
        if kind == "spec_applied":
            self.queue.put(("ack", info))
        elif kind in FAILURE_EVENTS:
            key = (kind, str(info.get("version") or info.get("generation")))
            now = time.monotonic()
            if now - self.last.get(key, -1e9) < _AUDIT_EVERY_S:
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
                return
            self.last[key] = now
            self.queue.put(("fallback", {"kind": kind, **info, "suppressed": self.suppressed.pop(key, 0)}))

    def _run(self) -> None:
        while True:
            what, info = self.queue.get()
            for attempt in range(3):
                try:
                    if what == "register":
                        store.register_worker(self.name, self.pid, os.getppid())
                    elif what == "ack":
                        store.ack_generation(self.name, self.pid, int(info["generation"]))
                    else:
                        self._audit(info)
                    break
                except Exception as exc:  # noqa: BLE001 - a reporting failure never affects serving
                    if attempt == 2:  # into the server log
                        print(f"nbprod deployments: worker {self.pid} could not record {what}: "
                              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    time.sleep(0.2 * (attempt + 1))

    def _audit(self, info: dict) -> None:
        uri = info.get("uri")
        if not uri:
            try:
                spec = load_spec(self.name)
                uri = next((r.uri for r in spec.routes if r.version == str(info.get("version"))), None)
            except Exception:  # noqa: BLE001
                uri = None
        details: dict[str, Any] = {"deployment": self.name, "pid": self.pid,
                                   "fallback_to": "stable", **{k: _plain(v) for k, v in info.items()}}
        audit.record("deploy.fallback", model_uri=uri, details=details)


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


_reporters: dict[tuple[str, int], _Reporter] = {}


def serving_hooks(name: str):
    """The hooks of a worker serving deployment ``name`` (one reporter per process)."""
    key = (name, os.getpid())
    rep = _reporters.get(key)
    if rep is None:
        rep = _reporters[key] = _Reporter(name)
    return ServingHooks(on_event=rep.on_event)
