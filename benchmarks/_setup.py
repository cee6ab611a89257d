"""Set-up shared by the server benchmarks (bench_serve, bench_deploy): the model they serve, and the probe
that says a peer server answers.

Kept out of ``data.py`` (the benchmark frame), which the validation and drift benchmarks import without
scikit-learn or a server.
"""

from __future__ import annotations

import http.client

__all__ = ["pipeline", "ping"]


def pipeline(X, y, C=1.0):
    """The credit-style pipeline both benchmarks register: ColumnTransformer(SimpleImputer+StandardScaler,
    OneHotEncoder) → LogisticRegression, fitted on ``X, y`` (sklearn imported here: it is slow to import)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [c for c in X.columns if X[c].dtype.kind in "if"]
    cat = [c for c in X.columns if c not in num]
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    return make_pipeline(pre, LogisticRegression(C=C, max_iter=300)).fit(X, y)


def ping(port: int, timeout: float = 2.0) -> bool:
    """Does a server on 127.0.0.1:``port`` answer ``GET /ping`` with 200 (the route both nbprod and
    ``mlflow models serve`` have)?"""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/ping")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False
