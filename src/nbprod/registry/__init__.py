"""The model registry: register with everything production needs, aliases, integrity, evaluation.

Modules, one job each:

- :mod:`.uris` — ``models:/name@alias`` / ``name/3`` parsing and name rules;
- :mod:`.store` — the cached, explicit-URI ``MlflowClient`` (fails fast on a dead server);
- :mod:`.modeldir` — the local model directory (serialisation choice, pinned requirements, ``nbprod/``);
- :mod:`.outputs` — the training-time baseline of a model's predictions and labels (``outputs.json``);
- :mod:`.integrity` — the sha256 manifest, written last and checked first;
- :mod:`.register` — all-or-nothing registration;
- :mod:`.versions` — versions, aliases, the models table, profiles, downloads;
- :mod:`.loading` — ``load_model`` for serving and evaluation;
- :mod:`.evaluate` — champion/challenger evaluation.

mlflow, scikit-learn, skops, pandas, numpy, altair and :mod:`nbprod.data` are imported inside the
functions that use them, not at the top: the model server imports this package on every start
(:mod:`nbprod.service`'s model store), and a start from the serving cache loads none of them.
"""

from __future__ import annotations

from .evaluate import EvaluationResult, MetricRow, evaluate, parse_thresholds
from .integrity import verify_manifest
from .loading import LoadedModel, load_model
from .register import register
from .uris import parse_model_uri
from .versions import (
                       AliasChange,
                       ModelTable,
                       ModelVersion,
                       delete_alias,
                       download,
                       get_version,
                       load_profile,
                       models,
                       set_alias,
)

__all__ = [
    "parse_model_uri", "register", "get_version", "set_alias", "delete_alias", "models", "load_profile",
    "download", "load_model", "evaluate", "verify_manifest", "parse_thresholds",
    "ModelVersion", "ModelTable", "AliasChange", "LoadedModel", "EvaluationResult", "MetricRow",
]
