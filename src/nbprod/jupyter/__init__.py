"""The Jupyter server extension behind nbprod's JupyterLab sidebar ("Production").

A thin front end like the magics and the CLI: REST handlers under ``/nbprod/api/`` that call the
verbs behind nbprod's public API (``models()``, ``status()``, ``promote()``, …) and answer its
results' ``to_dict()`` as JSON. The TypeScript in ``labextension/`` only renders these answers
and posts the actions. Installing nbprod enables the extension (``jupyter-config/``, shipped as
``etc/jupyter/jupyter_server_config.d/nbprod.json``); ``jupyter server extension list`` shows it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbprod.jupyter"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the built labextension sits in the source tree (``jupyter labextension develop``)."""
    return [{"src": "../labextension", "dest": "nbprod"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("nbprod: sidebar API at /nbprod/api/")
