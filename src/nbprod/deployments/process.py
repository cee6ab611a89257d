"""Server processes on this machine: start detached, probe, find workers, stop gracefully.

Why detached (``start_new_session=True``): a deployment must outlive the notebook kernel that
started it — a kernel restart kills the kernel's process group, not a server in its own session.
Why the ``/proc`` checks: a pid in the state DB may be stale (the machine rebooted, the pid was
reused); before signalling a pid we check that its command line is this deployment's server.
All HTTP here goes to 127.0.0.1 with short timeouts.

Alert settings reach a deployment's server through its environment (``NBPROD_ALERT_*``, read by
:mod:`nbprod.monitoring.loop`, and ``NBPROD_ALERT_PIPELINES``, read by :mod:`nbprod.service`): the
rules, interval, window and on-alert pipelines recorded for the deployment, never those of
whoever starts it, and the webhook URL — a credential, so it is never written to the state DB —
only in the child's environment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..config import settings
from ..errors import DeploymentError
from ..monitoring.loopsettings import INTERVAL_ENV, PIPELINES_ENV, RULES_ENV, WEBHOOK_ENV, WINDOW_ENV, starts_loop

__all__ = ["free_port", "start_server", "start_side_server", "alive", "is_server_of", "children", "stop",
           "http_get", "wait_ready", "log_path", "port_free", "identity", "same_process", "group_members"]

_popen: dict[int, subprocess.Popen] = {}  # servers started by this process, reaped when they exit


def log_path(name: str) -> Path:
    d = Path(settings.home_path) / "deployments" / name
    d.mkdir(parents=True, exist_ok=True)
    return d / "server.log"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _child_env(alerts: dict | None = None, webhook: str | None = None) -> dict:
    """The environment of a server started from here. ``alerts``: the deployment's recorded
    ``{"rules", "interval_s", "window", "on_alert"}`` (None: no alert loop); ``webhook``: where it posts."""
    env = dict(os.environ)
    env.pop("NBPROD_TOKEN", None)  # the spec's token hash is the only credential
    # a deployment checks its own recorded rules and starts its own recorded on-alert pipelines, never
    # those of the shell that deploys or restores it; a gate server none
    for var in (RULES_ENV, WEBHOOK_ENV, INTERVAL_ENV, WINDOW_ENV, PIPELINES_ENV):
        env.pop(var, None)
    if starts_loop(alerts):
        env[RULES_ENV] = "; ".join(alerts.get("rules") or [])
        env[INTERVAL_ENV] = repr(float(alerts["interval_s"]))
        env[WINDOW_ENV] = str(alerts["window"])
        if alerts.get("on_alert"):  # read by nbprod.service: the loop starts them (nbprod.pipelines.trigger)
            env[PIPELINES_ENV] = json.dumps(sorted(alerts["on_alert"].items()))
        if webhook:
            env[WEBHOOK_ENV] = webhook
    env["NBPROD_HOME"] = str(settings.home)
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["NBPROD_DB_URL"] = settings.db_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_server(name: str, port: int, *, workers: int = 1, auth: bool = True, host: str = "127.0.0.1",
                 alerts: dict | None = None, webhook: str | None = None) -> int:
    """Start ``nbprod serve --deployment name`` detached; return its pid. ``alerts`` / ``webhook``:
    the server's background alert loop (see :func:`_child_env`)."""
    cmd = [sys.executable, "-m", "nbprod.cli", "serve", "--deployment", name, "--host", host, "--port", str(port),
           "--workers", str(int(workers))]
    if not auth:
        cmd.append("--no-auth")
    log = open(log_path(name), "ab")  # noqa: SIM115 - handed to the child
    try:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd[1:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=_child_env(alerts, webhook), close_fds=True)
    finally:
        log.close()
    _popen[proc.pid] = proc
    return proc.pid


