"""The model server: MLflow scoring protocol + Open Inference Protocol v2, canary/shadow routing.

Modules: ``app`` (Starlette app), ``codecs`` (request/response formats), ``router`` (weighted
routes, atomic swap), ``loader`` (a servable version + start-up cache), ``fastpath`` (compiled
scikit-learn predict), ``batching`` (adaptive micro-batching), ``metrics`` (Prometheus),
``spec`` (deployment spec, state-DB table, spec sources), ``server`` (uvicorn runner),
``connections`` (header timeout and connection cap).

Serving is the bottom of the request path: it imports no other capability. The registry, the
prediction log, ``/feedback`` and deployment events plug in through ``create_app``'s keywords;
:mod:`nbprod.service` wires them (``nbprod.serve``).

Importing this package is cheap; each public name (listed in ``__init__.pyi``) loads its module,
and numpy/starlette, on first use.
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, __file__)
del attach
