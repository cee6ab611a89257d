"""Interactive panels in a notebook: ``%nbprod status`` and ``%nbprod models`` with buttons.

The magics wrap what the API returns (a ``StatusTable``, a ``ModelTable``) in a panel object
(:mod:`.panels`). In a notebook kernel (JupyterLab, Notebook 7, VS Code) it shows as ipywidgets:
each deployment's traffic split, health, p95 against its budget, drift and firing alerts, with
Promote, Roll back and Set split (a slider) buttons; each asks for a confirmation that names the
change, then calls the same function as ``%nbprod promote|rollback`` and ``set_split`` (so the
audit row is the same), shows the refusal's problem and fix when nbprod says no, and refreshes.
Everywhere else (a terminal, the CLI, ``print``) it is the wrapped result, unchanged.

The ipywidgets are in :mod:`.view`, imported only when a panel is drawn, so ``%load_ext nbprod``
stays fast. No decision lives here: what a promote picks or whether a rollback is allowed is the
deployments API's answer.
"""

from __future__ import annotations

from .panels import ModelsPanel, StatusPanel, in_kernel

__all__ = ["ModelsPanel", "StatusPanel", "in_kernel"]
