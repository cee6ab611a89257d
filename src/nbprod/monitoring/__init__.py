"""Monitoring: the prediction and feedback log, drift and performance over time, alerts, the panel.

Modules, one job each: ``predlog`` (tables + the server's background writer), ``logrecords`` (a
request → its one stored record), ``logblocks`` (a server's run of requests → one record, and back),
``logread`` (records and older per-row rows → rows), ``feedback`` (late ground truth), ``http``
(``POST /feedback``), ``windows`` (durations, aligned windows), ``performance`` (realised metrics),
``monitor`` (the windows of a deployment → ``MonitorReport``),
``report`` / ``charts`` (its displays), ``alerts`` (rules, webhook, dedup), ``loop`` (the server's
background alert loop: ``alerts`` every N seconds; ``loopsettings``: the environment it reads and whether
a deployment's recorded settings start one), ``widget`` (the live panel). The training-time
prediction/label baseline the monitor compares with is written at registration by
:mod:`nbprod.registry.outputs`.

``http``, ``predlog``, ``logrecords``, ``loop`` and ``alerts`` run inside the model server, so they, ``report``
(whose ``METRICS`` the alerts read) and ``performance`` (which the registry imports) import
pandas, numpy, scikit-learn, altair and the monitor inside the functions that need them: a
server start loads none of them. The other modules import at the top.

Importing this package loads nothing heavy; each public name (listed in ``__init__.pyi``) loads
its module on first use.
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, __file__)
del attach
