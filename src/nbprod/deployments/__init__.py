"""Deployments: detached servers on this machine, canary / shadow / split, promote, rollback, latency gate.

Modules: ``api`` (the verbs), ``options`` (a call's checks, :class:`ServerSettings`), ``alerting``
(:class:`AlertSettings`: recorded, merged, handed to the server), ``routes`` (the versions and
weights of a spec), ``store`` (state-DB rows beside the serving spec), ``process`` (start, probe,
stop server processes), ``events`` (runs inside the server: worker acknowledgements and
canary-fallback audit rows), ``gate`` (the latency gate), ``results``.
Importing this package is cheap: each public name (listed in ``__init__.pyi``) loads its module
on first use.
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, __file__)
del attach
