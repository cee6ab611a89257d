"""Prometheus metrics of one app, in a registry of its own (two apps in one process never clash).

Exposed at ``GET /metrics`` in the Prometheus text format. Labels stay low-cardinality: model
version, HTTP status, endpoint, role — never a request id or a column value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServingMetrics", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_VALUE_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0)


class ServingMetrics:
    """Every metric the server exports; one instance per app."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("nbprod_requests_total", "Prediction requests answered.",
                                ["version", "status", "endpoint"], registry=r)
        self.latency = Histogram("nbprod_request_latency_seconds", "Prediction request latency (server side).",
                                 ["version", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.predictions = Histogram("nbprod_prediction_value", "Numeric prediction values (one per row).",
                                     ["version"], buckets=_VALUE_BUCKETS, registry=r)
        self.rows = Counter("nbprod_predicted_rows_total", "Rows predicted.", ["version", "role"], registry=r)
        self.ood_rows = Counter("nbprod_ood_rows_total", "Rows flagged out of the training distribution.",
                                ["version"], registry=r)
        self.ood_rejected = Counter("nbprod_ood_rejected_total", "Requests refused by ood='reject'.",
                                    ["version"], registry=r)
        self.in_flight = Gauge("nbprod_in_flight_requests", "Requests being handled now.", registry=r)
        self.model_errors = Counter("nbprod_model_errors_total", "Exceptions raised by a model's predict.",
                                    ["version", "role"], registry=r)
        self.fallbacks = Counter("nbprod_canary_fallbacks_total",
                                 "Canary requests answered by the stable version after a canary failure.",
                                 ["version", "reason"], registry=r)
        self.load_failures = Counter("nbprod_version_load_failures_total", "Model versions that failed to load.",
                                     ["version", "role"], registry=r)
        self.dropped_log_rows = Counter("nbprod_dropped_log_rows_total",
                                        "Prediction-log rows dropped because the log could not keep up.", registry=r)
        self.batch_rows = Histogram("nbprod_batch_rows", "Rows per model call after micro-batching.",
                                    ["version"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                                    registry=r)
        self.route = Gauge("nbprod_route_weight", "Traffic weight per served version; path = fastpath|pyfunc.",
                           ["version", "role", "path"], registry=r)
        self.generation = Gauge("nbprod_spec_generation", "Generation of the deployment spec being served.",
                                registry=r)

    def set_routes(self, table) -> None:
        self.route.clear()
        for route, served in table.routes:
            if served is not None:
                self.route.labels(served.version, route.role, served.path_kind).set(route.weight)
        self.generation.set(table.generation)

    def render(self) -> bytes:
        return generate_latest(self.registry)
