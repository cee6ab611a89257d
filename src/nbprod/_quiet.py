"""Silence MLflow's own chatter around nbprod's calls to it.

nbprod owns what its calls print. MLflow logs ``INFO … Creating initial MLflow database tables``
when a store is first opened and ``WARNING … Found extra inputs in the model input`` when a frame
has columns a model does not use (nbprod already warns about those, once, at registration): in a
notebook both land in red stderr boxes under the cell. :func:`quiet_mlflow` raises the ``mlflow``
and ``alembic`` loggers to ERROR for the duration of an nbprod call and puts them back after;
errors still show. It nests and is thread-safe (a depth count; the levels are restored when the
outermost call ends), and works as a decorator too.

Private base-layer helper: nothing heavy is imported until it is entered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

__all__ = ["quiet_mlflow", "LOGGERS"]

#: The loggers quieted: MLflow's own tree and the migrations it runs through alembic.
LOGGERS = ("mlflow", "alembic")

_lock = threading.Lock()
_depth = 0
_saved: dict[str, int] = {}


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Within the block, MLflow logs only errors."""
    global _depth
    # MLflow configures its loggers when it is first imported; do that first, or the first import
    # inside the block would set the level back to INFO.
    import mlflow  # noqa: F401

    with _lock:
        if _depth == 0:
            for name in LOGGERS:
                logger = logging.getLogger(name)
                _saved[name] = logger.level
                logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name, level in _saved.items():
                    logging.getLogger(name).setLevel(level)
                _saved.clear()
