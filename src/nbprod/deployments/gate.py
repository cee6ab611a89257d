"""The latency gate: measure a version over HTTP before it receives live traffic.

The new version is loaded into the running server as a zero-weight route (no live request goes
to it) and measured through the pinned endpoint ``/v2/models/{name}/versions/{v}/infer`` with
single-row requests built from the rows of its registered training profile sample. Sequential
requests on one keep-alive connection to 127.0.0.1: the figure is what one client sees,
including HTTP, as the budget intends. Bounded by ``requests`` and ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from dataclasses import dataclass

from ..errors import DeploymentError, LatencyBudgetExceeded
from ..registry import get_version
from ..registry.store import client
from ..registry.versions import TAG
from . import process

__all__ = ["LatencyFigures", "measure", "store_on_version", "rows_for", "measure_deployment",
           "measure_on_side_server", "refusal"]


@dataclass
class LatencyFigures:
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    budget_p95_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.budget_p95_ms is None or self.p95_ms <= self.budget_p95_ms

    def to_dict(self) -> dict:
        return {"requests": self.requests, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "budget_p95_ms": self.budget_p95_ms, "ok": self.ok}

    def __str__(self) -> str:
        budget = f" (budget p95 {self.budget_p95_ms:g} ms: {'ok' if self.ok else 'EXCEEDED'})" \
            if self.budget_p95_ms is not None else ""
        return (f"p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, p99 {self.p99_ms:.2f} ms "
                f"over {self.requests} requests{budget}")


def _pct(sorted_ms: list[float], q: float) -> float:
    i = min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))
    return round(sorted_ms[i], 3)


def _datatype(values) -> str:
    kind = getattr(values, "dtype", None)
    k = kind.kind if kind is not None else "O"
    return {"f": "FP64", "i": "INT64", "u": "INT64", "b": "BOOL"}.get(k, "BYTES")


def rows_for(uri: str, limit: int = 50) -> list[dict]:
    """Single-row v2 request bodies from the version's training-profile sample (complete rows)."""
    version = get_version(uri)
    try:
        frame = version.profile.sample_frame()
    except Exception as exc:  # noqa: BLE001
        raise DeploymentError(f"{uri} has no usable training-profile sample for the latency gate: {exc}",
                              "register the model with nbprod.register (it stores the profile), "
                              "or deploy without budget_p95_ms") from None
    frame = frame.dropna().head(limit)
    if frame.empty:
        raise DeploymentError(f"the training-profile sample of {uri} has no complete row",
                              "deploy without budget_p95_ms, or register with more complete training rows")
    bodies = []
    for i in range(len(frame)):
        row = frame.iloc[i:i + 1]
        inputs = [{"name": str(c), "shape": [1], "datatype": _datatype(row[c]),
                   "data": json.loads(row[c].to_json(orient="values"))} for c in row.columns]
        bodies.append({"inputs": inputs})
    return bodies


def measure(host: str, port: int, deployment: str, version: str, bodies: list[dict], *, token: str | None,
            requests: int = 200, max_seconds: float = 30.0, budget_p95_ms: float | None = None) -> LatencyFigures:
    """Send ``requests`` single-row requests (bounded by ``max_seconds``) to the pinned version."""
    path = f"/v2/models/{deployment}/versions/{version}/infer"
    headers = {"Content-Type": "application/json", "X-Nbprod-Traffic": "latency-gate"}  # logged as test traffic
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payloads = [json.dumps(b).encode() for b in bodies]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    times: list[float] = []
    deadline = time.monotonic() + max_seconds
    try:
        for i in range(requests + 5):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            conn.request("POST", path, body=payloads[i % len(payloads)], headers=headers)
            r = conn.getresponse()
            body = r.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if r.status != 200:
                raise DeploymentError(f"the latency gate's request to version {version} answered {r.status}: "
                                      f"{body[:300].decode(errors='replace')}",
                                      "check that the version serves its own training sample")
            if i >= 5:  # the first few warm up connections and caches
                times.append(elapsed)
    finally:
        conn.close()
    if not times:
        raise DeploymentError("the latency gate measured nothing within its time bound",
                              "the version is far too slow for the budget; raise budget_p95_ms")
    times.sort()
    return LatencyFigures(len(times), _pct(times, 0.5), _pct(times, 0.95), _pct(times, 0.99), budget_p95_ms)


def store_on_version(uri: str, figures: LatencyFigures) -> None:
    """Keep the measured figures on the model version (MLflow version tags ``nbprod.latency_*``)."""
    mv = get_version(uri)
    c = client()
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        c.set_model_version_tag(mv.name, mv.version, f"{TAG}latency_{key}", str(getattr(figures, key)))
    c.set_model_version_tag(mv.name, mv.version, f"{TAG}latency", json.dumps(figures.to_dict(), sort_keys=True))


def measure_deployment(name: str, mv, budget: float, *, host: str, port: int, token: str | None) -> LatencyFigures:
    """Measure version ``mv`` inside deployment ``name``'s running server (it holds the version as a
    zero-weight route) and keep the figures on the version."""
    figures = measure(host, port, name, str(mv.version), rows_for(mv.uri), token=token, budget_p95_ms=float(budget))
    store_on_version(mv.uri, figures)
    return figures


def measure_on_side_server(mv, budget: float, *, host: str = "127.0.0.1") -> LatencyFigures:
    """Measure on a temporary no-auth server on 127.0.0.1 (when the deployment's token is unknown)."""
    port = process.free_port(host)
    label = f"gate-{mv.name}-{mv.version}"
    pid = process.start_side_server(mv.uri, port, log_name=label, host=host)
    try:
        process.wait_ready(label, host, port, pid, timeout=90)
        _, body, _ = process.http_get(host, port, "/health")
        served_as = body.get("deployment") if isinstance(body, dict) else mv.name
        figures = measure(host, port, served_as or mv.name, str(mv.version), rows_for(mv.uri), token=None,
                          budget_p95_ms=float(budget))
    finally:
        process.stop(pid, timeout=5)
    store_on_version(mv.uri, figures)
    return figures


def refusal(figures: LatencyFigures, mv, budget: float) -> LatencyBudgetExceeded:
    """The error a version over its latency budget is refused with (it carries the figures)."""
    err = LatencyBudgetExceeded(
        f"{mv.uri} answers single-row requests in p95 {figures.p95_ms:.2f} ms, over the budget of {budget:g} ms "
        f"(p50 {figures.p50_ms:.2f}, p99 {figures.p99_ms:.2f} ms over {figures.requests} requests); "
        "it was not given traffic",
        "make the model faster, raise budget_p95_ms, or deploy without a budget")
    err.figures = figures  # type: ignore[attr-defined]
    return err