def start_side_server(uri: str, port: int, *, log_name: str, host: str = "127.0.0.1") -> int:
    """Start a temporary ``nbprod serve --model uri --no-auth`` detached (no deployment, no alert
    loop, no token of ours in its environment); return its pid. The latency gate measures on one
    when it does not know a deployment's token; :func:`stop` ends it."""
    cmd = [sys.executable, "-m", "nbprod.cli", "serve", "--model", uri, "--no-auth", "--host", host,
           "--port", str(int(port))]
    with open(log_path(log_name), "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=_child_env(), close_fds=True)
    _popen[proc.pid] = proc
    return proc.pid


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields after "pid (comm) "


def identity(pid: int | None = None) -> dict:
    """What names a process beyond its pid, which the system reuses: ``{"pid", "start"}`` (the start
    time in clock ticks since boot from /proc; None without /proc)."""
    pid = os.getpid() if pid is None else pid
    st = _stat(pid)
    return {"pid": pid, "start": st[19] if st is not None and len(st) > 19 else None}


def same_process(ident: dict | None) -> bool:
    """Is the process ``ident`` (from :func:`identity`) still running, and not a reused pid?"""
    if not ident or not alive(ident.get("pid")):
        return False
    start = ident.get("start")
    return start is None or identity(int(ident["pid"]))["start"] in (None, start)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a server leads its own group; its workers are in it,
    also after the leader died)."""
    return _live_with(2, pgid)


def _live_with(field: int, value: int) -> list[int]:
    """Live (not zombie) pids whose /proc stat field ``field`` (after the state, field 0) is ``value``;
    [] without /proc."""
    out: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        st = _stat(int(p.name))
        if st is not None and len(st) > field and st[field] == str(value) and st[0] not in ("Z", "X"):
            out.append(int(p.name))
    return out


def alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie counts as dead; our own exited children are reaped)."""
    if not pid:
        return False
    proc = _popen.get(pid)
    if proc is not None and proc.poll() is not None:
        _popen.pop(pid, None)
        return False
    st = _stat(pid)
    if st is not None:
        return st[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc").is_dir()  # /proc exists but no entry: gone


def is_server_of(pid: int | None, name: str) -> bool:
    """Is ``pid`` a live ``nbprod serve --deployment name`` process (not a reused pid)?"""
    if not alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    try:
        i = argv.index(b"--deployment")
    except ValueError:
        return False
    return i + 1 < len(argv) and argv[i + 1] == name.encode()


def children(pid: int) -> list[int]:
    """Live child pids of ``pid`` (uvicorn's worker processes)."""
    return _live_with(1, pid)


def stop(pid: int, *, timeout: float = 10.0) -> str:
    """SIGTERM (uvicorn stops accepting, finishes in-flight requests), SIGKILL after ``timeout``."""
    if not alive(pid):
        return "already stopped"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already stopped"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            _kill_group(pid)  # stray workers, if any
            return "drained"
        time.sleep(0.05)
    _kill_group(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.02)
    return "killed"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the server leads its own session/group
    except (ProcessLookupError, PermissionError):
        pass


def http_get(host: str, port: int, path: str, *, timeout: float = 2.0,
             headers: dict | None = None) -> tuple[int, dict | str | None, dict]:
    """GET on a fresh connection: (status, JSON body or text, headers); status 0 if unreachable."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return r.status, body, hdrs
    except OSError:
        return 0, None, {}
    finally:
        conn.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(name: str, host: str, port: int, pid: int, *, timeout: float = 90.0) -> float:
    """Seconds until ``/v2/health/ready`` answers 200; DeploymentError if the process exits first."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, _ = http_get(host, port, "/v2/health/ready", timeout=1.0)
        if status == 200:
            return time.perf_counter() - t0
        if not alive(pid):
            raise DeploymentError(f"the server of deployment {name!r} exited before it was ready:\n"
                                  f"{_tail(log_path(name))}",
                                  f"read {log_path(name)}; fix the model or the port, then deploy again")
        time.sleep(0.03)
    raise DeploymentError(f"the server of deployment {name!r} was not ready after {timeout:g} s",
                          f"read {log_path(name)}; the model may be slow to load")
