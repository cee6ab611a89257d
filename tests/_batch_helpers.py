"""Shared by the batch tests (tests/test_score.py, tests/test_dask*.py): a module-scoped nbprod home with a
registered credit model, and a real 2-worker ``distributed.LocalCluster`` on 127.0.0.1 started inside it.

Why the home comes first: the cluster's worker processes inherit ``NBPROD_HOME`` when they start, so they
read the same MLflow store and write the same prediction log as the test.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest
from _registry_helpers import module_home, pipeline

#: the issue's test cluster: two worker processes, one thread each
WORKERS = 2


@contextlib.contextmanager
def credit_home(tmp_path_factory, name: str) -> Iterator:
    """A module-scoped nbprod home holding ``credit@champion`` (a LogisticRegression pipeline)."""
    import nbprod
    from nbprod import datasets

    with module_home(tmp_path_factory, name) as home:
        X, y = datasets.credit(2000, seed=1)
        nbprod.register(pipeline(X, y), "credit", X, y, alias="champion")
        yield home


@contextlib.contextmanager
def local_cluster(workers: int = WORKERS) -> Iterator:
    """A ``distributed.Client`` on a real LocalCluster of worker processes on 127.0.0.1 (started in the
    current environment: set ``NBPROD_HOME`` before). Skips without ``distributed``, fails in CI."""
    try:
        import distributed
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip("distributed is not installed (pip install 'dask[distributed]')")
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
            yield client
